"""mu0sim.envs: Gymnasium environments over robosuite tasks (``gym.make("mu0sim/Lift-v0", robot="Sawyer")``)."""

import os

# Headless by default; must be set before robosuite/mujoco pick their GL backend.
os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

from mu0sim.envs.catalog import CAMERAS, ROBOTS, TASKS, RobotSpec, TaskSpec  # noqa: E402
from mu0sim.envs.registration import env_id, make_env, register_envs  # noqa: E402

register_envs()

__all__ = ["CAMERAS", "ROBOTS", "TASKS", "RobotSpec", "TaskSpec", "env_id", "make_env", "register_envs"]
