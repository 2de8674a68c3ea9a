"""Action experts: features per variant, chunk targets, behaviour cloning end to end, checkpoints and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from mu0sim.cli import main
from mu0sim.policies.action_expert import (POINT_DIM, TRACE_STEPS, VARIANTS, ActionExpert, ActionExpertConfig,
                                           point_features)
from mu0sim.policies.train_bc import TrainPolicyConfig, action_chunks, train_policy
from mu0sim.rollouts.closed_loop import run_episodes, summarize


def _obs(k: int = 5, n: int | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    lead = (k,) if n is None else (n, k)
    return {"mu0_query_world": rng.normal(size=(*lead, 3)), "mu0_query_uvz": rng.normal(size=(*lead, 3)),
            "mu0_traces": rng.normal(size=(*lead, 32, 3)), "mu0_traces_world": rng.normal(size=(*lead, 32, 3))}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_feeds_the_same_network_shape(variant):
    assert point_features(_obs(), variant).shape == (5, POINT_DIM)
    assert point_features(_obs(n=4), variant).shape == (4, 5, POINT_DIM)


def test_variants_differ_only_in_the_trace_inputs():
    obs = _obs()
    trace, flat, two_d = (point_features(obs, v) for v in ("trace", "no-trace", "trace-2d"))
    np.testing.assert_array_equal(trace[:, :6], flat[:, :6])  # query point positions are shared
    assert not flat[:, 6:].any()
    steps = np.array(TRACE_STEPS) - 1
    np.testing.assert_allclose(trace[:, 6:].reshape(5, -1, 3), obs["mu0_traces_world"][:, steps])
    np.testing.assert_allclose(two_d[:, 6:].reshape(5, -1, 3)[..., :2], obs["mu0_traces"][:, steps, :2])
    assert not two_d[:, 6:].reshape(5, -1, 3)[..., 2].any()


def test_action_chunks_stop_at_episode_ends():
    actions = np.arange(10, dtype=np.float32)[:, None]
    episode = np.array([0] * 6 + [1] * 4)
    chunks, valid = action_chunks(actions, episode, 4)
    np.testing.assert_array_equal(chunks[0, :, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(chunks[4, :, 0], [4, 5, 5, 5])  # padded with the episode's last action
    np.testing.assert_array_equal(valid[4], [1, 1, 0, 0])
    np.testing.assert_array_equal(chunks[9, :, 0], [9, 9, 9, 9])


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="valid variants"):
        ActionExpertConfig(variant="oracle")
    with pytest.raises(ValueError, match="valid heads"):
        ActionExpertConfig(head="diffusion")
    with pytest.raises(ValueError, match="execute"):
        ActionExpertConfig(chunk=8, execute=9)


@pytest.mark.parametrize("head", ["regression", "flow"])
def test_behaviour_cloning_end_to_end_and_checkpoint_refusals(tiny_mu0, tmp_path, head):
    ckpt, data = tiny_mu0
    out = tmp_path / "policy"
    summary = train_policy(TrainPolicyConfig(data=[str(data[0])], mu0=str(ckpt), out=str(out), head=head, steps=20,
                                             batch_size=16, num_points=16), progress=False)
    assert summary["robot"] == "Panda" and summary["samples"] > 50 and np.isfinite(summary["val_loss"])
    policy = ActionExpert.from_pretrained(out, robot="Panda")
    outcomes = run_episodes(out, ckpt, "Lift", "Panda", seeds=[100], progress=False)
    assert len(outcomes) == 1 and outcomes[0].length > 0
    assert summarize(outcomes)["episodes"] == 1
    policy.reset()
    with pytest.raises(ValueError, match="trained for robot 'Panda'"):
        ActionExpert.from_pretrained(out, robot="Sawyer")
    with pytest.raises(ValueError, match="traces of μ0"):
        ActionExpert.from_pretrained(out, mu0_id="0123456789ab")
    with pytest.raises(FileNotFoundError, match="not an action-expert checkpoint"):
        ActionExpert.from_pretrained(tmp_path)


def test_train_policy_cli_refusals(tiny_mu0, tmp_path, capsys):
    ckpt, data = tiny_mu0
    assert main(["train-policy", "--data", *map(str, data), "--mu0", str(ckpt), "--out", str(tmp_path / "p")]) == 2
    assert "per embodiment" in capsys.readouterr().err
    assert main(["train-policy", "--data", str(data[1]), "--mu0", str(ckpt), "--out", str(tmp_path / "p"),
                 "--robot", "Panda"]) == 2
    assert "holds Sawyer demos" in capsys.readouterr().err


def test_eval_writes_rows_and_resumes_without_redoing_episodes(tiny_mu0, tmp_path, capsys):
    import json

    ckpt, data = tiny_mu0
    policy = tmp_path / "policy"
    train_policy(TrainPolicyConfig(data=[str(data[0])], mu0=str(ckpt), out=str(policy), steps=5, batch_size=8,
                                   num_points=16), progress=False)
    out = tmp_path / "results"
    args = ["eval", "--policy", str(policy), "--task", "Lift", "--robots", "Panda", "--seed-start", "50",
            "--out", str(out)]
    assert main(args + ["--episodes", "1"]) == 0
    assert main(args + ["--episodes", "2"]) == 0  # resumes: only seed 51 runs
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert [e["seed"] for e in episodes] == [50, 51]
    row = json.loads((out / "results.json").read_text())[0]
    assert row["episodes"] == 2 and row["robot"] == "Panda" and 0 <= row["wilson_low"] <= row["wilson_high"] <= 1
    assert set(row) == {"task", "robot", "policy", "episodes", "successes", "success_rate", "wilson_low",
                        "wilson_high", "mean_length", "steps_per_s"}
    capsys.readouterr()
    assert main(args[:-2] + ["--robots", "Sawyer", "--out", str(out)]) == 2
    assert "none of the policies" in capsys.readouterr().err
    assert main(["eval", "--policy", str(policy), "--task", "Lfit", "--robots", "Panda"]) == 2
    assert "valid tasks" in capsys.readouterr().err
