"""Scripted experts solve their task through the shared action space on every robot."""

import numpy as np
import pytest

from mu0sim.envs import make_env
from mu0sim.policies.scripted import make_expert
from mu0sim.policies.scripted.common import wrap_angle
from tests.conftest import SIX_ROBOTS, run_expert


@pytest.mark.parametrize("robot", SIX_ROBOTS)
def test_lift_expert_lifts_the_cube(robot):
    env = make_env("Lift", robot, cameras=())
    for seed in (0, 1):
        assert run_expert(env, make_expert("Lift"), seed), f"{robot} seed {seed}"
    assert run_expert(env, make_expert("Lift", noise_std=0.1, approach_jitter_m=0.02), 2), f"{robot} noisy"
    env.close()


def test_unknown_task_has_a_clear_error():
    with pytest.raises(ValueError, match="unknown task 'Lfit'"):
        make_expert("Lfit")


def test_unknown_expert_option_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown Lift expert option 'settle_steps'; valid Lift expert options: "
                                         "hover_m, close_steps"):
        make_expert("Lift", settle_steps=6)


def test_angle_folding():
    angles = np.linspace(-7, 7, 101)
    folded = np.array([wrap_angle(a, np.pi / 2) for a in angles])
    assert np.all((folded >= -np.pi / 4) & (folded < np.pi / 4))
    np.testing.assert_allclose(np.cos(4 * folded), np.cos(4 * angles), atol=1e-9)
