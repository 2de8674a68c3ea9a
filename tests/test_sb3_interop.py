"""stable-baselines3 interop: the action expert as an SB3 policy, evaluate_policy, and PPO fine-tuning (resumable)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mu0sim.cli import main
from mu0sim.policies.action_expert import ActionExpert


@pytest.fixture()
def expert(tiny_expert, tiny_mu0):
    from pathlib import Path

    return Path(tiny_expert), tiny_mu0[0]


def test_sb3_policy_acts_like_the_expert_and_evaluate_policy_runs(expert):
    from stable_baselines3 import PPO
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    from mu0sim.policies.sb3 import ExpertActorCritic, make_expert_env

    policy_dir, ckpt = expert
    env, bc = make_expert_env(policy_dir, ckpt, "Lift", max_episode_steps=24)
    assert env.action_space.shape == (bc.config.execute * 7,)
    model = PPO(ExpertActorCritic, Monitor(env), n_steps=8, batch_size=8, seed=0,
                policy_kwargs={"checkpoint": str(policy_dir)})
    obs, _ = env.reset(seed=7)
    action, _ = model.predict(obs, deterministic=True)
    # the SB3 policy's deterministic action is the expert's executed chunk (the inner obs differ only in keys)
    expected = bc.predict_action_chunk({**obs})[:bc.config.execute].ravel()
    np.testing.assert_allclose(action, expected, atol=1e-5)
    mean_reward, _ = evaluate_policy(model, Monitor(env), n_eval_episodes=1)
    assert np.isfinite(mean_reward)
    env.close()


def test_finetune_rl_writes_an_expert_checkpoint_and_resumes(expert, tmp_path, capsys):
    policy_dir, ckpt = expert
    out = tmp_path / "ppo"
    args = ["finetune-rl", "--policy", str(policy_dir), "--out", str(out), "--n_steps=8", "--batch_size=8",
            "--n_epochs=1"]
    assert main(args + ["--timesteps", "8"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["timesteps"] == 8 and (out / ".resume" / "ppo.zip").exists()
    assert main(args + ["--timesteps", "16"]) == 0  # continues from the saved 8 steps
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["timesteps"] == 16
    tuned = ActionExpert.from_pretrained(out, robot="Panda")
    base = ActionExpert.from_pretrained(policy_dir)
    changed = any(not torch.equal(a, b) for a, b in zip(tuned.net.state_dict().values(),
                                                         base.net.state_dict().values()))
    assert changed  # PPO moved the expert's weights
    meta = json.loads((out / "config.json").read_text())
    assert meta["finetune"]["policy"] == str(policy_dir) and "train_config" in meta
    assert main(["finetune-rl", "--policy", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
