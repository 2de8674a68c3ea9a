"""`mu0sim demo`: every stage runs, the report is written, a rerun reuses finished stages, bad input is refused."""

from __future__ import annotations

import json

from mu0sim.cli import main


def test_demo_end_to_end_then_reuses_its_stages(tiny_mu0, tmp_path, capsys):
    ckpt, _ = tiny_mu0
    out = tmp_path / "demo"
    args = ["demo", "--mu0", str(ckpt), "--robots", "Panda,Sawyer", "--demos", "2", "--episodes", "1",
            "--steps", "5", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "[5/5]" in text and "never saw Sawyer" in text  # the tiny μ0 held Sawyer out
    summary = json.loads((out / "summary.json").read_text())
    assert {r["robot"] for r in summary["rows"]} == {"Panda", "Sawyer"}
    assert all(r["episodes"] == 1 for r in summary["rows"])
    report = (out / "report.md").read_text()
    assert "Sawyer (unseen by μ0)" in report and "results.png" in report
    assert len(list((out / "eval" / "videos").glob("*.mp4"))) == 2
    assert main(args) == 0  # rerun: nothing is collected, trained or evaluated again
    text = capsys.readouterr().out
    assert text.count("reusing") == 2 and "0 new demos" in text
    assert len((out / "eval" / "episodes.jsonl").read_text().splitlines()) == 2


def test_demo_refuses_bad_input(tiny_mu0, tmp_path, capsys):
    ckpt, _ = tiny_mu0
    assert main(["demo", "--mu0", str(ckpt), "--robots", "Panda,Franka", "--out", str(tmp_path)]) == 2
    assert "unknown robot 'Franka'; valid robots" in capsys.readouterr().err
    assert main(["demo", "--mu0", str(ckpt), "--tasks", "Lift,Wipe", "--out", str(tmp_path)]) == 2
    assert "unknown task 'Wipe'" in capsys.readouterr().err
    assert main(["demo", "--mu0", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
