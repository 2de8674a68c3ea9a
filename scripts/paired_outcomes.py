"""Per-seed comparison of evaluated policies (the "both / only one" counts and sign tests in RESULTS.md).

    python scripts/paired_outcomes.py runs/ablations/A/eval/episodes.jsonl [runs/ablations/B/eval/episodes.jsonl ...]
    python scripts/paired_outcomes.py --all-checkpoints results/cross_embodiment/eval/episodes.jsonl

Reads the episode logs of ``mu0sim eval`` / ``mu0sim ablate`` (only the episodes of each checkpoint as it is now, as
the tables do), then prints per policy and task x robot its successes and failures split into never grasp / grasp,
then fail, and for every pair of policies on the same task x robot the seeds both succeed on, those only one does,
and the two-sided exact sign test on the latter. Policies are named by their folder's name, or by their whole path
where two folders of that name were played (one cell name in two ablations). ``--all-checkpoints`` keeps the
episodes of checkpoints since retrained in place too, each under its policy id: a study cell before and after a
recipe change, side by side.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import defaultdict
from pathlib import Path

from mu0sim.rollouts.evaluate import current_episodes, paired_outcomes, played_with


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", help="episodes.jsonl files")
    parser.add_argument("--all-checkpoints", action="store_true",
                        help="also superseded checkpoints' episodes, each policy named with its policy id")
    args = parser.parse_args()
    records = []
    for log in args.logs:
        records += [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()]
    kept = records if args.all_checkpoints else current_episodes(records)
    # a cell name two folders share (the same cell on two μ0s) is told apart by its folder
    folders = defaultdict(set)
    for r in kept:
        folders[Path(r["policy"]).name].add(str(Path(r["policy"]).parent))
    rows = defaultdict(list)
    for r in kept:
        path = Path(r["policy"])
        name = (str(path) if len(folders[path.name]) > 1 else path.name) + \
            (f"@{r.get('policy_id')}" if args.all_checkpoints else "")
        if played_with(r) != "torchscript":  # the same policy played with another μ0 runtime: its own row
            name += f" [{played_with(r)}]"
        rows[(r["task"], r["robot"], name)].append(r)
    for (task, robot, policy), episodes in sorted(rows.items()):
        failures = [r for r in episodes if not r["success"]]
        never = sum(r.get("first_grasp_step") is None for r in failures)
        print(f"{task}/{robot} {policy}: {len(episodes) - len(failures)}/{len(episodes)}; failures: never grasp "
              f"{never}, grasp, then fail {len(failures) - never}")
    for (key_a, a), (key_b, b) in itertools.combinations(sorted(rows.items()), 2):
        if key_a[:2] == key_b[:2]:
            pair = paired_outcomes(a, b)
            print(f"{key_a[2]} vs {key_b[2]} ({pair.seeds} seeds): both {pair.both}, only the first "
                  f"{pair.only_a}, only the second {pair.only_b}, sign test p = {pair.p_value:.3f}")


if __name__ == "__main__":
    main()
