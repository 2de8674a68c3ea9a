"""Collect scripted demonstrations into a robomimic-compatible dataset, in parallel, resumably.

Attempt ``k`` of a dataset uses seed ``seed + k``; attempts are folded into the file strictly in seed order and
collection stops at the first seed that brings the number of kept demos to the target. The file's content therefore
depends only on the options, never on the number of workers or on interruptions.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mu0sim.datasets.hdf5 import DatasetWriter, EpisodeRecord, env_args_for


@dataclass(frozen=True)
class Takeover:
    """DAgger-style starts (Ross et al., 2011): the action expert at ``policy`` (a ``mu0sim train-policy`` folder,
    run with the μ0 at ``mu0`` in its loop, as ``mu0sim eval`` runs it) drives each attempt for a number of steps
    drawn uniformly from ``steps`` = (first, last), then the scripted expert takes over from the state the policy
    reached (its ``resume``: the phase from the state, fresh controllers) and only that continuation is recorded.
    Every recorded future is then the demonstrator's, from states a learned policy visits, which clean and
    DART demos seldom reach (RESULTS.md, "Where μ0's forecast goes wrong in closed loop")."""

    policy: Path
    mu0: Path = Path("checkpoints/mu0-sim")
    steps: tuple[int, int] = (10, 150)

    def record(self) -> dict[str, Any]:
        """What the dataset stores about it: the policy's and μ0's weights (fingerprints), the step range."""
        from mu0sim.policies.train_bc import mu0_fingerprint
        from mu0sim.rollouts.evaluate import policy_id

        return {"policy": str(self.policy), "policy_id": policy_id(self.policy), "mu0_id": mu0_fingerprint(self.mu0),
                "steps": [int(self.steps[0]), int(self.steps[1])]}


@dataclass
class CollectConfig:
    """Options of ``mu0sim collect`` (see its ``--help``)."""

    task: str
    robot: str
    episodes: int
    out: Path
    cameras: tuple[str, ...] = ()
    image_size: int = 128
    depth: bool = False
    segmentation: bool = False
    seed: int = 0
    workers: int = 1
    video_dir: Path | None = None
    keep_failures: bool = False
    max_attempts: int | None = None
    checkpoint_s: float = 60.0
    expert: dict[str, Any] = field(default_factory=dict)
    execution_noise_std: float = 0.0
    grip_flip_rate: float = 0.0
    takeover: Takeover | None = None

    def collection(self) -> dict[str, Any]:
        """What the dataset records about how its demos were produced (appending must match it): the scripted
        expert with every one of its options (defaults included) and the execution perturbations (the gripper
        flips and the takeover only where used, so that files recorded before they existed still match)."""
        from dataclasses import fields

        from mu0sim.policies.scripted import make_expert

        expert = make_expert(self.task, **self.expert)
        return {"expert": type(expert).__name__,
                "expert_options": {f.name: getattr(expert, f.name) for f in fields(expert)
                                   if f.init and not f.name.startswith("_")},
                "execution_noise_std": float(self.execution_noise_std),
                **({"grip_flip_rate": float(self.grip_flip_rate)} if self.grip_flip_rate else {}),
                **({"takeover": self.takeover.record()} if self.takeover is not None else {})}

    def env_kwargs(self) -> dict[str, Any]:
        return dict(cameras=tuple(self.cameras), image_size=self.image_size, depth=self.depth,
                    segmentation=self.segmentation)


@dataclass
class CollectSummary:
    """What one ``collect`` run did (not the whole file). ``steps``: env steps simulated, failures included."""

    attempted: int = 0
    kept: int = 0
    steps: int = 0
    wall_s: float = 0.0
    total_demos: int = 0
    out: str = ""

    @property
    def success_rate(self) -> float:
        return self.kept / self.attempted if self.attempted else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["success_rate"] = round(self.success_rate, 4)
        out["wall_s"] = round(self.wall_s, 2)
        return out


# ---------------------------------------------------------------------------------------------------- one episode
GRIP_FLIP_STEPS = 6  # length of one executed-gripper inversion (0.3 s: the fingers travel most of the way)


@dataclass
class StartState:
    """Where a policy left an episode: what :meth:`Mu0SimEnv.reset_to_state` needs to continue it exactly, and
    after how many steps (``step``)."""

    state: np.ndarray
    model_xml: str
    control_state: dict[str, np.ndarray]
    step: int


def policy_prefix(env, policy, seed: int, steps: int) -> StartState | None:
    """Play ``steps`` steps of the action expert ``policy`` in ``env`` (its ``expert_env``) from the episode of
    ``seed``; the state reached, or None if the episode ended first (success, time limit or a physics error)."""
    obs, _ = env.reset(seed=seed)
    policy.reset(seed=seed)
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(policy.select_action(obs))
        if terminated or truncated:
            return None
    base = env.unwrapped
    return StartState(base.get_state(), base.get_model_xml(), base.get_control_state(), steps)


def record_episode(env, expert, seed: int, execution_noise_std: float = 0.0,
                   grip_flip_rate: float = 0.0, start: StartState | None = None) -> EpisodeRecord:
    """Run ``expert`` for one episode of ``env`` (a gym.make'd Mu0SimEnv) and record everything a dataset needs.

    ``execution_noise_std`` > 0 is DART (Laskey et al., 2017): each executed action is the expert's plus Gaussian
    noise of that std on the arm (action units), so the demos visit the states a slightly wrong policy reaches,
    while the expert's own command there, the recovery, is recorded as ``expert_actions`` to imitate.
    ``grip_flip_rate`` > 0 perturbs the gripper the same way: at each step, with this probability, the executed
    gripper command is inverted for the next ``GRIP_FLIP_STEPS`` steps (a grasp closed too early, a cube let go),
    and what the expert does about it is what gets imitated. ``start``: begin at that state instead of the seed's
    initial one (the episode of ``seed`` where a policy left it), the expert taking over with its ``resume``; the
    step limit counts from there."""
    from mu0sim.policies.scripted.common import add_noise

    base = env.unwrapped
    obs, _ = env.reset(seed=seed)
    if start is not None:
        obs = base.reset_to_state(start.state, start.model_xml, start.control_state)
    expert.reset(base, seed=seed)
    if start is not None:
        expert.resume(obs)
    noise_rng = np.random.default_rng([seed, 0xDA27])  # its own stream: the expert's draws do not shift
    flip_rng = np.random.default_rng([seed, 0xF11B])
    flip_left = 0
    perturbed = execution_noise_std > 0 or grip_flip_rate > 0
    states, actions, rewards, observations = [base.get_state()], [], [], [obs]
    expert_actions = []
    cam_to_world = {cam: [base.camera_params(cam).cam_to_world] for cam in base.cameras}
    intrinsics = {cam: base.camera_params(cam).intrinsics for cam in base.cameras}
    terminated = truncated = False
    info: dict[str, Any] = {}
    while not (terminated or truncated):
        action = np.asarray(expert.select_action(obs), dtype=np.float32)
        expert_actions.append(action)
        if execution_noise_std > 0:
            action = add_noise(action, noise_rng, execution_noise_std)
        if grip_flip_rate > 0:
            if flip_left == 0 and flip_rng.random() < grip_flip_rate:
                flip_left = GRIP_FLIP_STEPS
            if flip_left > 0:
                action = action.copy()
                action[6] = -action[6]
                flip_left -= 1
        obs, reward, terminated, truncated, info = env.step(action)
        actions.append(action)
        rewards.append(reward)
        observations.append(obs)
        states.append(base.get_state())
        for cam in base.cameras:
            cam_to_world[cam].append(base.camera_params(cam).cam_to_world)
    return EpisodeRecord(
        seed=seed,
        success=bool(info.get("is_success", False)),
        states=np.array(states[:-1]),
        actions=np.array(actions),
        expert_actions=np.array(expert_actions) if perturbed else None,
        rewards=np.array(rewards, dtype=np.float64),
        obs={key: np.stack([o[key] for o in observations]) for key in observations[0]},
        intrinsics=intrinsics,
        cam_to_world={cam: np.array(poses) for cam, poses in cam_to_world.items()},
        model_file=base.get_model_xml(),
        instruction=base.instruction,
        sim_error=info.get("sim_error"),
        start_step=0 if start is None else start.step,
        start_control=None if start is None else start.control_state,
    )


# ---------------------------------------------------------------------------------------------------- workers
_WORKER: dict[str, Any] = {}


def _init_worker(task: str, robot: str, env_kwargs: dict, expert_kwargs: dict, execution_noise_std: float,
                 grip_flip_rate: float = 0.0, takeover: Takeover | None = None) -> None:
    # one core per worker: Mesa's software rasterizer would otherwise start a thread per core in every worker
    os.environ.setdefault("LP_NUM_THREADS", "1")  # read when the first GL context is made, below
    from mu0sim.envs import make_env
    from mu0sim.policies.scripted import make_expert

    _WORKER["env"] = make_env(task, robot, **env_kwargs)
    _WORKER["expert"] = make_expert(task, **expert_kwargs)
    _WORKER["execution_noise_std"] = execution_noise_std
    _WORKER["grip_flip_rate"] = grip_flip_rate
    _WORKER["takeover"] = takeover
    if takeover is not None:
        import torch

        from mu0sim.policies.action_expert import expert_env

        torch.set_num_threads(1)  # as in every evaluation worker: the policy's episode depends on its seed only
        _WORKER["policy_env"], _WORKER["policy"] = expert_env(takeover.policy, takeover.mu0, task, robot)


TAKEOVER_STREAM = 0x7A4E0  # the takeover step's own random stream per seed (the expert's draws do not shift)


def takeover_step(seed: int, steps: tuple[int, int]) -> int:
    """How many steps the policy drives the attempt of ``seed`` (uniform over ``steps``, both ends included)."""
    return int(np.random.default_rng([seed, TAKEOVER_STREAM]).integers(steps[0], steps[1] + 1))


def _attempt(seed: int) -> EpisodeRecord:
    takeover, start = _WORKER["takeover"], None
    if takeover is not None:
        start = policy_prefix(_WORKER["policy_env"], _WORKER["policy"], seed, takeover_step(seed, takeover.steps))
        if start is None:  # the policy's episode ended before the takeover: nothing to recover from
            return EpisodeRecord(seed=seed, success=False)
    return record_episode(_WORKER["env"], _WORKER["expert"], seed, _WORKER["execution_noise_std"],
                          _WORKER["grip_flip_rate"], start)


class _InlinePool:
    """One worker: run attempts in this process (no start-up cost, same results as the process pool)."""

    def __init__(self, *initargs):
        _init_worker(*initargs)

    def submit(self, fn, *args):
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait=True, cancel_futures=False):
        _WORKER["env"].close()
        if "policy_env" in _WORKER:
            _WORKER["policy_env"].close()
        _WORKER.clear()


# ---------------------------------------------------------------------------------------------------- collect
def _env_args() -> dict[str, Any]:
    return env_args_for(_WORKER["env"].unwrapped)


def collect(config: CollectConfig, progress: bool = True) -> CollectSummary:
    """Collect until the dataset at ``config.out`` holds ``config.episodes`` demos (appending/resuming)."""
    from tqdm import tqdm

    if config.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {config.episodes}")
    if config.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {config.workers}")
    if config.video_dir is not None and not config.cameras:
        raise ValueError("--video-dir needs at least one camera (--cameras agentview)")
    if config.takeover is not None:
        _check_takeover(config)
    collection = config.collection()  # builds the expert: validates task and options before any env is built
    config.out.parent.mkdir(parents=True, exist_ok=True)
    summary = CollectSummary(out=str(config.out))
    start = time.perf_counter()
    if config.execution_noise_std < 0:
        raise ValueError(f"--execution-noise-std must be >= 0, got {config.execution_noise_std}")
    if not 0 <= config.grip_flip_rate < 1:
        raise ValueError(f"--grip-flip-rate must be in [0, 1) (a probability per step), got {config.grip_flip_rate}")
    initargs = (config.task, config.robot, config.env_kwargs(), config.expert, config.execution_noise_std,
                config.grip_flip_rate, config.takeover)
    pool = (_InlinePool(*initargs) if config.workers == 1 else
            ProcessPoolExecutor(config.workers, mp_context=multiprocessing.get_context("spawn"),
                                initializer=_init_worker, initargs=initargs))
    writer: DatasetWriter | None = None
    bar = None
    try:
        writer = DatasetWriter(config.out, pool.submit(_env_args).result(),  # a worker's env describes itself
                               collection=collection,
                               legacy_collection=replace(config, expert={}, execution_noise_std=0.0,
                                                         grip_flip_rate=0.0).collection())
        attempted = {seed for seed, _ in writer.attempts}
        next_seed = max([config.seed, *[s + 1 for s in attempted]])
        max_attempts = config.max_attempts or 5 * config.episodes + 20
        bar = tqdm(total=config.episodes, initial=min(writer.num_demos, config.episodes),
                   desc=f"collect {config.task}/{config.robot}", unit="demo", disable=not progress,
                   dynamic_ncols=True)
        in_flight: dict[int, Future] = {}
        finished: dict[int, EpisodeRecord] = {}
        expected = next_seed  # the next seed to fold into the file: results are taken strictly in seed order
        last_commit = time.monotonic()
        while writer.num_demos < config.episodes:
            while (len(in_flight) < 2 * config.workers and len(writer.attempts) + len(in_flight) + len(finished)
                   < max_attempts):
                in_flight[next_seed] = pool.submit(_attempt, next_seed)
                next_seed += 1
            if not in_flight and expected not in finished:
                break  # attempt budget spent
            if in_flight:
                done, _ = wait(list(in_flight.values()), return_when=FIRST_COMPLETED)
                for seed in [s for s, fut in in_flight.items() if fut in done]:
                    finished[seed] = in_flight.pop(seed).result()
            while expected in finished and writer.num_demos < config.episodes:
                record = finished.pop(expected)
                expected += 1
                record.kept = record.success or config.keep_failures
                if record.kept and config.video_dir is not None:
                    _write_video(config.video_dir, record, config.cameras[0])
                summary.attempted += 1
                summary.kept += int(record.kept)
                summary.steps += record.num_samples
                writer.add(record)
                bar.update(int(record.kept))
                bar.set_postfix(attempts=summary.attempted, success=f"{summary.success_rate:.0%}")
            if time.monotonic() - last_commit > config.checkpoint_s:
                writer.commit()
                last_commit = time.monotonic()
        writer.close()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.commit()  # on Ctrl-C or a crash: everything finished so far is in the file
    summary.wall_s = time.perf_counter() - start
    summary.total_demos = writer.num_demos
    return summary


def _check_takeover(config: CollectConfig) -> None:
    """Refuse a takeover that cannot work, before any worker starts: a step range, an expert that can take over
    (``resume``), a policy checkpoint of this task and robot."""
    import json

    from mu0sim.policies.scripted import make_expert

    first, last = config.takeover.steps
    if not 1 <= first <= last:
        raise ValueError(f"--takeover-steps must be FIRST-LAST with 1 <= FIRST <= LAST, got {first}-{last}")
    if not hasattr(make_expert(config.task, **config.expert), "resume"):
        from mu0sim.policies.scripted import EXPERTS

        able = [task for task, expert in EXPERTS.items() if hasattr(expert, "resume")]
        raise ValueError(f"--takeover-policy: {config.task}'s scripted expert cannot take over from a policy's state "
                         f"(it has no resume); tasks whose experts can: {', '.join(able)}")
    meta_path = Path(config.takeover.policy) / "config.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"--takeover-policy {config.takeover.policy}: no config.json there (a folder written "
                                f"by mu0sim train-policy)")
    policy = json.loads(meta_path.read_text())["policy"]
    if (policy["task"], policy["robot"]) != (config.task, config.robot):
        raise ValueError(f"--takeover-policy {config.takeover.policy} acts on {policy['task']}/{policy['robot']}, "
                         f"not on {config.task}/{config.robot}")


def _write_video(video_dir: Path, record: EpisodeRecord, camera: str, fps: int = 20) -> None:
    import imageio.v2 as imageio

    video_dir.mkdir(parents=True, exist_ok=True)
    target = video_dir / f"seed_{record.seed:06d}_{camera}.mp4"
    tmp = video_dir / f".{target.name}.tmp.mp4"
    with imageio.get_writer(tmp, fps=fps, codec="libx264", macro_block_size=1, quality=7) as video:
        for frame in record.obs[f"{camera}_image"]:
            video.append_data(frame)
    os.replace(tmp, target)
