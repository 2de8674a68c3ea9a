"""How far off may a forecast be before an expert that follows it fails? Ground-truth traces plus a known error.

    python scripts/forecast_tolerance.py \\
        --policy runs/ablations/tuning_forecast_only/policies/Stack_Panda_gt-trace-fonly_10demos \\
        --errors-cm 0,1,2,4 --seeds 2000-2029 --out runs/forecast_tolerance/stack_panda.jsonl

Plays a ``gt-trace`` expert (it acts on the scripted expert's future from each state,
:class:`~mu0sim.policies.oracle_traces.ExpertTraceOracle`) closed loop with
:class:`~mu0sim.policies.trace_observation.ForecastErrorObservation` adding each error level to its traces: per
label slot and forecast a random direction, zero now and growing along the horizon, so that the mean error over
the H = 32 steps is the level asked for, the measure of ``scripts/forecast_error.py`` (μ0's gripper forecast: 2.4 cm
on demo states, 5.2 cm on the states where 10-demo experts fail; RESULTS.md). Each level's episode of a seed starts
from the same state as the others'. ``--error-model persistent`` draws each slot's direction once per episode
instead (a bias that every forecast repeats, rather than noise drawn afresh at each).

Each episode is appended to ``--out`` as it ends (a rerun skips those already there for the same checkpoint) and
the table of successes per level is printed at the end; ``--summary-only`` prints it without playing anything.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

ERROR_MODELS = ("fresh", "persistent")


def summary(rows: list[dict]) -> str:
    """A Markdown table: successes / episodes per policy, error model and error level."""
    counts: dict[tuple[str, str, float], list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        cell = counts[(row["policy"], row.get("error_model", "fresh"), row["error_cm"])]
        cell[0] += bool(row["success"])
        cell[1] += 1
    lines = ["| policy | error model | forecast error (cm, mean over the horizon) | successes |", "|---|---|---:|---:|"]
    for (policy, model, error), (wins, total) in sorted(counts.items()):
        lines.append(f"| {Path(policy).name} | {model} | {error:g} | {wins}/{total} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True, help="action-expert checkpoint folder of a gt-trace expert")
    parser.add_argument("--mu0", default="checkpoints/mu0-sim", help="the μ0 the expert was trained with")
    parser.add_argument("--errors-cm", default="0,1,2,4", help="comma-separated forecast errors, cm")
    parser.add_argument("--seeds", default="2000-2029", help="'FIRST-LAST' or comma-separated")
    parser.add_argument("--error-model", default="fresh", choices=ERROR_MODELS,
                        help="fresh: a new random direction per forecast; persistent: one per episode")
    parser.add_argument("--out", required=True, help="JSONL of per-episode rows (appended; resumable)")
    parser.add_argument("--summary-only", action="store_true", help="print the table of --out's rows and stop")
    args = parser.parse_args()
    from mu0sim.cli import parse_int_list

    try:
        seeds = parse_int_list(args.seeds, "--seeds")
        errors = [float(e) for e in args.errors_cm.split(",")]
    except ValueError as err:
        raise SystemExit(f"bad --seeds or --errors-cm: {err}") from None
    if any(e < 0 for e in errors):
        raise SystemExit(f"--errors-cm are distances: each must be >= 0, got {args.errors_cm}")
    out = Path(args.out)
    if args.summary_only:
        if not out.is_file():
            raise SystemExit(f"--summary-only: {out} does not exist (run without --summary-only first)")
        print(summary([json.loads(line) for line in out.read_text().splitlines() if line.strip()]))
        return

    import torch
    from tqdm import tqdm

    from mu0sim.policies.action_expert import ActionExpertConfig
    from mu0sim.policies.trace_observation import ForecastErrorObservation
    from mu0sim.policies.train_bc import trace_source
    from mu0sim.rollouts.closed_loop import EpisodeRunner
    from mu0sim.rollouts.evaluate import policy_id

    config = ActionExpertConfig.from_dict(json.loads((Path(args.policy) / "config.json").read_text())["policy"])
    if trace_source(config.variant) != "oracle":
        raise SystemExit(f"{args.policy} is a {config.variant!r} expert; the known error is added to ground-truth "
                         "traces: it needs a gt-trace expert")
    torch.set_num_threads(1)  # as every evaluation worker: the same episodes as `mu0sim eval` at error 0
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = policy_id(args.policy)
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []
    rows = [r for r in rows if r.get("policy_id") == checkpoint]
    done = {(r["error_cm"], r["seed"]) for r in rows if r.get("error_model", "fresh") == args.error_model}
    todo = [(e, s) for e in errors for s in seeds if (e, s) not in done]
    runner = EpisodeRunner(args.policy, args.mu0, config.task, config.robot)  # mu0sim eval's episode loop
    env = runner.env
    with out.open("a") as log:
        for error_cm, seed in tqdm(todo, desc=f"forecast tolerance {config.task}/{config.robot}", unit="ep"):
            runner.env = ForecastErrorObservation(env, error_m=error_cm / 100.0,
                                                  persistent=args.error_model == "persistent")
            outcome = runner.run(seed)
            row = {"policy": str(args.policy), "policy_id": checkpoint, "error_model": args.error_model,
                   "error_cm": error_cm, "seed": seed,
                   "success": outcome.success, "length": outcome.length,
                   "first_grasp_step": outcome.first_grasp_step}
            log.write(json.dumps(row) + "\n")
            log.flush()  # a finished episode is on disk before the next starts
            rows.append(row)
    runner.close()
    print(summary(rows))


if __name__ == "__main__":
    main()
