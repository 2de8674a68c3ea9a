"""``mu0sim finetune-rl``: PPO (stable-baselines3) from a behaviour-cloned action expert's weights.

The expert becomes an :class:`~mu0sim.policies.sb3.ExpertActorCritic` (mean action = the BC expert's chunk, small
fixed-start exploration noise, fresh value head) acting in chunk steps with frozen μ0 in the loop. The reward is
the task's sparse success reward, discounted per chunk, so PPO also rewards finishing sooner. Progress is saved
after every rollout (``OUT/.resume/ppo.zip``) and a rerun continues from there; the result is written as an
ordinary expert checkpoint that ``mu0sim eval`` runs.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class FinetuneConfig:
    """``timesteps`` and ``n_steps`` count chunk steps (each = ``execute`` env steps); ``seed`` seeds PPO and the
    training episodes (keep it away from evaluation seeds)."""

    policy: str
    out: str
    task: str = "Lift"
    mu0: str | None = None  # default: the μ0 the expert was trained with
    timesteps: int = 2048
    n_steps: int = 256
    batch_size: int = 64
    n_epochs: int = 4
    learning_rate: float = 3e-5
    clip_range: float = 0.1
    gamma: float = 0.99
    log_std_init: float = -2.0
    seed: int = 5000


def finetune_rl(config: FinetuneConfig, progress: bool = True) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.monitor import Monitor

    from mu0sim.envs.catalog import TASKS, check_choice
    from mu0sim.policies.sb3 import ExpertActorCritic, make_expert_env, save_expert

    check_choice("task", config.task, TASKS)
    if not (Path(config.policy) / "config.json").exists():
        raise FileNotFoundError(f"policy checkpoint {config.policy} not found (expected {config.policy}/config.json)")
    if config.timesteps < config.n_steps:
        raise ValueError(f"timesteps ({config.timesteps}) must be >= n_steps ({config.n_steps}): one PPO rollout")
    meta = json.loads((Path(config.policy) / "config.json").read_text())
    mu0 = config.mu0 or meta["train_config"]["mu0"]
    env, _ = make_expert_env(config.policy, mu0, config.task)
    env = Monitor(env)  # PPO seeds the env's first reset with config.seed
    resume = Path(config.out) / ".resume" / "ppo.zip"
    if resume.exists():
        model = PPO.load(resume, env=env)
        model.set_random_seed(config.seed + model.num_timesteps)
    else:
        model = PPO(ExpertActorCritic, env, n_steps=config.n_steps, batch_size=config.batch_size,
                    n_epochs=config.n_epochs, learning_rate=config.learning_rate, clip_range=config.clip_range,
                    gamma=config.gamma, seed=config.seed, verbose=0,
                    policy_kwargs={"checkpoint": config.policy, "log_std_init": config.log_std_init})
    history: list[dict] = []

    class SaveEachRollout(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            rewards = list(env.get_episode_rewards())  # sparse success reward: > 0 means the episode succeeded
            last = rewards[-20:]
            history.append({"timesteps": self.model.num_timesteps, "episodes": len(rewards),
                            "success_rate_last_20": sum(r > 0 for r in last) / len(last) if last else None})
            resume.parent.mkdir(parents=True, exist_ok=True)
            tmp = resume.with_name("ppo.tmp.zip")
            self.model.save(tmp)
            os.replace(tmp, resume)

    start = time.perf_counter()
    remaining = config.timesteps - model.num_timesteps
    if remaining > 0:
        model.learn(remaining, callback=SaveEachRollout(), progress_bar=progress, reset_num_timesteps=False)
    wall = time.perf_counter() - start
    summary = {"out": config.out, "timesteps": int(model.num_timesteps), "wall_s": round(wall, 1),
               "history": history}
    meta = {k: v for k, v in meta.items() if k != "policy"}
    save_expert(model.policy, config.out, {**meta, "finetune": {**asdict(config), **summary}})
    return {k: v for k, v in summary.items() if k != "history"}


__all__ = ["FinetuneConfig", "finetune_rl"]
