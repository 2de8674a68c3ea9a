"""TraceExtract throughput (frames/s) in sim and video mode on the same dataset, side by side.

    python bench/extract_throughput.py [--task Lift] [--robot Panda] [--episodes 10] [--size 128] [--rounds 3]

Collects a small RGB-D dataset once (agentview), then extracts it round-robin in both modes into fresh sidecars;
reports median frames/s. Sim mode re-renders each frame (for keypoint selection and the depth test); video mode does
that too (it is scored against the simulator), plus Lucas–Kanade tracking.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from mu0sim.rollouts.collect import CollectConfig, collect
from mu0sim.traces import ExtractConfig, extract_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="Lift")
    parser.add_argument("--robot", default="Panda")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="mu0sim-extract-bench-"))
    try:
        dataset = scratch / "demos.hdf5"
        collect(CollectConfig(task=args.task, robot=args.robot, episodes=args.episodes, out=dataset,
                              cameras=("agentview",), image_size=args.size, depth=True), progress=False)
        rates: dict[str, list[float]] = {"sim": [], "video": []}
        last: dict[str, dict] = {}
        for r in range(args.rounds):
            for mode in rates:
                out = scratch / f"{mode}_{r}.hdf5"
                start = time.perf_counter()
                last[mode] = extract_dataset(ExtractConfig(dataset=dataset, mode=mode, out=out), progress=False)
                rates[mode].append(last[mode]["frames_this_run"] / (time.perf_counter() - start))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{args.task}-{args.robot}, {args.episodes} demos, agentview {args.size}px RGB-D, "
          f"median of {args.rounds} rounds\n")
    print("| mode | frames/s (median) | min-max | keypoints/episode |")
    print("|---|---:|---:|---:|")
    for mode, values in rates.items():
        print(f"| {mode} | {np.median(values):.1f} | {min(values):.1f}-{max(values):.1f} | "
              f"{last[mode]['keypoints_per_episode']} |")


if __name__ == "__main__":
    main()
