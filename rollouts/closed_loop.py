"""Closed-loop episodes of an action expert with frozen μ0 in the loop (one process; issue #7 scales this out)."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class EpisodeOutcome:
    """One closed-loop episode. ``first_grasp_step``: the first step after which the gripper held the task's first
    object (``info["grasping"]``), None if it never did: where a failed episode got to."""

    seed: int
    success: bool
    length: int
    sim_error: str | None = None
    wall_s: float = 0.0
    first_grasp_step: int | None = None


def run_episodes(policy_dir: str | Path, mu0_ckpt: str | Path, task: str, robot: str, seeds: list[int],
                 progress: bool = True, video_dir: str | Path | None = None,
                 video_seeds: Collection[int] = (), mu0_runtime: str = "torchscript") -> list[EpisodeOutcome]:
    """Run the policy on ``task``/``robot`` once per seed; μ0 is queried at the start of every action chunk.
    Episodes whose seed is in ``video_seeds`` are also written to ``video_dir`` as MP4s with μ0's predicted traces
    drawn on the camera μ0 sees (rendered at every step for those episodes only). ``mu0_runtime``: how μ0 runs
    (``Mu0.from_pretrained``'s ``runtime``; ``"onnxruntime"`` is faster, and its episodes may end differently)."""
    return list(iter_episodes(policy_dir, mu0_ckpt, task, robot, seeds, progress, video_dir, video_seeds,
                              mu0_runtime=mu0_runtime))


class EpisodeRunner:
    """One (policy, task, robot) row's env and policy, built once; :meth:`run` plays one closed-loop episode.

    Workers keep one alive across the seeds (and rows) they are handed, so an episode costs only its steps. The
    caller sets torch's thread count (see :func:`iter_episodes`)."""

    def __init__(self, policy_dir: str | Path, mu0_ckpt: str | Path, task: str, robot: str,
                 mu0_runtime: str = "torchscript") -> None:
        from mu0sim.policies.action_expert import expert_env

        self.policy_dir, self.task, self.robot = Path(policy_dir), task, robot
        self.env, self.policy = expert_env(policy_dir, mu0_ckpt, task, robot, mu0_runtime=mu0_runtime)

    def run(self, seed: int, video_dir: str | Path | None = None) -> EpisodeOutcome:
        """Play the episode of ``seed`` (env, μ0 sampling and policy all reseeded: the outcome depends on the seed
        only); with ``video_dir``, also write it as an MP4 with μ0's predicted traces drawn."""
        env, policy = self.env, self.policy
        start = time.perf_counter()
        obs, info = env.reset(seed=seed)
        policy.reset(seed=seed)
        frames = [] if video_dir is not None else None
        done, steps, first_grasp = False, 0, None
        while not done:
            if frames is not None:
                frames.append(trace_frame(env, obs))
            obs, _, terminated, truncated, info = env.step(policy.select_action(obs))
            steps += 1
            if first_grasp is None and info["grasping"]:
                first_grasp = steps
            done = terminated or truncated
        outcome = EpisodeOutcome(seed, bool(info["is_success"]), steps, info.get("sim_error"),
                                 round(time.perf_counter() - start, 3), first_grasp)
        if frames is not None:
            frames.append(trace_frame(env, obs))
            policy_name = self.policy_dir.name
            prefix = "" if policy_name.startswith(f"{self.task}_{self.robot}") else f"{self.task}_{self.robot}_"
            name = f"{prefix}{policy_name}_seed{seed}_{'success' if outcome.success else 'fail'}"
            write_video(Path(video_dir) / f"{name}.mp4", frames)
        return outcome

    def close(self) -> None:
        self.env.close()


def iter_episodes(policy_dir: str | Path, mu0_ckpt: str | Path, task: str, robot: str, seeds: list[int],
                  progress: bool = True, video_dir: str | Path | None = None,
                  video_seeds: Collection[int] = (),
                  before_episode: Callable[[int], None] | None = None,
                  mu0_runtime: str = "torchscript") -> Iterator[EpisodeOutcome]:
    """Like :func:`run_episodes`, yielding each episode as soon as it ends (so callers can record it at once).
    ``before_episode(seed)`` is called before each episode starts (hooks: logging, fault injection in tests)."""
    import torch
    from tqdm import tqdm

    # One torch thread, as in every worker: a closed loop amplifies the float differences between thread counts into
    # different episodes, and an outcome must depend on its seed only, not on how many workers ran it. (One
    # process gains nothing from a second thread here: an episode is a serial chain; see BENCHMARKS.md.)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    runner = EpisodeRunner(policy_dir, mu0_ckpt, task, robot, mu0_runtime)
    try:
        for seed in tqdm(seeds, desc=f"eval {task}/{robot}", unit="ep", disable=not progress, dynamic_ncols=True):
            if before_episode is not None:
                before_episode(seed)
            yield runner.run(seed, video_dir if seed in video_seeds else None)
    finally:
        runner.close()
        torch.set_num_threads(threads)


def trace_frame(env, obs: dict[str, np.ndarray], scale: int = 3) -> np.ndarray:
    """The camera μ0 sees, upscaled ``scale`` times, with μ0's latest predicted traces drawn (near future yellow,
    far purple)."""
    from mu0sim.traces.show import draw_traces

    wrapper, base = env, env.unwrapped
    rgb = base.render_frame(wrapper.camera, depth=False, segmentation=False).rgb
    size = rgb.shape[0]
    now = obs["mu0_query_uvz"]
    future = now[:, None] + obs["mu0_traces"] * wrapper.mu0.model.normalizer.scale
    uv = (future[..., :2] + 1) / 2 * size
    valid = np.repeat(obs["mu0_query_mask"][:, None] > 0, uv.shape[1], 1)
    return draw_traces(rgb, uv, valid, np.zeros(len(uv), np.int8), scale=scale)


def write_video(path: Path, frames: list[np.ndarray], fps: int = 20) -> None:
    """H.264 MP4, written to a temporary name and moved into place (an interrupted write leaves no half file)."""
    import os

    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    with imageio.get_writer(tmp, fps=fps, codec="libx264", macro_block_size=1, quality=8) as video:
        for frame in frames:
            video.append_data(frame)
    os.replace(tmp, path)


def summarize(outcomes: list[EpisodeOutcome], wall_s: float | None = None) -> dict:
    n = len(outcomes)
    k = sum(o.success for o in outcomes)
    return {"episodes": n, "successes": k, "success_rate": k / n if n else None,
            "mean_length": float(np.mean([o.length for o in outcomes])) if n else None,
            **({"wall_s": round(wall_s, 1)} if wall_s is not None else {})}


__all__ = ["EpisodeOutcome", "EpisodeRunner", "iter_episodes", "run_episodes", "summarize", "trace_frame",
           "write_video"]
