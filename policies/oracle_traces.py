"""Ground-truth future traces of query points: the ``gt-trace`` variant's oracle (meant as μ0's upper bound).

The future of a query point is what the task's scripted expert would do from the current state: the point is
attached to the MuJoCo body it lies on (TraceExtract's sim-mode tracking), a shadow copy of the env is set to the
current state, a copy of the expert — which has followed the real episode, so it is in the right phase — acts for
``horizon`` steps there, and the body poses give the point's path. On a scripted demo this reproduces the demo's own
future (same expert, same physics; like a recorded demo, which ends on success, the future stops at the last pose
before success); in a closed-loop rollout it is the future the demonstrator would produce.

Once an action other than the expert's drives the episode (a learned policy's), the tracking expert's memory is
stale: its controllers integrated errors of motions it did not command (the servo's integral winds up to its
limit when the policy hovers a few cm off its target, and the copy then settles centimetres away and never starts
to descend). The copy then takes over the way a demonstrator would: ``resume(obs)`` sets its phase from the state
and starts its controllers fresh (experts without ``resume`` continue as they are).

Rolling the expert costs ``horizon`` physics steps per query (~13 ms each here), fine every 8 steps in closed loop
but not at every step of every training demo: for demos, :class:`RecordedFutureOracle` reads the same future from
the recorded states (kinematics only).
"""

from __future__ import annotations

import copy

import mujoco
import numpy as np

from mu0sim.camera import CameraParams
from mu0sim.traces.keypoints import Keypoints, body_offsets

# Version of the futures ExpertTraceOracle produces in closed loop, per task (its expert and that expert's
# ``resume`` define them): an episode of a gt-trace policy records it (in its policy id), and one played with
# another version no longer counts. 1: the tracking expert's copy continues as it was (Lift's resumes, as it still
# does: unchanged for demos without approach jitter, as all of the study's); 2: PickPlaceCan's and Stack's take
# over with ``resume`` once a policy other than the expert drives the episode; 3: their ``resume`` also reads the
# carrying phases from the state (v2 restarted every carry at lift: a policy holding the cube over its target saw
# "up, then down" and never lowered); 4 (PickPlaceCan): a held can within 3 cm of its placing point is lowered (v3
# wanted 1 cm of a point that the tracker's "stalls" behind the policy had moved closer to the base, so a policy
# lowering the can was told to lift it first and bobbed up and down until the time limit); a tracked release is
# kept only once the can is down (v3 paused 6 steps opening the fingers before lowering again).
ORACLE_VERSIONS = {"PickPlaceCan": 4, "Stack": 3}


def oracle_version(task: str) -> int:
    """The version of ``task``'s closed-loop oracle futures (:data:`ORACLE_VERSIONS`, 1 if not listed)."""
    return ORACLE_VERSIONS.get(task, 1)


class ExpertTraceOracle:
    """Rolls the scripted expert of ``task`` forward from the current state of a ``Mu0SimEnv``.

    Call :meth:`reset` after every env reset, :meth:`observe` with every observation the real episode produces
    (and the action that led to it), and :meth:`future` (before :meth:`observe` of the same observation) to get the
    next ``horizon`` positions.
    """

    def __init__(self, task: str, robot: str, expert_options: dict | None = None) -> None:
        """``expert_options``: the scripted expert's options, those the training demos were collected with (the
        oracle's futures must be the demos' kind of motion)."""
        from mu0sim.envs import make_env
        from mu0sim.policies.scripted import make_expert

        # state only, no success termination, no time limit: the shadow only moves bodies
        self._shadow = make_env(task, robot, cameras=(), image_period=0, terminate_on_success=False,
                                max_episode_steps=10**9).unwrapped
        self._expert = make_expert(task, **(expert_options or {}))
        self._model_xml: str | None = None
        self._shadow_xml: str | None = None
        self._proposed: np.ndarray | None = None  # the tracking expert's action for the last observation
        self._in_control = True  # every action so far was the expert's own

    def reset(self, base_env, seed: int | None = None) -> None:
        """Start following a new episode of ``base_env`` (the unwrapped env, right after its reset)."""
        self._expert.reset(base_env, seed=seed)
        self._model_xml = base_env.get_model_xml()  # object sizes are drawn per episode: the shadow must match
        self._shadow_xml: str | None = None
        self._proposed, self._in_control = None, True

    def observe(self, obs: dict[str, np.ndarray], action: np.ndarray | None = None) -> None:
        """Let the tracking expert see the real episode's observation ``obs`` (it advances its phase; its action is
        kept only to compare); ``action`` is the action that led to ``obs`` (None right after reset)."""
        if action is not None and self._proposed is not None and not np.allclose(action, self._proposed, atol=1e-6):
            self._in_control = False
        self._proposed = self._expert.select_action(obs)

    def future(self, base_env, keypoints: Keypoints, horizon: int) -> np.ndarray:
        """(K, horizon, 3) world positions (metres) of ``keypoints`` after each of the next ``horizon`` expert
        steps from ``base_env``'s current state."""
        load_xml = self._model_xml if self._shadow_xml is not self._model_xml else None  # once per episode
        obs = self._shadow.reset_to_state(base_env.get_state(), load_xml, base_env.get_control_state())
        self._shadow_xml = self._model_xml
        expert = copy.deepcopy(self._expert)
        if not self._in_control and hasattr(expert, "resume"):  # take over from how far the task has got
            expert.resume(obs)
        out = np.empty((len(keypoints), horizon, 3))
        held = keypoints.world_positions(self._shadow.mj_data)
        for h in range(horizon):
            obs, _, _, _, info = self._shadow.step(expert.select_action(obs))
            if info["is_success"]:
                # a recorded demo ends on its first successful step, before recording that state, and its future
                # holds the last recorded pose: hold it here too, or the lift phase shows 32 steps of motion that
                # the expert never trained on (the recorded future shows it stopping)
                out[:, h:] = held[:, None]
                break
            out[:, h] = held = keypoints.world_positions(self._shadow.mj_data)
        return out

    def close(self) -> None:
        self._shadow.close()


class RecordedFutureOracle:
    """The future of a recorded episode: body poses from its ``states`` (``[time, qpos, qvel]`` rows), replayed in
    step with the env (call :meth:`load` before each episode's reset). Past the last state, the last pose holds."""

    def __init__(self) -> None:
        self._states = np.zeros((0, 0))
        self._t = 0
        self._data: mujoco.MjData | None = None

    def load(self, states: np.ndarray) -> None:
        self._states = np.asarray(states, dtype=np.float64)

    def reset(self, base_env, seed: int | None = None) -> None:
        self._t = 0
        self._data = mujoco.MjData(base_env.mj_model)

    def observe(self, obs: dict[str, np.ndarray], action: np.ndarray | None = None) -> None:
        """Step in time with the real episode (``action``, as for :class:`ExpertTraceOracle`, is not needed)."""
        self._t += 1

    def future(self, base_env, keypoints: Keypoints, horizon: int) -> np.ndarray:
        model, data = base_env.mj_model, self._data
        out = np.empty((len(keypoints), horizon, 3))
        last = len(self._states) - 1
        for h in range(horizon):
            data.qpos[:] = self._states[min(self._t + 1 + h, last), 1:1 + model.nq]
            mujoco.mj_kinematics(model, data)
            out[:, h] = keypoints.world_positions(data)
        return out

    def close(self) -> None:
        pass


def attach_query_points(base_env, params: CameraParams, uv_px: np.ndarray, world_m: np.ndarray,
                        gripper_points: int = 0, geom_ids: np.ndarray | None = None) -> Keypoints:
    """Query pixels and their (K, 3) world positions (metres) -> keypoints that move with the bodies they lie on:
    the first ``gripper_points`` with the gripper (the body of its grip site), every other point with the body its
    pixel shows (background: the static world body). ``geom_ids``: the camera's per-pixel geom ids for the current
    state if already rendered (else the camera is rendered once more)."""
    rows = np.clip(uv_px[:, 1].astype(int), 0, params.height_px - 1)
    cols = np.clip(uv_px[:, 0].astype(int), 0, params.width_px - 1)
    if geom_ids is None:  # geom ids, not the env's labels
        geom_ids = base_env.render_frame(params.name, depth=False, segmentation=True).geom_ids
    geoms = geom_ids[rows, cols]
    bodies = np.where(geoms >= 0, base_env.mj_model.geom_bodyid[np.maximum(geoms, 0)], 0).astype(np.int32)
    bodies[:gripper_points] = base_env.mj_model.site_bodyid[base_env.eef_site_id]
    keypoints = Keypoints()
    keypoints.extend(bodies, body_offsets(base_env.mj_data, bodies, world_m), "object", "query")
    return keypoints


__all__ = ["ORACLE_VERSIONS", "oracle_version", "ExpertTraceOracle", "RecordedFutureOracle", "attach_query_points"]
