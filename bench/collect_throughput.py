"""Demo collection throughput: raw env stepping with the expert vs ``collect`` with 1 and 2 workers.

    python bench/collect_throughput.py [--task Lift] [--robot Panda] [--episodes 40] [--cameras agentview]
                                       [--image-size 128] [--depth] [--rounds 3]

Every round runs the same seeds (0..episodes-1) three ways, round-robin:
  raw       the expert drives the env in a plain loop, nothing recorded (the floor);
  collect 1 ``collect(..., workers=1)`` into a fresh file (recording, journal, HDF5 commit included);
  collect 2 the same with two worker processes (their start-up included).
Reports env steps/s and demos/min (medians over rounds), collection overhead vs raw, and 2-vs-1 speed-up.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from mu0sim.envs import make_env
from mu0sim.policies.scripted import make_expert
from mu0sim.rollouts.collect import CollectConfig, collect


def raw_round(task: str, robot: str, env_kwargs: dict, episodes: int) -> tuple[float, int, int]:
    """(wall seconds, env steps, successes) for the expert stepping the env with nothing recorded."""
    start = time.perf_counter()
    env = make_env(task, robot, **env_kwargs)
    expert = make_expert(task)
    steps = successes = 0
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        expert.reset(env.unwrapped, seed=seed)
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(expert.select_action(obs))
            steps += 1
            done = terminated or truncated
        successes += int(info["is_success"])
    env.close()
    return time.perf_counter() - start, steps, successes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="Lift")
    parser.add_argument("--robot", default="Panda")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--cameras", default="agentview", help="comma-separated, '' for state only")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--depth", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cameras = tuple(c for c in args.cameras.split(",") if c)
    env_kwargs = dict(cameras=cameras, image_size=args.image_size, depth=args.depth)

    rows: dict[str, list[tuple[float, int, int]]] = {"raw": [], "collect, 1 worker": [], "collect, 2 workers": []}
    scratch = Path(tempfile.mkdtemp(prefix="mu0sim-bench-"))
    try:
        for r in range(args.rounds):
            rows["raw"].append(raw_round(args.task, args.robot, env_kwargs, args.episodes))
            for workers in (1, 2):
                out = scratch / f"r{r}_w{workers}.hdf5"
                # keep_failures: the same seeds and steps in every configuration, whatever the expert's luck
                config = CollectConfig(task=args.task, robot=args.robot, episodes=args.episodes, out=out,
                                       workers=workers, keep_failures=True, **env_kwargs)
                start = time.perf_counter()
                summary = collect(config, progress=False)
                wall = time.perf_counter() - start
                rows[f"collect, {workers} worker{'s' if workers > 1 else ''}"].append(
                    (wall, summary.steps, summary.kept))
                out.unlink()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    def median_rate(name: str) -> tuple[float, float]:
        walls = [w for w, _, _ in rows[name]]
        steps = rows[name][0][1]
        return float(np.median([s / w for w, s, _ in rows[name]])), float(np.median([args.episodes / w * 60 for w in walls]))

    raw_sps, _ = median_rate("raw")
    one_sps, _ = median_rate("collect, 1 worker")
    print(f"\n{args.task}-{args.robot}, cameras={list(cameras) or 'none'}, {args.image_size}px"
          f"{' RGB+depth' if args.depth else ' RGB' if cameras else ''}, {args.episodes} episodes per run, "
          f"median of {args.rounds} rounds\n")
    print("| configuration | env steps/s | demos/min | vs raw | vs 1 worker |")
    print("|---|---:|---:|---:|---:|")
    for name in rows:
        sps, dpm = median_rate(name)
        print(f"| {name} | {sps:.1f} | {dpm:.1f} | {sps / raw_sps:.2f}x | {sps / one_sps:.2f}x |")
    print(f"\ncollection overhead over raw stepping (1 worker): {100 * (1 - one_sps / raw_sps):.1f}%")
    print(f"steps per run: {rows['raw'][0][1]}; expert successes per run: {rows['raw'][0][2]}/{args.episodes}")


if __name__ == "__main__":
    main()
