"""Cost of one camera frame (render + read-back of RGB and depth) as the fast settings are switched on one by one.

    python bench/render_settings.py [--task Lift] [--robot Panda] [--camera agentview] [--size 128] [--rounds 7]

The first row is robosuite's own rendering quality; each further row adds one setting to the previous. All rows are
measured round-robin in one process (each env claims its own GL context), medians of ``--rounds`` x ``--frames``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from mu0sim.envs import make_env
from mu0sim.envs.rendering import RenderSettings

STEPS = [
    ("robosuite quality (4x MSAA, shadows, reflections, skybox, sites, IK markers)",
     dict(anti_aliasing=True, shadows=True, reflections=True, skybox=True, sites=True, ik_target_markers=True,
          frustum_culling=False)),
    ("+ anti-aliasing off", dict(anti_aliasing=False)),
    ("+ shadows and reflections off", dict(shadows=False, reflections=False)),
    ("+ skybox and haze off", dict(skybox=False)),
    ("+ site markers off", dict(sites=False)),
    ("+ IK target markers off", dict(ik_target_markers=False)),
    ("+ frustum culling (= mu0sim default)", dict(frustum_culling=True)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="Lift")
    parser.add_argument("--robot", default="Panda")
    parser.add_argument("--camera", default="agentview")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    settings, rows = {}, []
    for name, change in STEPS:
        settings.update(change)
        env = make_env(args.task, args.robot, cameras=(args.camera,), image_size=args.size, depth=True,
                       render_settings=RenderSettings(**settings)).unwrapped
        env.reset(seed=0)
        rows.append((name, env, []))
    assert dataclasses.asdict(RenderSettings(**settings)) == dataclasses.asdict(RenderSettings()), "last row != default"
    for _ in range(args.rounds + 1):  # the first round warms up and is discarded
        for _, env, times in rows:
            start = time.perf_counter()
            for _ in range(args.frames):
                env.refresh_images()
            times.append((time.perf_counter() - start) / args.frames * 1e3)
    print(f"{args.task}-{args.robot}, {args.camera} {args.size}px RGB+depth, ms per frame "
          f"(median of {args.rounds} rounds x {args.frames} frames)\n")
    print("| settings | ms/frame | min-max |")
    print("|---|---:|---:|")
    for name, _, times in rows:
        times = times[1:]
        print(f"| {name} | {np.median(times):.1f} | {min(times):.1f}-{max(times):.1f} |")


if __name__ == "__main__":
    main()
