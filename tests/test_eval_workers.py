"""mu0sim eval over worker processes: same outcomes for any worker count, crashed workers retried, Ctrl-C keeps
every finished episode and a rerun completes the table."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from mu0sim.rollouts.evaluate import EvalConfig, evaluate
from mu0sim.rollouts.workers import CRASH_HOOK, EpisodePool, run_episodes_parallel


@pytest.fixture()
def policy(tiny_expert):
    return tiny_expert


def _outcomes(out) -> dict[int, tuple]:
    rows = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    return {r["seed"]: (r["success"], r["length"], r["sim_error"]) for r in rows}


def test_a_pool_keeps_its_workers_across_rows_and_matches_one_process(policy, tiny_mu0, tmp_path):
    """Two rows on one pool: the same processes run both (start-up paid once), seeds go to whichever worker is
    free, and every outcome equals the in-process one."""
    from mu0sim.rollouts.closed_loop import run_episodes

    other = tmp_path / "policy_copy"  # a second row: the same expert under another name
    shutil.copytree(policy, other)
    with EpisodePool(workers=2) as pool:
        first = {o.seed: o for o in pool.run(policy, tiny_mu0[0], "Lift", "Panda", [40, 41, 42])}
        pids = {slot: proc.pid for slot, (proc, _) in pool._procs.items()}
        second = {o.seed: o for o in pool.run(other, tiny_mu0[0], "Lift", "Panda", [40, 41, 42])}
        assert {slot: proc.pid for slot, (proc, _) in pool._procs.items()} == pids and len(pids) == 2
        # a consumer that stops early: the busy workers are stopped, and the pool still runs the next row
        partial = pool.run(policy, tiny_mu0[0], "Lift", "Panda", [43, 44, 45, 46])
        next(partial)
        partial.close()
        again = {o.seed: o for o in pool.run(policy, tiny_mu0[0], "Lift", "Panda", [40])}
    local = {o.seed: o for o in run_episodes(policy, tiny_mu0[0], "Lift", "Panda", [40, 41, 42], progress=False)}

    def key(outcomes):
        return {s: (o.success, o.length, o.sim_error) for s, o in outcomes.items()}

    assert key(first) == key(second) == key(local) and key(again) == {40: key(local)[40]}


def test_two_workers_give_the_same_outcomes_as_one(policy, tmp_path):
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        evaluate(EvalConfig(policies=[policy], task="Lift", robots=["Panda"], episodes=4, seed_start=60,
                            out=str(out), workers=workers), progress=False)
        runs[workers] = _outcomes(out)
    assert runs[1] == runs[2] and sorted(runs[1]) == [60, 61, 62, 63]


def test_episodes_step_with_one_torch_thread_like_every_worker(policy, tiny_mu0):
    """Thread counts change float sums, and a closed loop turns that into other episodes (measured: a Stack seed
    took 120 steps with 2 threads, 105 with 1): in-process episodes must use the workers' single thread."""
    import torch

    from mu0sim.rollouts.closed_loop import iter_episodes

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []
    outcomes = list(iter_episodes(policy, tiny_mu0[0], "Lift", "Panda", [80], progress=False,
                                  before_episode=lambda seed: seen.append(torch.get_num_threads())))
    try:
        assert seen == [1] and len(outcomes) == 1
        assert torch.get_num_threads() == 2  # restored for whatever runs next (training uses every core)
    finally:
        torch.set_num_threads(before)


def test_a_crashed_worker_is_replaced_and_its_episode_retried(policy, tiny_mu0, tmp_path, monkeypatch):
    marker = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_HOOK, f"71:{marker}")  # the worker running seed 71 dies once, before that episode
    out = tmp_path / "results"
    evaluate(EvalConfig(policies=[policy], task="Lift", robots=["Panda"], episodes=4, seed_start=70, out=str(out),
                        workers=2), progress=False)
    assert marker.exists()
    outcomes = _outcomes(out)
    assert sorted(outcomes) == [70, 71, 72, 73] and outcomes[71][2] is None  # retried, then it ran normally
    marker.unlink()
    # no retries left: the episode is recorded as a failure that says why
    got = list(run_episodes_parallel(policy, tiny_mu0[0], "Lift", "Panda", [71, 72], workers=1, max_retries=0))
    by_seed = {o.seed: o for o in got}
    assert sorted(by_seed) == [71, 72] and not by_seed[71].success and "crashed" in by_seed[71].sim_error


def test_ctrl_c_keeps_finished_episodes_and_a_rerun_completes(policy, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "mu0sim", "eval", "--policy", policy, "--task", "Lift", "--robots", "Panda",
           "--episodes", "6", "--seed-start", "80", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log = out / "episodes.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 2):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err
    kept = _outcomes(out)
    assert 2 <= len(kept) < 6
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    final = _outcomes(out)
    assert sorted(final) == list(range(80, 86)) and all(final[s] == kept[s] for s in kept)
    assert len(log.read_text().splitlines()) == 6  # nothing ran twice
    assert json.loads((out / "results.json").read_text())[0]["episodes"] == 6


def test_ray_backend_on_a_local_instance_matches_and_survives_a_crash(policy, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    marker = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_HOOK, f"91:{marker}")  # the actor running seed 91 dies once
    try:
        evaluate(EvalConfig(policies=[policy], task="Lift", robots=["Panda"], episodes=4, seed_start=90,
                            out=str(tmp_path / "ray"), workers=2, backend="ray"), progress=False)
    finally:
        ray.shutdown()
    assert marker.exists()
    monkeypatch.delenv(CRASH_HOOK)
    evaluate(EvalConfig(policies=[policy], task="Lift", robots=["Panda"], episodes=4, seed_start=90,
                        out=str(tmp_path / "local")), progress=False)
    assert _outcomes(tmp_path / "ray") == _outcomes(tmp_path / "local")
    with pytest.raises(ValueError, match="valid backends"):
        evaluate(EvalConfig(policies=[policy], task="Lift", robots=["Panda"], backend="dask"), progress=False)


def test_a_policy_retrained_in_place_is_evaluated_again(policy, tmp_path):
    """Episodes carry the checkpoint's weights fingerprint: after retraining at the same path the old episodes no
    longer count (resume would otherwise report the old policy's success for the new one)."""
    from safetensors.torch import load_file, save_file

    ckpt = tmp_path / "policy"
    shutil.copytree(policy, ckpt)
    out = tmp_path / "results"
    config = EvalConfig(policies=[str(ckpt)], task="Lift", robots=["Panda"], episodes=2, seed_start=30, out=str(out))
    evaluate(config, progress=False)
    weights = load_file(str(ckpt / "model.safetensors"))
    name = next(iter(weights))
    weights[name] = weights[name] + 1e-3  # "retrained"
    save_file(weights, str(ckpt / "model.safetensors"))
    evaluate(config, progress=False)
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(records) == 4 and len({r["policy_id"] for r in records}) == 2
    (row,) = json.loads((out / "results.json").read_text())
    assert row["episodes"] == 2  # only the current checkpoint's episodes


def test_workers_exit_when_their_parent_is_killed():
    """exit_with_parent (called first by the feature-replay and episode workers): a parent stopped by SIGKILL runs
    no clean-up, yet its worker is gone within seconds instead of working on for nobody."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    child = ("from mu0sim.io import exit_with_parent; exit_with_parent(); import time; print('ready', flush=True); "
             "time.sleep(120)")
    parent = (f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', {child!r}]); "
              "print(p.pid, flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())
    time.sleep(3)  # the child imports mu0sim and makes the call

    def alive() -> bool:
        status = Path(f"/proc/{pid}/status")
        try:
            return "State:\tZ" not in status.read_text()  # a zombie has exited (nobody reaped it yet)
        except FileNotFoundError:
            return False

    assert alive()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive()


def test_the_mu0_runtime_is_recorded_and_one_row_never_mixes_two(policy, tmp_path):
    """ONNX Runtime episodes are as reproducible as TorchScript's (same outcomes for 1 or 2 workers), each record
    names its runtime, and resuming a row with the other runtime is refused: the two may play a seed differently."""
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"ort_w{workers}"
        evaluate(EvalConfig(policies=[policy], task="Lift", robots=["Panda"], episodes=2, seed_start=50,
                            out=str(out), workers=workers, mu0_runtime="onnxruntime"), progress=False)
        runs[workers] = _outcomes(out)
        records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
        assert {r["mu0_runtime"] for r in records} == {"onnxruntime"}
    assert runs[1] == runs[2] and sorted(runs[1]) == [50, 51]
    with pytest.raises(ValueError, match="played with μ0 runtime onnxruntime, not torchscript.*--mu0-runtime "
                                         "onnxruntime"):
        evaluate(EvalConfig(policies=[policy], task="Lift", robots=["Panda"], episodes=3, seed_start=50,
                            out=str(tmp_path / "ort_w1")), progress=False)
    with pytest.raises(ValueError, match="unknown mu0_runtime 'tensorrt'; valid mu0_runtimes: eager, torchscript"):
        evaluate(EvalConfig(policies=[policy], task="Lift", robots=["Panda"], mu0_runtime="tensorrt"),
                 progress=False)
