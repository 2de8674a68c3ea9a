import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import mu0sim.envs  # noqa: E402,F401  (registers the environments)

SIX_ROBOTS = ("Panda", "Sawyer", "IIWA", "UR5e", "Kinova3", "XArm7")
TASKS = ("Lift", "Stack", "PickPlaceCan", "NutAssemblySquare", "Door")


@pytest.fixture(autouse=True)
def _run_in_tmp_path(tmp_path, monkeypatch):
    """MuJoCo writes MUJOCO_LOG.TXT into the working directory on instability; keep it out of the repo."""
    monkeypatch.chdir(tmp_path)


def run_expert(env, expert, seed):
    """One episode of a scripted expert; checks every action is a float32 (7,) in [-1, 1]; returns success."""
    obs, info = env.reset(seed=seed)
    expert.reset(env.unwrapped, seed=seed)
    terminated = truncated = False
    while not (terminated or truncated):
        action = expert.select_action(obs)
        assert action.shape == (7,) and action.dtype == np.float32 and np.all(np.abs(action) <= 1)
        obs, _, terminated, truncated, info = env.step(action)
    return info["is_success"]
