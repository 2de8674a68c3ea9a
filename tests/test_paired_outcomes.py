"""Per-seed comparison of two policies: the counts and the exact sign test behind RESULTS.md's paired claims."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from mu0sim.rollouts.evaluate import paired_outcomes, sign_test_p, wilson_interval


def episodes(successes: dict[int, bool]) -> list[dict]:
    return [{"seed": seed, "success": ok} for seed, ok in successes.items()]


def test_paired_outcomes_counts_only_the_seeds_both_played():
    a = episodes({0: True, 1: True, 2: False, 3: True, 4: False, 9: True})
    b = episodes({0: True, 1: False, 2: True, 3: True, 4: False, 7: True})
    pair = paired_outcomes(a, b)
    assert (pair.seeds, pair.both, pair.only_a, pair.only_b) == (5, 2, 1, 1)
    assert pair.p_value == 1.0


@pytest.mark.parametrize("only_a, only_b, expected", [
    (15, 3, 2 * sum(math.comb(18, i) for i in range(15, 19)) / 2 ** 18),  # 0.0075
    (3, 15, 2 * sum(math.comb(18, i) for i in range(15, 19)) / 2 ** 18),  # symmetric
    (5, 0, 2 / 32),
    (4, 4, 1.0),  # an even split: capped at 1
    (0, 0, 1.0),  # no discordant seeds: no evidence either way
])
def test_sign_test_p_is_the_two_sided_exact_binomial_tail(only_a, only_b, expected):
    assert sign_test_p(only_a, only_b) == pytest.approx(expected)


def test_script_all_checkpoints_sets_a_retrained_cell_beside_its_old_checkpoint(tmp_path):
    """``scripts/paired_outcomes.py --all-checkpoints``: one cell's episodes from two checkpoints (policy ids) become
    two rows and one paired comparison; without the flag a checkpoint that is gone keeps all its records, pooled."""
    policy = str(tmp_path / "gone" / "Stack_Panda_trace_10demos")  # no checkpoint there: nothing is "current"
    old = {0: True, 1: False, 2: True, 3: False}
    new = {0: True, 1: True, 2: True, 3: False}
    log = tmp_path / "episodes.jsonl"
    log.write_text("".join(json.dumps({"task": "Stack", "robot": "Panda", "policy": policy, "policy_id": pid,
                                       "seed": seed, "success": ok, "first_grasp_step": 5 if seed == 1 else None})
                           + "\n" for pid, outcomes in (("old", old), ("new", new)) for seed, ok in outcomes.items()))
    script = Path(__file__).resolve().parents[1] / "scripts" / "paired_outcomes.py"

    def run(*flags: str) -> list[str]:
        done = subprocess.run([sys.executable, str(script), *flags, str(log)], capture_output=True, text=True,
                              check=True)
        return done.stdout.splitlines()

    split = run("--all-checkpoints")
    assert split == [
        "Stack/Panda Stack_Panda_trace_10demos@new: 3/4; failures: never grasp 1, grasp, then fail 0",
        "Stack/Panda Stack_Panda_trace_10demos@old: 2/4; failures: never grasp 1, grasp, then fail 1",
        "Stack_Panda_trace_10demos@new vs Stack_Panda_trace_10demos@old (4 seeds): both 2, only the first 1, "
        "only the second 0, sign test p = 1.000",
    ]
    assert run() == ["Stack/Panda Stack_Panda_trace_10demos: 5/8; failures: never grasp 2, grasp, then fail 1"]


def test_script_tells_apart_one_cell_name_in_two_folders(tmp_path):
    """The same cell name in two ablations (one recipe on two μ0s) gives two rows named by path and one
    comparison; a name only one folder has keeps its short form."""
    logs = []
    for folder, outcomes in (("a", {0: True, 1: True}), ("b", {0: True, 1: False})):
        log = tmp_path / f"{folder}.jsonl"
        rows = [{"task": "Stack", "robot": "Panda", "policy": str(tmp_path / folder / "Stack_Panda_trace_10demos"),
                 "seed": seed, "success": ok, "first_grasp_step": None} for seed, ok in outcomes.items()]
        if folder == "b":
            rows.append({"task": "Stack", "robot": "Panda", "policy": str(tmp_path / "b" / "Stack_Panda_no-trace"),
                         "seed": 0, "success": False, "first_grasp_step": None})
        log.write_text("".join(json.dumps(r) + "\n" for r in rows))
        logs.append(str(log))
    script = Path(__file__).resolve().parents[1] / "scripts" / "paired_outcomes.py"
    out = subprocess.run([sys.executable, str(script), *logs], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    a, b = tmp_path / "a" / "Stack_Panda_trace_10demos", tmp_path / "b" / "Stack_Panda_trace_10demos"
    assert f"Stack/Panda {a}: 2/2; failures: never grasp 0, grasp, then fail 0" in out
    assert f"Stack/Panda {b}: 1/2; failures: never grasp 1, grasp, then fail 0" in out
    assert "Stack/Panda Stack_Panda_no-trace: 0/1; failures: never grasp 1, grasp, then fail 0" in out
    assert f"{a} vs {b} (2 seeds): both 1, only the first 1, only the second 0, sign test p = 1.000" in out


def test_wilson_interval_contains_the_rate_exactly_at_every_count():
    # 6/6 and 0/11 once gave a bound a rounding error past the rate, and a negative error bar crashed the plots
    for trials in range(1, 201):
        for successes in range(trials + 1):
            low, high = wilson_interval(successes, trials)
            assert 0.0 <= low <= successes / trials <= high <= 1.0
    assert wilson_interval(6, 6)[1] == 1.0 and wilson_interval(0, 11)[0] == 0.0
    assert wilson_interval(40, 50) == pytest.approx((0.6696, 0.8876), abs=1e-4)


def test_script_sets_one_policy_played_with_two_mu0_runtimes_side_by_side(tmp_path):
    """Two eval folders of the same policy, one with ``--mu0-runtime onnxruntime``: two rows, one comparison
    (records without a runtime are TorchScript's, as before the field existed)."""
    policy = str(tmp_path / "gone" / "Lift_Panda_trace")
    logs = []
    for runtime, outcomes in ((None, {0: True, 1: True}), ("onnxruntime", {0: True, 1: False})):
        log = tmp_path / f"{runtime}.jsonl"
        log.write_text("".join(json.dumps({"task": "Lift", "robot": "Panda", "policy": policy, "seed": seed,
                                           "success": ok, "first_grasp_step": 3,
                                           **({"mu0_runtime": runtime} if runtime else {})}) + "\n"
                               for seed, ok in outcomes.items()))
        logs.append(str(log))
    script = Path(__file__).resolve().parents[1] / "scripts" / "paired_outcomes.py"
    out = subprocess.run([sys.executable, str(script), *logs], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "Lift/Panda Lift_Panda_trace: 2/2; failures: never grasp 0, grasp, then fail 0",
        "Lift/Panda Lift_Panda_trace [onnxruntime]: 1/2; failures: never grasp 0, grasp, then fail 1",
        "Lift_Panda_trace vs Lift_Panda_trace [onnxruntime] (2 seeds): both 1, only the first 1, only the second 0, "
        "sign test p = 1.000",
    ]
