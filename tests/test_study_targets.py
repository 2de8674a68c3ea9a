"""``scripts/study_targets.py``: issue 7's target lines read off an ablation report, incomplete cells left out."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mu0sim.rollouts.evaluate import wilson_interval

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "study_targets.py"


def row(task: str, robot: str, variant: str, demos: int, successes: int, complete: bool = True) -> dict:
    low, high = wilson_interval(successes, 50)
    return {"task": task, "robot": robot, "variant": variant, "demos": demos, "episodes": 50,
            "successes": successes, "success_rate": successes / 50, "wilson_low": low, "wilson_high": high,
            "complete": complete}


@pytest.fixture()
def report(tmp_path: Path) -> Path:
    rows = [
        row("Lift", "Panda", "trace", 50, 47),  # 94%: under Lift's 95% bar
        row("Lift", "Kinova3", "trace", 50, 50),
        row("Stack", "Panda", "trace", 50, 40),
        row("Stack", "Kinova3", "trace", 50, 30),  # held out, 20 points under Panda
        row("Stack", "Panda", "trace", 10, 30),
        row("Stack", "Panda", "no-trace", 10, 20),  # +20 points
        row("Stack", "Kinova3", "trace", 10, 25),
        row("Stack", "Kinova3", "no-trace", 10, 25, complete=False),  # unfinished: not counted
        row("Stack", "Panda", "action-pretrained", 50, 49),  # interval 0.90-1.00: trace's 0.80 misses it
        row("Stack", "Panda", "action-pretrained", 10, 30),
        row("Stack", "Panda", "gt-trace", 10, 35),  # +30 points over no-trace: shown, no target
        {**row("Stack", "Panda", "no-trace", 10, 50), "tag": "probe"},  # a probe's variation: not the plain variant
    ]
    path = tmp_path / "ablation.json"
    path.write_text(json.dumps({"name": "t", "robots_unseen_by_mu0": ["Kinova3"], "rows": rows}))
    return path


def test_targets_are_read_off_complete_rows_only(report: Path):
    out = subprocess.run([sys.executable, str(SCRIPT), str(report)], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert "  Lift (>= 95%): Panda 47/50, Kinova3 50/50; missed on: Panda" in out
    assert "  Stack (>= 80%): Panda 40/50, Kinova3 30/50; missed on: Kinova3" in out
    assert "  Stack: 60.0% vs 80.0% over 1 seen (-20.0 points, missed)" in out
    assert "  Lift: 100.0% vs 94.0% over 1 seen (+6.0 points, met)" in out
    assert "  Stack: Panda 30 vs 20: +20.0 points" in out  # Kinova3's no-trace cell is incomplete
    assert "  all 1 cells: +20.0 points (target +10: met)" in out
    gt = out.index("@10 gt-trace minus no-trace (ground-truth traces for μ0's; no target):")
    assert out[gt + 1:gt + 3] == ["  Stack: Panda 35 vs 20: +30.0 points", "  all 1 cells: +30.0 points"]
    assert out[-2].startswith("  @50: 0 of 1; missed: Stack/Panda 40/50 vs 49/50 (0.90-1.00)")
    assert out[-1] == "  @10: 1 of 1; missed: none"


def test_a_missing_report_says_how_to_make_one(tmp_path: Path):
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "none.json")], capture_output=True, text=True)
    assert done.returncode != 0
    assert "--report-only" in done.stderr


def test_mu0_free_cells_come_from_another_study_only_where_missing(report: Path, tmp_path: Path):
    """A study rerun on a new μ0 borrows the variants that never read μ0's forecast, never a trace cell, and never
    over a cell of its own."""
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"name": "old", "rows": [
        row("Stack", "Kinova3", "no-trace", 10, 15),  # missing (incomplete) in the report: filled
        row("Stack", "Panda", "no-trace", 10, 45),  # the report has its own: kept
        row("Stack", "Panda", "trace", 10, 5),  # reads μ0: never borrowed
        row("Lift", "Kinova3", "trace", 10, 50),
    ]}))
    out = subprocess.run([sys.executable, str(SCRIPT), str(report), "--mu0-free-from", str(other)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == f"1 cells of variants that do not read μ0 from {other}"
    assert "  Stack: Panda 30 vs 20, Kinova3 25 vs 15: +20.0 points" in out
    assert not any(line.startswith("  Lift: Kinova3") for line in out)


def test_other_seeds_pool_the_10_demo_gaps_only(report: Path, tmp_path: Path):
    """Each cell sums its successes over the seeds that have both variants; the other targets read the first report."""
    seed1 = tmp_path / "seed1.json"
    seed1.write_text(json.dumps({"name": "seed1", "rows": [
        row("Stack", "Panda", "trace", 10, 20),
        row("Stack", "Panda", "no-trace", 10, 30),  # -20 points on this seed: 0 over both
        row("Stack", "Kinova3", "trace", 10, 40),  # no no-trace twin on either seed: not counted
        row("Stack", "Panda", "trace", 50, 0),  # not a gap cell: the bar still reads the first report
    ]}))
    out = subprocess.run([sys.executable, str(SCRIPT), str(report), "--other-seeds", str(seed1)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == f"10-demo gaps pooled over 2 reports (training seeds): {report}, {seed1}"
    assert "  Stack: Panda 30+20 vs 20+30: +0.0 points" in out
    assert "  all 1 cells: +0.0 points (target +10: missed)" in out
    assert "  Stack (>= 80%): Panda 40/50, Kinova3 30/50; missed on: Kinova3" in out


def test_each_other_seed_borrows_its_own_seeds_mu0_free_cells(report: Path, tmp_path: Path):
    """A record on a new μ0 holds only `trace` cells; each other seed's `no-trace` comes from that seed's study, and
    one mu0-free report per other seed is required."""
    seed1 = tmp_path / "seed1.json"
    seed1.write_text(json.dumps({"name": "seed1", "rows": [row("Stack", "Panda", "trace", 10, 40)]}))
    study1 = tmp_path / "study1.json"
    study1.write_text(json.dumps({"name": "study1", "rows": [
        row("Stack", "Panda", "no-trace", 10, 10), row("Stack", "Panda", "trace", 10, 0)]}))  # its trace: ignored
    out = subprocess.run([sys.executable, str(SCRIPT), str(report), "--other-seeds", str(seed1),
                          "--other-seeds-mu0-free-from", str(study1)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert f"1 cells of variants that do not read μ0 from {study1}" in out
    assert "  Stack: Panda 30+40 vs 20+10: +40.0 points" in out
    done = subprocess.run([sys.executable, str(SCRIPT), str(report), "--other-seeds", str(seed1),
                           "--other-seeds-mu0-free-from", str(study1), str(study1)], capture_output=True, text=True)
    assert done.returncode != 0
    assert "names 2 reports for 1 --other-seeds reports" in done.stderr
    # a third seed trained with both variants itself fills nothing ('none'), the second still borrows
    seed2 = tmp_path / "seed2.json"
    seed2.write_text(json.dumps({"name": "seed2", "rows": [
        row("Stack", "Panda", "trace", 10, 25), row("Stack", "Panda", "no-trace", 10, 20)]}))
    out = subprocess.run([sys.executable, str(SCRIPT), str(report), "--other-seeds", str(seed1), str(seed2),
                          "--other-seeds-mu0-free-from", str(study1), "none"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert "  Stack: Panda 30+40+25 vs 20+10+20: +30.0 points" in out


def test_a_10_demo_only_report_prints_only_its_gaps(tmp_path: Path):
    """No @50 cell: no bar, held-out or interval lines (an empty "missed on: none" would read as met)."""
    path = tmp_path / "ablation.json"
    path.write_text(json.dumps({"name": "t", "robots_unseen_by_mu0": ["Kinova3"], "rows": [
        row("Stack", "Panda", "trace", 10, 20), row("Stack", "Panda", "no-trace", 10, 25)]}))
    out = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["@10 trace minus no-trace (robots with both cells):", "  Stack: Panda 20 vs 25: -10.0 points",
                   "  all 1 cells: -10.0 points (target +10: missed)"]


def test_probes_get_a_line_per_tagged_variant_against_this_reports_no_trace(report: Path, tmp_path: Path):
    """A probe report's tagged 10-demo rows are read against the first report's `no-trace`; its plain variants and
    cells of robots the study lacks are not counted, and the target lines do not change."""
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"name": "probe", "rows": [
        {**row("Stack", "Panda", "gt-trace", 10, 45), "tag": "fonly"},  # +50 points over no-trace's 20
        {**row("Stack", "UR5e", "gt-trace", 10, 50), "tag": "fonly"},  # no such robot in the study: left out
        row("Stack", "Panda", "trace", 10, 0),  # a plain variant: never stands in for the study's
    ]}))
    out = subprocess.run([sys.executable, str(SCRIPT), str(report), "--probes", str(probe)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    line = out.index("@10 gt-trace-fonly minus no-trace (a probe, against this report's no-trace; no target):")
    assert out[line + 1:line + 3] == ["  Stack: Panda 45 vs 20: +50.0 points", "  all 1 cells: +50.0 points"]
    assert "  all 1 cells: +20.0 points (target +10: met)" in out
