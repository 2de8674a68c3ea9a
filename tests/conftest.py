import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402

import mu0sim.envs  # noqa: E402,F401  (registers the environments)

SIX_ROBOTS = ("Panda", "Sawyer", "IIWA", "UR5e", "Kinova3", "XArm7")
TASKS = ("Lift", "Stack", "PickPlaceCan", "NutAssemblySquare", "Door")


@pytest.fixture(autouse=True)
def _run_in_tmp_path(tmp_path, monkeypatch):
    """MuJoCo writes MUJOCO_LOG.TXT into the working directory on instability; keep it out of the repo."""
    monkeypatch.chdir(tmp_path)
