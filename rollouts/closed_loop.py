"""Closed-loop episodes of an action expert with frozen μ0 in the loop (one process; issue #7 scales this out)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class EpisodeOutcome:
    seed: int
    success: bool
    length: int
    sim_error: str | None = None
    wall_s: float = 0.0


def run_episodes(policy_dir: str | Path, mu0_ckpt: str | Path, task: str, robot: str, seeds: list[int],
                 progress: bool = True) -> list[EpisodeOutcome]:
    """Run the policy on ``task``/``robot`` once per seed; μ0 is queried at the start of every action chunk."""
    return list(iter_episodes(policy_dir, mu0_ckpt, task, robot, seeds, progress))


def iter_episodes(policy_dir: str | Path, mu0_ckpt: str | Path, task: str, robot: str, seeds: list[int],
                  progress: bool = True) -> Iterator[EpisodeOutcome]:
    """Like :func:`run_episodes`, yielding each episode as soon as it ends (so callers can record it at once)."""
    from tqdm import tqdm

    from mu0sim.envs import make_env
    from mu0sim.model import Mu0
    from mu0sim.policies.action_expert import ActionExpert
    from mu0sim.policies.trace_observation import Mu0TraceObservation
    from mu0sim.policies.train_bc import mu0_fingerprint

    mu0 = Mu0.from_pretrained(mu0_ckpt)
    policy = ActionExpert.from_pretrained(policy_dir, robot=robot, mu0_id=mu0_fingerprint(mu0_ckpt))
    train_config = json.loads((Path(policy_dir) / "config.json").read_text())["train_config"]
    env = make_env(task, robot, cameras=(mu0.config.camera,), image_size=mu0.image_size, depth=True,
                   segmentation=True, image_period=0)
    env = Mu0TraceObservation(env, mu0, query=train_config["query"], num_points=train_config["num_points"],
                              query_every=policy.config.execute, camera=mu0.config.camera)
    try:
        for seed in tqdm(seeds, desc=f"eval {task}/{robot}", unit="ep", disable=not progress, dynamic_ncols=True):
            start = time.perf_counter()
            obs, info = env.reset(seed=seed)
            policy.reset()
            done, steps = False, 0
            while not done:
                obs, _, terminated, truncated, info = env.step(policy.select_action(obs))
                steps += 1
                done = terminated or truncated
            yield EpisodeOutcome(seed, bool(info["is_success"]), steps, info.get("sim_error"),
                                 round(time.perf_counter() - start, 3))
    finally:
        env.close()


def summarize(outcomes: list[EpisodeOutcome], wall_s: float | None = None) -> dict:
    n = len(outcomes)
    k = sum(o.success for o in outcomes)
    return {"episodes": n, "successes": k, "success_rate": k / n if n else None,
            "mean_length": float(np.mean([o.length for o in outcomes])) if n else None,
            **({"wall_s": round(wall_s, 1)} if wall_s is not None else {})}


__all__ = ["EpisodeOutcome", "iter_episodes", "run_episodes", "summarize"]
