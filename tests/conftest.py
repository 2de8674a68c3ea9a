import os

os.environ.setdefault("MUJOCO_GL", "egl")
if "PYTEST_XDIST_WORKER" in os.environ:
    # `make test` runs two pytest workers on this 2-core machine: one torch thread each. Two processes whose
    # OpenMP threads spin-wait for a core slow each other down by more than 10x (BENCHMARKS.md).
    os.environ.setdefault("OMP_NUM_THREADS", "1")

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


@pytest.fixture(scope="session")
def tiny_mu0(tmp_path_factory):
    """A μ0 checkpoint (with both learned baselines) trained for 4 steps on 3 + 3 Lift demos (Panda; Sawyer held
    out): real files through the real commands, quality irrelevant. Returns (checkpoint folder, datasets)."""
    from mu0sim.cli import main
    from mu0sim.rollouts.collect import CollectConfig, collect
    from mu0sim.traces import ExtractConfig, extract_dataset

    root = tmp_path_factory.mktemp("mu0")
    data = []
    for robot in ("Panda", "Sawyer"):
        path = root / f"Lift_{robot}.hdf5"
        collect(CollectConfig(task="Lift", robot=robot, episodes=3, out=path), progress=False)
        extract_dataset(ExtractConfig(dataset=path, mode="sim", camera="agentview"), progress=False)
        data.append(path)
    ckpt = root / "ckpt"
    code = main(["pretrain", "--data", *map(str, data), "--out", str(ckpt), "--holdout-robot", "Sawyer",
                 "--steps", "4", "--batch-size", "4", "--model.dim=32", "--model.encoder_layers=1",
                 "--model.head_layers=1", "--val_every=2", "--eval_fraction=0.34", "--val_fraction=0.0"])
    assert code == 0
    return ckpt, data


@pytest.fixture(scope="session")
def tiny_expert(tiny_mu0, tmp_path_factory):
    """A trace action expert (Panda, regression head, wrist view) trained for 10 steps on the tiny μ0's Panda demos:
    real checkpoint files, quality irrelevant. Returns its folder (str)."""
    from mu0sim.policies.train_bc import TrainPolicyConfig, train_policy

    ckpt, data = tiny_mu0
    out = tmp_path_factory.mktemp("expert") / "expert"
    train_policy(TrainPolicyConfig(data=[str(data[0])], mu0=str(ckpt), out=str(out), steps=10, batch_size=16,
                                   num_points=16), progress=False)
    return str(out)
