"""stable-baselines3 interop: a behaviour-cloned action expert as an SB3 actor-critic, and PPO fine-tuning of it.

SB3 acts once per ``step``, the expert once per action chunk, so the env is wrapped by :class:`ChunkedActions`: one
SB3 step executes the ``execute`` actions of a chunk (rewards summed, stopping at the episode's end) and returns
the next chunk-start observation, which is where :class:`Mu0TraceObservation` queries μ0. The policy's mean action
is exactly the expert's (its features extractor is the expert's context network, its actor the expert's trunk),
with a state-independent Gaussian around it (``log_std_init``) and a fresh value head. ``evaluate_policy`` and PPO
then work unchanged; :func:`save_expert` writes the fine-tuned weights back as an ordinary expert checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from mu0sim.policies.action_expert import PROPRIO_KEYS, ActionExpert, expert_inputs
from mu0sim.policies.trace_observation import optional_keys

TRACE_KEYS = ("mu0_query_uvz", "mu0_traces", "mu0_query_mask", "mu0_query_label", "mu0_query_world",
              "mu0_traces_world", "mu0_image")


class ChunkedActions(gym.Wrapper):
    """One step = one executed action chunk: ``Box(-1, 1, (execute * 7,))``, run action by action; the rewards
    add up, and the chunk stops early when the episode ends. Observations keep only what the expert reads (all
    float32: no image arrays for SB3 to transpose)."""

    def __init__(self, env: gym.Env, execute: int, keys: tuple[str, ...]) -> None:
        super().__init__(env)
        inner = env.action_space
        self.execute, self.keys = execute, keys
        self.action_space = spaces.Box(np.repeat(inner.low[None], execute, 0).ravel(),
                                       np.repeat(inner.high[None], execute, 0).ravel(), dtype=np.float32)
        missing = [k for k in keys if k not in env.observation_space.spaces]
        if missing:
            raise ValueError(f"the wrapped env lacks observation keys {missing}; wrap it in Mu0TraceObservation "
                             "(with the expert's wrist camera) first")
        self.observation_space = spaces.Dict({k: env.observation_space.spaces[k] for k in keys})

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return self._keep(obs), info

    def step(self, action):
        actions = np.asarray(action, dtype=np.float32).reshape(self.execute, -1)
        total = 0.0
        for a in actions:
            obs, reward, terminated, truncated, info = self.env.step(a)
            total += float(reward)
            if terminated or truncated:
                break
        return self._keep(obs), total, terminated, truncated, info

    def _keep(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: obs[k] for k in self.keys}


def expert_observation_keys(expert: ActionExpert) -> tuple[str, ...]:
    """The observation keys an expert reads."""
    wrist = ("wrist_tokens",) if expert.config.reads_wrist_tokens else ()
    points = optional_keys(expert.config.wrist_points, expert.config.moments_from == "pixels",
                           bool(expert.config.point_tokens))
    return (*TRACE_KEYS, *PROPRIO_KEYS, *wrist, *points)


class ExpertFeatures(BaseFeaturesExtractor):
    """The expert's context network (pooled query points and traces, proprioception, image and wrist features) as
    an SB3 features extractor; normalization is the checkpoint's."""

    def __init__(self, observation_space: spaces.Dict, checkpoint: str) -> None:
        expert = ActionExpert.from_pretrained(checkpoint)
        if expert.config.head != "regression":
            raise ValueError(f"{checkpoint}: PPO needs a regression-head expert (its output is the Gaussian's mean); "
                             f"this one has head {expert.config.head!r}")
        if expert.config.grip_clock:
            raise ValueError(f"{checkpoint}: this expert reads its own gripper clock (grip_clock), which its "
                             "select_action keeps and an SB3 observation does not carry; PPO needs an expert without it")
        features_dim = expert.net.trunk[0].in_features
        super().__init__(observation_space, features_dim)
        self.net, self.norm, self.expert_config = expert.net, expert.norm, expert.config

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        arrays = {k: v.detach().cpu().numpy() for k, v in observations.items()}
        return self.net.context(*expert_inputs(arrays, self.expert_config, self.norm))


class ExpertHeads(nn.Module):
    """SB3's ``mlp_extractor``: the actor is the expert's trunk (the first ``execute`` actions of its chunk), the
    critic a new MLP on the same features."""

    def __init__(self, net: nn.Module, execute: int, action_dim: int, features_dim: int, value_hidden: int = 256):
        super().__init__()
        self.trunk = net.trunk
        self.latent_dim_pi = execute * action_dim
        self.latent_dim_vf = value_hidden
        self.value = nn.Sequential(nn.Linear(features_dim, value_hidden), nn.Tanh(),
                                   nn.Linear(value_hidden, value_hidden), nn.Tanh())

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return self.trunk(features)[:, :self.latent_dim_pi]

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.value(features)


class ExpertActorCritic(ActorCriticPolicy):
    """An SB3 actor-critic whose deterministic action is the behaviour-cloned expert's executed chunk."""

    def __init__(self, observation_space, action_space, lr_schedule, checkpoint: str, log_std_init: float = -2.0,
                 **kwargs) -> None:
        kwargs.update(features_extractor_class=ExpertFeatures, features_extractor_kwargs={"checkpoint": checkpoint},
                      ortho_init=False, log_std_init=log_std_init)  # ortho init would overwrite the BC weights
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build_mlp_extractor(self) -> None:
        fx = self.features_extractor
        self.mlp_extractor = ExpertHeads(fx.net, fx.expert_config.execute, fx.expert_config.action_dim,
                                         self.features_dim)
        expected = self.mlp_extractor.latent_dim_pi
        if self.action_space.shape != (expected,):
            raise ValueError(f"the expert executes {fx.expert_config.execute} x {fx.expert_config.action_dim} "
                             f"actions per chunk; the env's action space is {self.action_space.shape} (wrap it in "
                             f"ChunkedActions(env, execute={fx.expert_config.execute}, ...))")

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.action_net = nn.Identity()  # the trunk's output already is the mean action
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)


def make_expert_env(checkpoint: str | Path, mu0_ckpt: str | Path, task: str, robot: str | None = None,
                    max_episode_steps: int | None = None) -> tuple[gym.Env, ActionExpert]:
    """The env an expert acts in (:func:`~mu0sim.policies.action_expert.expert_env`), wrapped for SB3: chunked
    actions, only the expert's observation keys."""
    from mu0sim.policies.action_expert import expert_env

    env, expert = expert_env(checkpoint, mu0_ckpt, task, robot, max_episode_steps)
    return ChunkedActions(env, expert.config.execute, expert_observation_keys(expert)), expert


def save_expert(policy: ExpertActorCritic, out: str | Path, extra: dict | None = None) -> None:
    """Write the (fine-tuned) expert inside ``policy`` as an ordinary action-expert checkpoint."""
    fx = policy.features_extractor
    ActionExpert(fx.net, fx.norm).save(out, extra)


__all__ = ["ChunkedActions", "ExpertActorCritic", "ExpertFeatures", "ExpertHeads", "expert_observation_keys",
           "make_expert_env", "save_expert"]
