"""Issue 7's targets, read off a finished (or partial) `mu0sim ablate` report.

    python scripts/study_targets.py [results/cross_embodiment/ablation.json] [--unseen Kinova3] [--mu0-free-from R]

Prints, from the report's rows (refresh them first with `mu0sim ablate CONFIG --report-only`):
- `trace` at 50 demos per task and robot against the task's bar (Lift 95%, the others 80%);
- the held-out robot's `trace` rate against the mean of the seen robots (within 5 points or above);
- at 10 demos, `trace` minus `no-trace` in points, per task and over every robot that has both (target +10), and
  `gt-trace` minus `no-trace` beside it: what a perfect forecast buys the same experts (no target);
- per cell with both, whether `trace`'s rate reaches `action-pretrained`'s Wilson interval (its lower end).
Cells missing from the report or not complete are named, never counted. ``--mu0-free-from`` fills the cells of the
variants that never read μ0's forecast (no-trace, gt-trace, action-pretrained) from another study's report when this
one lacks them: a study rerun on another μ0 with the same recipes, demos and seeds trains the same experts there
(bit for bit on the same CPU type; on another, experts trained alike, a few episodes per cell apart).
``--other-seeds`` pools the 10-demo gaps over reports of the same cells trained with other seeds (each cell's
successes summed over the reports that have both of its variants); every other line reads the first report only.
``--other-seeds-mu0-free-from`` does for each of those what ``--mu0-free-from`` does for the first (one report per
other seed, in the same order: a record on another μ0 reads its seed's `no-trace` cells from that seed's study).
``--probes`` reads reports of tagged variants of the same cells (e.g. ``gt-trace-fonly``, a forecast follower):
each tagged variant at 10 demos gets its own line against this report's ``no-trace`` (no target).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from mu0sim.policies.action_expert import MU0_FORECAST_VARIANTS, VARIANTS

BARS = {"Lift": 0.95}  # every other task: DEFAULT_BAR
DEFAULT_BAR = 0.80
GAP_TARGET_POINTS = 10.0
HELD_OUT_POINTS = 5.0


def complete_rows(report: dict) -> dict[tuple[str, str, str, int], dict]:
    """Complete rows keyed by (task, robot, variant, demos); a tagged row (a probe's variation, e.g. `trace-offsets`)
    keeps its tag in the variant, so it never stands in for the plain variant."""
    return {(r["task"], r["robot"], "-".join(filter(None, (r["variant"], r.get("tag")))), r["demos"]): r
            for r in report["rows"] if r.get("complete")}


def fill_mu0_free(rows: dict, other: dict) -> list[str]:
    """Adds ``other``'s complete rows of variants that do not read μ0's forecast where ``rows`` lacks them (in
    place); returns the cells added, as task/robot/variant@demos."""
    free = set(VARIANTS) - set(MU0_FORECAST_VARIANTS)
    added = []
    for key, row in complete_rows(other).items():
        if key[2] in free and key not in rows:
            rows[key] = row
            added.append(f"{key[0]}/{key[1]}/{key[2]}@{key[3]}")
    return added


def _cell(row: dict) -> str:
    return f"{row['successes']}/{row['episodes']}"


def bar_lines(rows: dict, tasks: list[str], robots_of: dict[str, list[str]]) -> list[str]:
    lines = ["trace @50 against the bar:"]
    for task in tasks:
        bar = BARS.get(task, DEFAULT_BAR)
        cells = [(robot, rows.get((task, robot, "trace", 50))) for robot in robots_of[task]]
        if not any(row for _, row in cells):
            continue  # a 10-demo-only report: nothing to say, rather than "missed on: none"
        misses = [robot for robot, row in cells if row and row["success_rate"] < bar]
        shown = ", ".join(f"{robot} {_cell(row) if row else '-'}" for robot, row in cells)
        lines.append(f"  {task} (>= {bar:.0%}): {shown}; missed on: {', '.join(misses) or 'none'}")
    return lines


def held_out_lines(rows: dict, tasks: list[str], robots_of: dict[str, list[str]], unseen: str) -> list[str]:
    lines = [f"held-out {unseen}, trace @50, against the seen robots' mean:"]
    for task in tasks:
        held = rows.get((task, unseen, "trace", 50))
        seen = [rows[(task, r, "trace", 50)]["success_rate"] for r in robots_of[task]
                if r != unseen and (task, r, "trace", 50) in rows]
        if held is None or not seen:
            if held or seen:
                lines.append(f"  {task}: incomplete")
            continue
        mean_seen = sum(seen) / len(seen)
        gap = 100 * (held["success_rate"] - mean_seen)
        verdict = "met" if gap >= -HELD_OUT_POINTS else "missed"
        lines.append(f"  {task}: {100 * held['success_rate']:.1f}% vs {100 * mean_seen:.1f}% over {len(seen)} seen "
                     f"({gap:+.1f} points, {verdict})")
    return lines


def gap_lines(seed_rows: list[dict], tasks: list[str], robots_of: dict[str, list[str]], variant: str = "trace",
              title: str = "@10 trace minus no-trace (robots with both cells):",
              target: bool = True) -> list[str]:
    """``variant`` minus ``no-trace`` at 10 demos per task and over every cell, in points. ``seed_rows`` holds one
    row dict per training seed of the same study; a cell pools the seeds that have both of its variants (successes
    summed, shown as a+b)."""
    lines = [title]
    all_gaps = []
    for task in tasks:
        shown, gaps = [], []
        for robot in robots_of[task]:
            pairs = [(rows[(task, robot, variant, 10)], rows[(task, robot, "no-trace", 10)]) for rows in seed_rows
                     if (task, robot, variant, 10) in rows and (task, robot, "no-trace", 10) in rows]
            if not pairs:
                continue
            rate = [sum(p[i]["successes"] for p in pairs) / sum(p[i]["episodes"] for p in pairs) for i in (0, 1)]
            gaps.append(100 * (rate[0] - rate[1]))
            shown.append(f"{robot} " + " vs ".join("+".join(str(p[i]["successes"]) for p in pairs) for i in (0, 1)))
        if not gaps:
            continue
        all_gaps += gaps
        lines.append(f"  {task}: {', '.join(shown)}: {sum(gaps) / len(gaps):+.1f} points")
    if all_gaps:
        mean = sum(all_gaps) / len(all_gaps)
        verdict = f" (target +{GAP_TARGET_POINTS:.0f}: {'met' if mean >= GAP_TARGET_POINTS else 'missed'})"
        lines.append(f"  all {len(all_gaps)} cells: {mean:+.1f} points{verdict if target else ''}")
    return lines


def interval_lines(rows: dict, tasks: list[str], robots_of: dict[str, list[str]]) -> list[str]:
    lines = ["trace at or above action-pretrained's Wilson interval (its lower end):"]
    for demos in (50, 10):
        met, total, misses = 0, 0, []
        for task in tasks:
            for robot in robots_of[task]:
                trace = rows.get((task, robot, "trace", demos))
                pretrained = rows.get((task, robot, "action-pretrained", demos))
                if trace is None or pretrained is None:
                    continue
                total += 1
                if trace["success_rate"] >= pretrained["wilson_low"]:
                    met += 1
                else:
                    misses.append(f"{task}/{robot} {_cell(trace)} vs {_cell(pretrained)} "
                                  f"({pretrained['wilson_low']:.2f}-{pretrained['wilson_high']:.2f})")
        if total:
            lines.append(f"  @{demos}: {met} of {total}; missed: {'; '.join(misses) or 'none'}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", default="results/cross_embodiment/ablation.json", type=Path)
    parser.add_argument("--unseen", default=None, help="held-out robot (default: the report's robots_unseen_by_mu0)")
    parser.add_argument("--mu0-free-from", type=Path, default=None,
                        help="another study's ablation.json: its no-trace, gt-trace and action-pretrained cells fill "
                             "those this report lacks")
    parser.add_argument("--other-seeds", type=Path, nargs="+", default=[], metavar="REPORT",
                        help="ablation.json of the same 10-demo cells trained with other seeds: the gaps pool them")
    parser.add_argument("--other-seeds-mu0-free-from", nargs="+", default=[], metavar="REPORT",
                        help="one ablation.json per --other-seeds report, in order: fills its cells of variants that "
                             "do not read μ0, as --mu0-free-from does for the first ('none' for a report that has "
                             "them all)")
    parser.add_argument("--probes", type=Path, nargs="+", default=[], metavar="REPORT",
                        help="ablation.json of tagged variants of the same cells: a minus-no-trace line for each")
    args = parser.parse_args(argv)
    if args.other_seeds_mu0_free_from and len(args.other_seeds_mu0_free_from) != len(args.other_seeds):
        raise SystemExit(f"--other-seeds-mu0-free-from names {len(args.other_seeds_mu0_free_from)} reports for "
                         f"{len(args.other_seeds)} --other-seeds reports: give one per other seed, in order")
    free_from = [None if name == "none" else Path(name) for name in args.other_seeds_mu0_free_from]
    for path in filter(None, (args.report, args.mu0_free_from, *args.other_seeds, *free_from, *args.probes)):
        if not path.is_file():
            raise SystemExit(f"no report at {path}: run `mu0sim ablate CONFIG --report-only` first")
    report = json.loads(args.report.read_text())
    unseen = args.unseen or (report.get("robots_unseen_by_mu0") or [None])[0]
    rows = complete_rows(report)
    if args.mu0_free_from:
        added = fill_mu0_free(rows, json.loads(args.mu0_free_from.read_text()))
        print(f"{len(added)} cells of variants that do not read μ0 from {args.mu0_free_from}")
    tasks = list(dict.fromkeys(task for task, *_ in rows))
    robots_of: dict[str, list[str]] = defaultdict(list)
    for task, robot, *_ in rows:
        if robot not in robots_of[task]:
            robots_of[task].append(robot)
    probe_rows = {key: row for path in args.probes for key, row in complete_rows(json.loads(path.read_text())).items()
                  if key[2] not in VARIANTS and key[3] == 10 and key[0] in robots_of and key[1] in robots_of[key[0]]}
    seed_rows = [rows] + [complete_rows(json.loads(path.read_text())) for path in args.other_seeds]
    for other_rows, free_path in zip(seed_rows[1:], free_from):
        if free_path is None:
            continue
        added = fill_mu0_free(other_rows, json.loads(free_path.read_text()))
        print(f"{len(added)} cells of variants that do not read μ0 from {free_path}")
    if args.other_seeds:
        print(f"10-demo gaps pooled over {len(seed_rows)} reports (training seeds): "
              + ", ".join(str(p) for p in (args.report, *args.other_seeds)))
    sections = [bar_lines(rows, tasks, robots_of), gap_lines(seed_rows, tasks, robots_of),
                gap_lines(seed_rows, tasks, robots_of, "gt-trace", target=False,
                          title="@10 gt-trace minus no-trace (ground-truth traces for μ0's; no target):"),
                *(gap_lines([{**rows, **probe_rows}], tasks, robots_of, variant, target=False,
                            title=f"@10 {variant} minus no-trace (a probe, against this report's no-trace; no target):")
                  for variant in dict.fromkeys(key[2] for key in probe_rows)),
                interval_lines(rows, tasks, robots_of)]
    if unseen:
        sections.insert(1, held_out_lines(rows, tasks, robots_of, unseen))
    # a section with no cell in this report (e.g. a 10-demo-only study has no bar to read) is left out
    print("\n".join(line for section in sections if len(section) > 1 for line in section))


if __name__ == "__main__":
    main()
