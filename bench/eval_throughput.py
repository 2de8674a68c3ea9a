"""Closed-loop evaluation throughput: mu0sim eval with μ0 in the loop vs robosuite's own camera-observation step
rate, and 2 workers vs 1, side by side in one run.

    python bench/eval_throughput.py --policy runs/policies/lift/Panda_trace [more policies] [--episodes 10]
        [--rounds 2] [--pool] [--runtimes onnxruntime]

Each round measures, in turn: robosuite stepping Lift/<robot of the first policy> with its default camera
observation at the same camera and size as μ0 (agentview 128 px RGB-D, ``--robosuite-steps`` random small actions);
one ``mu0sim eval`` call over every ``--policy`` (one row each, ``--episodes`` episodes per row, seeds 4000..) with
one worker (in-process) and with two workers (one pool for all rows); with ``--pool``, also the worker pool alone with
one and with two processes over the same rows; with ``--runtimes``, also the one-worker call with μ0 in each listed
inference runtime (``mu0sim eval --mu0-runtime``; the other rows use the default, TorchScript). Every episode steps
with one torch thread. Steps/s = env steps of all episodes / wall time of the call (process start-up included);
"per-episode" = env steps / the summed wall time of the episodes themselves x workers (what the call would reach
without start-up: a worker imports torch and robosuite and builds its env and μ0 once, ~5 s). Medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from env_throughput import machine_description, robosuite_env  # noqa: E402


def robosuite_rate(robot: str, size: int, steps: int) -> float:
    env = robosuite_env("Lift", robot, size)
    env.reset()
    rng = np.random.default_rng(0)
    low, high = env.action_spec
    start = time.perf_counter()
    for _ in range(steps):
        env.step(np.clip(rng.normal(0, 0.1, low.shape), low, high))
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def eval_rate(policies: list[str], robots: list[str], episodes: int, workers: int,
              mu0_runtime: str = "torchscript") -> tuple[float, float]:
    """``mu0sim eval`` as a user runs it: ``workers=1`` steps in this process, more use one pool for all rows.
    Returns (steps/s of the call, steps/s of the episodes alone x workers)."""
    from mu0sim.rollouts.evaluate import EvalConfig, evaluate

    out = Path(tempfile.mkdtemp(prefix="eval_bench_"))
    try:
        start = time.perf_counter()
        evaluate(EvalConfig(policies=policies, task="Lift", robots=robots, episodes=episodes, seed_start=4000,
                            out=str(out), workers=workers, mu0_runtime=mu0_runtime), progress=False)
        wall = time.perf_counter() - start
        records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
        steps = sum(r["length"] for r in records)
        return steps / wall, workers * steps / sum(r["wall_s"] for r in records)
    finally:
        shutil.rmtree(out)


def pool_rate(policies: list[str], robots: list[str], episodes: int, workers: int) -> float:
    """The worker pool itself with ``workers`` processes over the same rows, so 1 vs 2 measures its scaling."""
    from mu0sim.rollouts.workers import EpisodePool

    start = time.perf_counter()
    steps = 0
    with EpisodePool(workers) as pool:
        for policy, robot in zip(policies, robots):
            mu0 = json.loads((Path(policy) / "config.json").read_text())["train_config"]["mu0"]
            steps += sum(o.length for o in pool.run(policy, mu0, "Lift", robot, list(range(4000, 4000 + episodes))))
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", nargs="+", required=True, help="one row each (Lift policies)")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--robosuite-steps", type=int, default=300)
    parser.add_argument("--pool", action="store_true", help="also time the worker pool alone (1 and 2 processes)")
    parser.add_argument("--runtimes", default="",
                        help="comma-separated μ0 runtimes also timed with 1 worker beside the default TorchScript "
                             "(e.g. onnxruntime)")
    args = parser.parse_args()
    extra_runtimes = [r for r in args.runtimes.split(",") if r and r != "torchscript"]
    robots = [json.loads((Path(p) / "config.json").read_text())["policy"]["robot"] for p in args.policy]
    rates: dict[str, list[float]] = {"robosuite camera obs": [], "mu0sim eval, 1 worker": [],
                                     "mu0sim eval, 2 workers": [], "per-episode, 1 worker": [],
                                     "per-episode, 2 workers": []}
    if args.pool:
        rates.update({"worker pool, 1 process": [], "worker pool, 2 processes": []})
    for runtime in extra_runtimes:
        rates.update({f"mu0sim eval, 1 worker, {runtime}": [], f"per-episode, 1 worker, {runtime}": []})
    for _ in range(args.rounds):
        rates["robosuite camera obs"].append(robosuite_rate(robots[0], 128, args.robosuite_steps))
        for workers in (1, 2):
            name = f"{workers} worker{'s' * (workers > 1)}"
            call, episodes = eval_rate(args.policy, robots, args.episodes, workers)
            rates[f"mu0sim eval, {name}"].append(call)
            rates[f"per-episode, {name}"].append(episodes)
        for runtime in extra_runtimes:
            call, episodes = eval_rate(args.policy, robots, args.episodes, 1, runtime)
            rates[f"mu0sim eval, 1 worker, {runtime}"].append(call)
            rates[f"per-episode, 1 worker, {runtime}"].append(episodes)
        for workers in (1, 2) if args.pool else ():
            rates[f"worker pool, {workers} process{'es' * (workers > 1)}"].append(
                pool_rate(args.policy, robots, args.episodes, workers))
    med = {k: float(np.median(v)) for k, v in rates.items()}
    print(f"machine: {machine_description()}")
    rows = ", ".join(f"Lift/{r} ({Path(p).name})" for p, r in zip(args.policy, robots))
    print(f"rows: {rows}; agentview 128 px RGB-D, {args.episodes} episodes per row, {args.rounds} rounds\n")
    print("| configuration | steps/s (median) | rounds |\n|---|---:|---|")
    for k, v in rates.items():
        print(f"| {k} | {med[k]:.1f} | {', '.join(f'{x:.1f}' for x in v)} |")
    print(f"\nmu0sim eval (1 worker) / robosuite: {med['mu0sim eval, 1 worker'] / med['robosuite camera obs']:.2f}x; "
          f"2 workers / 1: {med['mu0sim eval, 2 workers'] / med['mu0sim eval, 1 worker']:.2f}x "
          f"(per-episode: {med['per-episode, 2 workers'] / med['per-episode, 1 worker']:.2f}x)"
          + (f"; pool 2 processes / 1: {med['worker pool, 2 processes'] / med['worker pool, 1 process']:.2f}x"
             if args.pool else ""))
    for runtime in extra_runtimes:
        print(f"mu0sim eval (1 worker), {runtime} / torchscript: "
              f"{med[f'mu0sim eval, 1 worker, {runtime}'] / med['mu0sim eval, 1 worker']:.2f}x "
              f"(per-episode: {med[f'per-episode, 1 worker, {runtime}'] / med['per-episode, 1 worker']:.2f}x); "
              f"{runtime} / robosuite: {med[f'mu0sim eval, 1 worker, {runtime}'] / med['robosuite camera obs']:.2f}x")


if __name__ == "__main__":
    main()
