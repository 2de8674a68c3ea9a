"""``scripts/forecast_tolerance.py``: its table and its refusals (the closed loop is ForecastErrorObservation's,
tested in test_trace_observation.py, on mu0sim eval's episode loop)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "forecast_tolerance.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_summary_counts_successes_per_policy_and_error(tmp_path: Path):
    log = tmp_path / "tolerance.jsonl"
    rows = [{"policy": "p/Stack_Panda_gt-trace-fonly_10demos", "policy_id": "x", "error_cm": e, "seed": s,
             "success": ok, "length": 100} for e, s, ok in [(0.0, 1, True), (0.0, 2, True), (2.0, 1, True),
                                                           (2.0, 2, False)]]
    rows.append({**rows[-1], "error_model": "persistent"})  # rows before the option had none: "fresh"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = _run("--policy", "unused", "--out", str(log), "--summary-only")
    assert done.returncode == 0, done.stderr
    assert "| Stack_Panda_gt-trace-fonly_10demos | fresh | 0 | 2/2 |" in done.stdout
    assert "| Stack_Panda_gt-trace-fonly_10demos | fresh | 2 | 1/2 |" in done.stdout
    assert "| Stack_Panda_gt-trace-fonly_10demos | persistent | 2 | 0/1 |" in done.stdout


def test_bad_input_is_named(tmp_path: Path):
    negative = _run("--policy", "p", "--out", str(tmp_path / "o.jsonl"), "--errors-cm", "0,-1")
    assert negative.returncode != 0 and "-1" in negative.stderr
    model = _run("--policy", "p", "--out", str(tmp_path / "o.jsonl"), "--error-model", "drift")
    assert model.returncode != 0 and "'drift'" in model.stderr and "persistent" in model.stderr
    missing = _run("--policy", "p", "--out", str(tmp_path / "none.jsonl"), "--summary-only")
    assert missing.returncode != 0 and "does not exist" in missing.stderr
