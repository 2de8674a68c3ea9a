"""Environment step throughput, side by side in one process: raw MuJoCo, robosuite, mu0sim.

    python bench/env_throughput.py [--task Lift] [--robot Panda] [--size 128] [--steps 100] [--rounds 7]

Configurations are measured round-robin (one round of each, repeated), so every median comes from the same
machine conditions. A round is ``--steps`` control steps at 20 Hz after an untimed reset, with small random actions
from a fixed seed. Prints a Markdown table and writes JSON to ``bench/out/env_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import robosuite  # noqa: E402

from mu0sim.envs import make_env  # noqa: E402


def machine_description() -> str:
    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, mujoco {mujoco.__version__}, " \
           f"robosuite {robosuite.__version__}, MUJOCO_GL={os.environ['MUJOCO_GL']}"


class Config:
    """One measured configuration: ``reset()`` (untimed) and ``step(action)``."""

    def __init__(self, name: str, reset: Callable[[], None], step: Callable[[np.ndarray], None],
                 before_round: Callable[[], None] = lambda: None, substeps: int = 1):
        self.name, self.reset, self.step, self.before_round, self.substeps = name, reset, step, before_round, substeps
        self.rates: list[float] = []


def robosuite_env(task: str, robot: str, size: int | None):
    kwargs = dict(has_renderer=False, ignore_done=True, seed=0)
    if size is None:
        kwargs.update(has_offscreen_renderer=False, use_camera_obs=False)
    else:
        kwargs.update(has_offscreen_renderer=True, use_camera_obs=True, camera_names="agentview",
                      camera_heights=size, camera_widths=size, camera_depths=True)
    return robosuite.make(task, robots=robot, **kwargs)


def build_configs(task: str, robot: str, size: int) -> list[Config]:
    configs = []
    # Raw physics on the same compiled model, no controller: the floor under everything else.
    raw = robosuite_env(task, robot, None)
    model, data = raw.sim.model._model, raw.sim.data._data
    substeps = int(round(raw.control_timestep / raw.model_timestep))

    def raw_step(_action):
        for _ in range(substeps):
            mujoco.mj_step(model, data)

    configs.append(Config("raw mujoco.mj_step (per control step)", lambda: mujoco.mj_resetData(model, data),
                          raw_step, substeps=substeps))

    rs_state = robosuite_env(task, robot, None)
    configs.append(Config("robosuite, no rendering", rs_state.reset, rs_state.step))
    rs_cam = robosuite_env(task, robot, size)
    gl = rs_cam.sim._render_context_offscreen.gl_ctx  # several contexts live in this process: claim robosuite's
    configs.append(Config(f"robosuite, agentview {size}px RGB+depth (its defaults)", rs_cam.reset, rs_cam.step,
                          before_round=gl.make_current))

    for name, kwargs in [
        ("mu0sim, state-only", dict(cameras=())),
        (f"mu0sim, agentview {size}px RGB+depth", dict(cameras=("agentview",), image_size=size, depth=True)),
        (f"mu0sim, agentview {size}px RGB+depth, images every 8th step",
         dict(cameras=("agentview",), image_size=size, depth=True, image_period=8)),
    ]:
        env = make_env(task, robot, **kwargs).unwrapped  # no TimeLimit: rounds may exceed the episode limit

        def reset(env=env):
            env.reset(seed=0)

        configs.append(Config(name, reset, env.step))
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="Lift")
    parser.add_argument("--robot", default="Panda")
    parser.add_argument("--size", type=int, default=128, help="camera image side, pixels")
    parser.add_argument("--steps", type=int, default=100, help="timed control steps per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", default="bench/out/env_throughput.json")
    args = parser.parse_args()

    configs = build_configs(args.task, args.robot, args.size)
    actions = np.random.default_rng(0).uniform(-0.3, 0.3, (args.steps, 7)).astype(np.float32)
    for config in configs:  # warm-up: numba compilation, GL shader compilation, caches
        config.before_round()
        config.reset()
        for action in actions[:10]:
            config.step(action)
    for _ in range(args.rounds):
        for config in configs:
            config.before_round()
            config.reset()
            start = time.perf_counter()
            for action in actions:
                config.step(action)
            config.rates.append(args.steps / (time.perf_counter() - start))

    medians = {c.name: float(np.median(c.rates)) for c in configs}
    names = [c.name for c in configs]
    rs_plain, rs_cam = medians[names[1]], medians[names[2]]
    print(f"\n{args.task}-{args.robot}, 20 Hz control, median of {args.rounds} rounds x {args.steps} steps")
    print(f"Machine: {machine_description()}\n")
    print("| configuration | env steps/s (median) | min-max | vs robosuite, no rendering | vs robosuite camera |")
    print("|---|---:|---:|---:|---:|")
    for c in configs:
        m = medians[c.name]
        print(f"| {c.name} | {m:.1f} | {min(c.rates):.1f}-{max(c.rates):.1f} | {m / rs_plain:.2f}x | "
              f"{m / rs_cam:.2f}x |")
    raw = configs[0]
    print(f"\nraw mj_step: {medians[raw.name] * raw.substeps:.0f} physics steps/s ({raw.substeps} per control step)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "machine": machine_description(),
                                          "rates": {c.name: c.rates for c in configs}, "medians": medians}, indent=2))


if __name__ == "__main__":
    main()
