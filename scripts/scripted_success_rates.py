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
from pathlib import Path

from mu0sim.rollouts.collect import CollectConfig, collect
from mu0sim.rollouts.evaluate import wilson_interval


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
