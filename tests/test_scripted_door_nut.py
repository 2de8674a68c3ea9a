"""The Door and NutAssemblySquare scripted experts solve their tasks through the shared action space."""

import numpy as np
import pytest

from mu0sim.envs import make_env
from mu0sim.policies.scripted.door import DoorExpert, axis_angle_matrix, grasp_frame, rotation_vector
from mu0sim.policies.scripted.nut_assembly_square import NutAssemblySquareExpert
from tests.conftest import SIX_ROBOTS, run_expert

NOISY = dict(noise_std=0.1, approach_jitter_m=0.02)


@pytest.mark.parametrize("robot", SIX_ROBOTS)
def test_door_expert_opens_the_door(robot):
    env = make_env("Door", robot, cameras=())
    for seed in (0, 1):
        assert run_expert(env, DoorExpert(), seed), f"{robot} seed {seed}"
    assert run_expert(env, DoorExpert(**NOISY), 2), f"{robot} noisy"
    env.close()


def test_nut_expert_puts_the_nut_on_the_peg_panda():
    env = make_env("NutAssemblySquare", "Panda", cameras=())
    for seed in (0, 1):
        assert run_expert(env, NutAssemblySquareExpert(), seed), f"seed {seed}"
    assert run_expert(env, NutAssemblySquareExpert(**NOISY), 2), "noisy"
    env.close()


@pytest.mark.parametrize("robot", ["Sawyer", "UR5e", "Kinova3", "XArm7"])
def test_nut_expert_on_other_arms(robot):
    env = make_env("NutAssemblySquare", robot, cameras=())
    assert run_expert(env, NutAssemblySquareExpert(), 0), robot
    env.close()


def test_same_seed_same_actions():
    """Noise and jitter come from the expert's own seeded generator: a demonstration replays exactly."""
    env = make_env("Door", "Panda", cameras=())
    runs = []
    for _ in range(2):
        obs, _ = env.reset(seed=3)
        expert = DoorExpert(**NOISY)
        expert.reset(env.unwrapped, seed=3)
        actions = []
        for _ in range(30):
            actions.append(expert.select_action(obs))
            obs, *_ = env.step(actions[-1])
        runs.append(np.array(actions))
    np.testing.assert_array_equal(runs[0], runs[1])
    env.close()


def test_rotation_helpers():
    rng = np.random.default_rng(0)
    for _ in range(50):
        axis = rng.normal(size=3)
        angle = rng.uniform(0, np.pi)
        rot = axis_angle_matrix(axis, angle)
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(axis_angle_matrix(rotation_vector(rot), np.linalg.norm(rotation_vector(rot))),
                                   rot, atol=1e-6)
    for index in (0, 1):
        frame = grasp_frame(np.array([0.0, -1.0, 0.0]), np.array([0.2, 0.0, 1.0]), index)
        np.testing.assert_allclose(frame.T @ frame, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(frame), 1.0)
        np.testing.assert_allclose(frame[:, 2], [0.0, -1.0, 0.0], atol=1e-12)  # approach axis
        assert frame[2, index] > 0.97  # closing axis: the requested one made orthogonal to the approach
