"""The gt-trace oracle: on a demo it predicts the demo's own future; behind a learned policy it takes over as the
demonstrator would (phase from the state, fresh controllers) instead of trusting memory of motions it never made."""

from __future__ import annotations

import numpy as np
import pytest

from mu0sim.envs import make_env
from mu0sim.policies.oracle_traces import ExpertTraceOracle, RecordedFutureOracle
from mu0sim.policies.scripted import make_expert
from mu0sim.policies.scripted.common import OPEN, move_action
from mu0sim.traces.keypoints import gripper_keypoints

# the object each task's expert picks up first (an ``object_layout`` key of the env)
PICKED = {"Lift": "cube_pos", "PickPlaceCan": "Can_pos", "Stack": "cubeA_pos"}


def _demo(task: str, seed: int):
    """A scripted demo on Panda: the actions and the ``[time, qpos, qvel]`` state before each."""
    env = make_env(task, "Panda", cameras=(), image_period=0)
    expert = make_expert(task)
    obs, _ = env.reset(seed=seed)
    expert.reset(env.unwrapped, seed=seed)
    actions, states = [], []
    for _ in range(400):
        states.append(env.unwrapped.get_state())
        actions.append(expert.select_action(obs))
        obs, _, terminated, truncated, info = env.step(actions[-1])
        if terminated or truncated:
            break
    assert info["is_success"], f"the {task} expert failed its demo (seed {seed})"
    env.close()
    return np.array(actions), np.array(states)


@pytest.mark.parametrize("task", sorted(PICKED))
def test_oracle_reproduces_a_demo_future(task):
    """Rolled forward from a demo's state, the expert oracle predicts the demo's own recorded future: mid-episode,
    and past the demo's end (the demo stops on success and its future holds the last pose)."""
    seed = 3
    actions, states = _demo(task, seed)
    env = make_env(task, "Panda", cameras=(), image_period=0)
    base = env.unwrapped
    expert, recorded = ExpertTraceOracle(task, "Panda"), RecordedFutureOracle()
    recorded.load(states)
    obs, _ = env.reset(seed=seed)
    for oracle in (expert, recorded):
        oracle.reset(base, seed)
    keypoints = gripper_keypoints(base)
    checked, moving, previous = 0, 0, None
    checkpoints = {len(actions) // 4, len(actions) // 3, len(actions) // 2, 2 * len(actions) // 3, len(actions) - 6}
    for t, action in enumerate(actions):
        for oracle in (expert, recorded):
            oracle.observe(obs, previous)
        obs, *_ = env.step(action)
        previous = action
        if t + 1 in checkpoints:  # spread over the phases; the last: 16 steps reach past the demo's end
            futures = [oracle.future(base, keypoints, 16) for oracle in (expert, recorded)]
            moving += np.abs(futures[1][:, -1] - futures[1][:, 0]).max() > 0.01  # (not while closing)
            np.testing.assert_allclose(futures[0], futures[1], atol=1e-3)  # < 1 mm: solver warm start differs
            checked += 1
    assert checked == len(checkpoints) and moving >= 3
    expert.close()
    env.close()


@pytest.mark.parametrize("task", ["PickPlaceCan", "Stack"])
def test_oracle_takes_over_from_a_policy_that_stops_short(task):
    """A policy that hovers 2.5 cm beside the expert's hover point: the tracking expert's servo integrates that
    error it never commanded. Its copy must still show the demonstrator's future from here — move over the
    object and descend — not settle centimetres off (outside its gate to descend) for the whole horizon."""
    env = make_env(task, "Panda", cameras=(), image_period=0)
    base = env.unwrapped
    oracle = ExpertTraceOracle(task, "Panda")
    obs, _ = env.reset(seed=0)
    oracle.reset(base, 0)
    hover_m = oracle._expert.hover_m
    previous = None
    for _ in range(60):
        oracle.observe(obs, previous)
        picked = obs["object"][base.object_layout[PICKED[task]]]
        previous = move_action(obs["robot0_eef_pos"], picked + [0.025, 0.0, hover_m], OPEN).astype(np.float32)
        obs, *_ = env.step(previous)
    oracle.observe(obs, previous)
    picked = obs["object"][base.object_layout[PICKED[task]]]
    assert abs(obs["robot0_eef_pos"][2] - (picked[2] + hover_m)) < 0.01  # the policy got to hover height
    future = oracle.future(base, gripper_keypoints(base), 32)
    assert future[:, -1, 2].max() < picked[2] + hover_m - 0.03  # the gripper descends towards the object
    oracle.close()
    env.close()
