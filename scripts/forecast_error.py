"""How far is μ0's forecast from what the demonstrator would do, on the states a policy visits and on demos?

    python scripts/forecast_error.py --policy runs/ablations/A/policies/Stack_Panda_trace-clock_10demos \\
        --seeds 2000-2019 --demos data/scripted_success/Stack_Panda.hdf5 --demo-range 30-39 \\
        --out runs/forecast_error/A.jsonl

At every μ0 query of a closed-loop episode of ``--policy`` (a ``trace`` expert, queried as in ``mu0sim eval``), the
forecast of each query point is compared with the future the task's scripted expert would give it from that state
(:class:`~mu0sim.policies.oracle_traces.ExpertTraceOracle`: the ``gt-trace`` variant's oracle). Error: the mean
over the H = 32 forecast steps of the 3D distance (cm), averaged over the real query points on the gripper (label
slot robot) and on the task objects (slots >= 2); ``motion``: the same for a forecast of no motion (how far the
points actually move), to read the errors against. ``--demos`` measures the same on the recorded demos
``--demo-range`` of the policy's robot (replayed with their own actions, μ0 queried every ``execute`` steps); pick
demos μ0 was not trained on (it was trained on demos 0-20) for a fair reference.

Each episode is appended to ``--out`` as it ends; a rerun skips the episodes already there for the same checkpoint
(rows carry its ``policy_id``). Prints the medians per source (demos, successful and failed episodes), over all
queries and per range of episode steps. ``--summary-only`` prints them from ``--out`` without playing anything.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROBOT_SLOT = 1  # label slot of the gripper's query points (mu0sim.policies.action_expert.ROBOT_SLOT)


def query_errors(obs: dict, env, oracle, gripper_points: int) -> dict[str, float | None]:
    """The forecast's and a no-motion forecast's mean 3D error (cm) against the oracle's future, per point group
    (None where the group has no real query point). ``env``: the Mu0TraceObservation that made ``obs``."""
    from mu0sim.policies.action_expert import label_slots
    from mu0sim.policies.oracle_traces import attach_query_points

    base = env.unwrapped
    params = base.camera_params(env.camera)
    uv_px = (obs["mu0_query_uvz"][:, :2] + 1.0) / 2.0 * env.mu0.image_size
    start = obs["mu0_query_world"].astype(np.float64)
    keypoints = attach_query_points(base, params, uv_px, start, gripper_points)
    truth = oracle.future(base, keypoints, obs["mu0_traces_world"].shape[1])  # (K, H, 3) metres
    forecast = start[:, None] + obs["mu0_traces_world"]
    error = np.linalg.norm(forecast - truth, axis=-1).mean(-1) * 100.0
    motion = np.linalg.norm(truth - start[:, None], axis=-1).mean(-1) * 100.0
    slots, real = label_slots(obs["mu0_query_label"]), obs["mu0_query_mask"] > 0
    out = {}
    for group, members in (("gripper", real & (slots == ROBOT_SLOT)), ("objects", real & (slots >= 2))):
        out[f"{group}_cm"] = round(float(error[members].mean()), 3) if members.any() else None
        out[f"{group}_motion_cm"] = round(float(motion[members].mean()), 3) if members.any() else None
    return out


def policy_episode(env, policy, oracle, seed: int, gripper_points: int) -> dict:
    obs, info = env.reset(seed=seed)
    policy.reset(seed=seed)
    oracle.reset(env.unwrapped, seed)
    queries, action, step, done = [], None, 0, False
    while not done:
        if obs["mu0_age"][0] == 0:  # a fresh forecast
            queries.append({"step": step, **query_errors(obs, env, oracle, gripper_points)})
        oracle.observe(obs, action)  # after the future: the oracle's rollout starts from this observation
        action = policy.select_action(obs)
        obs, _, terminated, truncated, info = env.step(action)
        step += 1
        done = terminated or truncated
    return {"source": "policy", "seed": seed, "success": bool(info["is_success"]), "queries": queries}


def demo_episode(env, oracle, demo_seed: int, executed: np.ndarray, every: int, gripper_points: int) -> dict:
    obs, _ = env.reset(seed=demo_seed)
    oracle.reset(env.unwrapped, demo_seed)
    queries, action = [], None
    for step, next_action in enumerate(executed):
        if step % every == 0:
            queries.append({"step": step, **query_errors(obs, env, oracle, gripper_points)})
        oracle.observe(obs, action)
        obs, *_ = env.step(next_action)
        action = next_action
    return {"source": "demo", "seed": demo_seed, "success": True, "queries": queries}


def read_demos(path: str, indices: list[int]) -> list[tuple[int, int, np.ndarray]]:
    """(index, seed, executed actions) of the demos ``indices`` of a dataset."""
    from mu0sim.datasets.hdf5 import demo_names, open_dataset

    with open_dataset(path) as f:
        names = {int(n[5:]): n for n in demo_names(f)}
        missing = [i for i in indices if i not in names]
        if missing:
            raise SystemExit(f"{path} has no demos {missing}; it holds demos 0-{max(names)}")
        return [(i, int(f[f"data/{names[i]}"].attrs["seed"]), f[f"data/{names[i]}/actions"][()]) for i in indices]


STEP_BINS = ((0, 40), (40, 80), (80, 10**9))  # episode steps: the approach, the grasp and carry, what follows


def summary(rows: list[dict]) -> str:
    """Medians per source (demos, successful and failed policy episodes), over all queries and per step bin."""
    lines = ["| states | steps | episodes | queries | gripper error cm | gripper motion cm | object error cm | "
             "object motion cm |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    groups = (("demos", lambda r: r["source"] == "demo"),
              ("policy, successful episodes", lambda r: r["source"] == "policy" and r["success"]),
              ("policy, failed episodes", lambda r: r["source"] == "policy" and not r["success"]))
    for name, chosen in groups:
        episodes = [r for r in rows if chosen(r)]
        for first, last in ((0, 10**9), *STEP_BINS):
            queries = [q for r in episodes for q in r["queries"] if first <= q["step"] < last]
            if not queries and first > 0:
                continue

            def median(key: str) -> str:
                values = [q[key] for q in queries if q[key] is not None]
                return f"{np.median(values):.2f}" if values else "-"

            steps = "all" if last == 10**9 and first == 0 else f"{first}+" if last == 10**9 else f"{first}-{last - 1}"
            lines.append(f"| {name} | {steps} | {len(episodes)} | {len(queries)} | {median('gripper_cm')} | "
                         f"{median('gripper_motion_cm')} | {median('objects_cm')} | {median('objects_motion_cm')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True, help="action-expert checkpoint folder (a trace variant)")
    parser.add_argument("--mu0", default="checkpoints/mu0-sim")
    parser.add_argument("--seeds", default="2000-2019", help="'FIRST-LAST' or comma-separated")
    parser.add_argument("--demos", help="a dataset of the policy's task and robot: measure its demos too")
    parser.add_argument("--demo-range", default="30-39", help="which demos of --demos ('FIRST-LAST' or list)")
    parser.add_argument("--out", required=True, help="JSONL of per-episode rows (appended; resumable)")
    parser.add_argument("--summary-only", action="store_true", help="print the tables of --out's rows and stop")
    parser.add_argument("--query-history", choices=("as-trained", "on", "off"), default="as-trained",
                        help="give μ0 the query points' past positions (Mu0TraceObservation's query_history), "
                             "against how the policy was trained; on the demos too")
    args = parser.parse_args()
    from mu0sim.cli import parse_int_list

    try:
        seeds, demo_indices = parse_int_list(args.seeds, "--seeds"), parse_int_list(args.demo_range, "--demo-range")
    except ValueError as err:
        raise SystemExit(str(err)) from None
    if args.summary_only:
        if not Path(args.out).is_file():
            raise SystemExit(f"--summary-only: {args.out} does not exist (run without --summary-only first)")
        rows = [json.loads(line) for line in Path(args.out).read_text().splitlines() if line.strip()]
        print(summary([r for r in rows if r["policy"] == str(args.policy)]))
        return

    import torch
    from tqdm import tqdm

    from mu0sim.datasets.hdf5 import make_env_from_dataset
    from mu0sim.model import Mu0
    from mu0sim.policies.action_expert import MU0_FORECAST_VARIANTS, ActionExpertConfig, expert_env
    from mu0sim.policies.oracle_traces import ExpertTraceOracle
    from mu0sim.policies.trace_observation import GRIPPER_KEYPOINTS, Mu0TraceObservation
    from mu0sim.rollouts.evaluate import policy_id

    meta = json.loads((Path(args.policy) / "config.json").read_text())
    config = ActionExpertConfig.from_dict(meta["policy"])
    if config.variant not in MU0_FORECAST_VARIANTS:
        raise SystemExit(f"{args.policy} is a {config.variant!r} expert; this measures μ0's forecasts in a policy "
                         f"that acts on them: valid variants {', '.join(MU0_FORECAST_VARIANTS)}")
    train_config = meta["train_config"]
    gripper_points = GRIPPER_KEYPOINTS if train_config["query"] == "keypoints" else 0
    expert_options = (meta.get("data_collection") or {}).get("expert_options")
    torch.set_num_threads(1)  # as every evaluation worker: the same episodes as `mu0sim eval`
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = policy_id(args.policy)  # a checkpoint retrained in place plays its seeds again
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []
    rows = [r for r in rows if r.get("policy_id") == checkpoint]
    done = {(r["source"], r["seed"]) for r in rows}
    history = {"as-trained": train_config.get("query_history", False), "on": True, "off": False}[args.query_history]
    oracle = ExpertTraceOracle(config.task, config.robot, expert_options)
    with out.open("a") as log:
        def keep(row: dict) -> None:
            row = {"policy": str(args.policy), "policy_id": checkpoint, **row}
            log.write(json.dumps(row) + "\n")
            log.flush()
            rows.append(row)

        if args.demos:
            mu0 = Mu0.from_pretrained(args.mu0)
            env = make_env_from_dataset(args.demos, cameras=(mu0.config.camera,), depth=True, segmentation=True,
                                        image_size=(mu0.image_size, mu0.image_size), image_period=0)
            env = Mu0TraceObservation(env, mu0, query=train_config["query"], num_points=train_config["num_points"],
                                      query_every=config.execute, camera=mu0.config.camera, query_history=history)
            demos = [d for d in read_demos(args.demos, demo_indices) if ("demo", d[1]) not in done]
            for _, seed, executed in tqdm(demos, desc="forecast error: demos", unit="demo"):
                keep(demo_episode(env, oracle, seed, executed, config.execute, gripper_points))
            env.close()
        env, policy = expert_env(args.policy, args.mu0, config.task, config.robot, query_history=history)
        seeds = [s for s in seeds if ("policy", s) not in done]
        for seed in tqdm(seeds, desc="forecast error: policy", unit="ep"):
            keep(policy_episode(env, policy, oracle, seed, gripper_points))
        env.close()
    oracle.close()
    print(summary(rows))


if __name__ == "__main__":
    main()
