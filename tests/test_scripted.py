"""Scripted experts solve their task through the shared action space on every robot."""

import numpy as np
import pytest

from mu0sim.envs import make_env
from mu0sim.policies.scripted import LiftExpert, _wrap_quarter_turn
from tests.conftest import SIX_ROBOTS


@pytest.mark.parametrize("robot", SIX_ROBOTS)
def test_lift_expert_lifts_the_cube(robot):
    env = make_env("Lift", robot, cameras=())
    for seed in (0, 1):
        obs, info = env.reset(seed=seed)
        expert = LiftExpert()
        terminated = truncated = False
        while not (terminated or truncated):
            obs, _, terminated, truncated, info = env.step(expert.select_action(obs))
        assert info["is_success"] is True, f"{robot} seed {seed}"
    env.close()


def test_quarter_turn_folding():
    angles = np.linspace(-7, 7, 101)
    folded = np.array([_wrap_quarter_turn(a) for a in angles])
    assert np.all((folded >= -np.pi / 4) & (folded < np.pi / 4))
    np.testing.assert_allclose(np.cos(4 * folded), np.cos(4 * angles), atol=1e-9)
