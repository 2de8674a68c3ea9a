"""Scripted-expert success rates per task x robot, measured by ``mu0sim collect`` (the numbers in RESULTS.md).

    python scripts/scripted_success_rates.py --tasks Lift,Stack --robots Panda,Sawyer --attempts 100 \
        --out-dir data/scripted_success [--workers 2]

Each cell is ``mu0sim collect --task T --robot R --episodes N --max-attempts N`` (state only, seeds 0..N-1):
success rate = kept / attempted. Cells are separate files, so an interrupted run resumes where it stopped. Prints
a Markdown table and writes ``<out-dir>/success_rates.json``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from mu0sim.rollouts.collect import CollectConfig, collect


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="Lift,Stack,PickPlaceCan,NutAssemblySquare,Door")
    parser.add_argument("--robots", default="Panda,Sawyer,IIWA,UR5e,Kinova3,XArm7")
    parser.add_argument("--attempts", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out-dir", default="data/scripted_success")
    args = parser.parse_args()
    out_dir = Path(args.out_dir)
    results = []
    for task in args.tasks.split(","):
        for robot in args.robots.split(","):
            path = out_dir / f"{task}_{robot}.hdf5"
            collect(CollectConfig(task=task, robot=robot, episodes=args.attempts, max_attempts=args.attempts,
                                  out=path, workers=args.workers))
            from mu0sim.datasets import open_dataset

            with open_dataset(path) as f:  # the whole file, also when this run only resumed it
                attempts = f["mu0sim/attempts"][()]
            kept, tried = int(attempts[:, 1].sum()), len(attempts)
            low, high = wilson_interval(kept, tried)
            results.append({"task": task, "robot": robot, "attempted": tried, "successes": kept,
                            "success_rate": kept / tried, "wilson_low": low, "wilson_high": high})
    (out_dir / "success_rates.json").write_text(json.dumps(results, indent=2))
    robots = args.robots.split(",")
    print("\n| task | " + " | ".join(robots) + " |")
    print("|---|" + "---:|" * len(robots))
    for task in args.tasks.split(","):
        cells = {r["robot"]: r for r in results if r["task"] == task}
        print(f"| {task} | " + " | ".join(f"{cells[r]['successes']}/{cells[r]['attempted']}" for r in robots) + " |")


if __name__ == "__main__":
    main()
