"""At what yaw does a policy close its gripper on the cube? Closed-loop episodes of an action expert on Lift or Stack,
with the cube's misalignment to the fingers at the policy's first close command, against success.

    python scripts/grasp_yaw.py --policy runs/ablations/A/policies/Stack_Sawyer_trace_50demos \\
        --seeds 2000-2049 --out runs/grasp_yaw/A.jsonl [--demos data/tuning_stack/Stack_Sawyer.hdf5]

Misalignment: the angle (degrees, 0-45) between the fingers' closing axis and the nearest pair of the cube's faces,
the yaw a grasp must match (the scripted experts turn to it within 0.05 rad before descending). ``--demos`` also
measures it at the first close command of each recorded demo (the policy's robot). Each episode is appended to
``--out`` as it ends (a rerun skips the seeds the same checkpoint played there: rows carry its ``policy_id``).
Prints success per misalignment bin. Episodes are the evaluation's: one torch thread, env, μ0 and policy reseeded
per seed (``mu0sim eval`` gives the same outcomes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

CUBE_QUAT = {"Lift": "cube_quat", "Stack": "cubeA_quat"}  # the cube each task grasps first
BINS_DEG = (0, 10, 20, 30, 45)


def misalignment_deg(obs: dict, quat_slice: slice, closing_yaw_in_eef: float) -> float:
    """Yaw (degrees, 0-45) between the fingers' closing axis and the nearest pair of the cube's faces."""
    from mu0sim.policies.scripted.common import quat_xyzw_to_mat, wrap_angle, yaw_of_x_axis

    closing = yaw_of_x_axis(quat_xyzw_to_mat(np.asarray(obs["robot0_eef_quat"], np.float64))) + closing_yaw_in_eef
    cube = yaw_of_x_axis(quat_xyzw_to_mat(np.asarray(obs["object"][quat_slice], np.float64)))
    return float(abs(np.degrees(wrap_angle(cube - closing, np.pi / 2))))


def demo_misalignment(path: str, quat_slice: slice, closing_yaw_in_eef: float) -> list[float]:
    from mu0sim.datasets.hdf5 import iter_episodes

    out = []
    for _, demo in iter_episodes(path, obs_keys=["object", "robot0_eef_quat"]):
        closes = np.flatnonzero(demo["actions"][:, -1] > 0)
        if len(closes):
            obs = {k: v[int(closes[0])] for k, v in demo["obs"].items()}
            out.append(misalignment_deg(obs, quat_slice, closing_yaw_in_eef))
    return out


def summary(rows: list[dict]) -> str:
    lines = ["| misalignment at close (deg) | episodes | successes |", "|---|---:|---:|"]
    for lo, hi in zip(BINS_DEG[:-1], BINS_DEG[1:]):
        top = hi + (hi == BINS_DEG[-1])  # the last bin includes 45
        inside = [r for r in rows if r["misalignment_deg"] is not None and lo <= r["misalignment_deg"] < top]
        lines.append(f"| {lo}-{hi} | {len(inside)} | {sum(r['success'] for r in inside)} |")
    never = [r for r in rows if r["misalignment_deg"] is None]
    lines.append(f"| never closed | {len(never)} | {sum(r['success'] for r in never)} |")
    seen = [r["misalignment_deg"] for r in rows if r["misalignment_deg"] is not None]
    if seen:
        lines.append(f"\nmedian {np.median(seen):.1f} deg, p90 {np.percentile(seen, 90):.1f} deg over {len(seen)} "
                     f"episodes; {sum(r['success'] for r in rows)}/{len(rows)} succeed")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True, help="action-expert checkpoint folder")
    parser.add_argument("--mu0", default="checkpoints/mu0-sim")
    parser.add_argument("--seeds", default="2000-2049", help="'FIRST-LAST' or comma-separated")
    parser.add_argument("--out", required=True, help="JSONL of per-episode rows (appended; resumable)")
    parser.add_argument("--demos", help="a dataset of the policy's task and robot: measure its demos too")
    args = parser.parse_args()
    from mu0sim.cli import parse_int_list

    try:
        seeds = parse_int_list(args.seeds, "--seeds")
    except ValueError as err:
        raise SystemExit(str(err)) from None

    import torch
    from tqdm import tqdm

    from mu0sim.policies.action_expert import ActionExpertConfig
    from mu0sim.policies.scripted.stack import closing_axis_in_eef
    from mu0sim.rollouts.closed_loop import EpisodeRunner
    from mu0sim.rollouts.evaluate import policy_id

    config = ActionExpertConfig.from_dict(json.loads((Path(args.policy) / "config.json").read_text())["policy"])
    if config.task not in CUBE_QUAT:
        raise SystemExit(f"task {config.task!r} of {args.policy} has no cube to grasp; valid tasks: "
                         f"{', '.join(CUBE_QUAT)}")
    torch.set_num_threads(1)  # as every evaluation worker: the same episodes as `mu0sim eval`
    runner = EpisodeRunner(args.policy, args.mu0, config.task, config.robot)
    env, policy = runner.env, runner.policy
    base = env.unwrapped
    quat_slice = base.object_layout[CUBE_QUAT[config.task]]
    axis = closing_axis_in_eef(base)
    closing_yaw = 0.0 if axis is None else float(np.arctan2(axis[1], axis[0]))
    if args.demos:
        demo = demo_misalignment(args.demos, quat_slice, closing_yaw)
        print(f"demos ({args.demos}): misalignment at close median {np.median(demo):.1f} deg, max {np.max(demo):.1f} "
              f"deg over {len(demo)} demos")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []
    checkpoint = policy_id(args.policy)  # a checkpoint retrained in place plays its seeds again
    rows = [r for r in rows if r.get("policy_id") == checkpoint]
    done = {r["seed"] for r in rows}
    with out.open("a") as log:
        for seed in tqdm([s for s in seeds if s not in done], desc="grasp yaw", unit="ep"):
            obs, info = env.reset(seed=seed)
            policy.reset(seed=seed)
            finished, step, at_close, close_step = False, 0, None, None
            while not finished:
                action = policy.select_action(obs)
                if close_step is None and action[-1] > 0:
                    at_close, close_step = misalignment_deg(obs, quat_slice, closing_yaw), step
                obs, _, terminated, truncated, info = env.step(action)
                step += 1
                finished = terminated or truncated
            row = {"policy": str(args.policy), "policy_id": checkpoint, "seed": seed,
                   "success": bool(info["is_success"]), "close_step": close_step,
                   "misalignment_deg": None if at_close is None else round(at_close, 2)}
            log.write(json.dumps(row) + "\n")
            log.flush()
            rows.append(row)
    runner.close()
    print(summary(rows))


if __name__ == "__main__":
    main()
