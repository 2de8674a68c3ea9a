"""Gymnasium registration: one id per task, ``mu0sim/<Task>-v0``; the robot and cameras are make() arguments."""

from __future__ import annotations

import gymnasium as gym

from mu0sim.envs.catalog import TASKS, check_choice

ENTRY_POINT = "mu0sim.envs.robosuite_env:Mu0SimEnv"


def env_id(task: str) -> str:
    check_choice("task", task, TASKS)
    return f"mu0sim/{task}-v0"


def register_envs() -> None:
    """Register every task (idempotent). Truncation at the episode limit comes from Gymnasium's TimeLimit."""
    for name, spec in TASKS.items():
        if env_id(name) not in gym.registry:
            gym.register(id=env_id(name), entry_point=ENTRY_POINT, kwargs={"task": name},
                         max_episode_steps=spec.max_episode_steps)


def make_env(task: str, robot: str = "Panda", **kwargs) -> gym.Env:
    """``gym.make`` for a mu0sim task, with the task name checked first (clear error for a typo)."""
    return gym.make(env_id(task), robot=robot, **kwargs)
