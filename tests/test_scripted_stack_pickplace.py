"""The Stack and PickPlaceCan scripted experts solve their tasks through the shared action space on every robot."""

import numpy as np
import pytest

from mu0sim.envs import make_env
from mu0sim.policies.scripted.pick_place_can import PickPlaceCanExpert
from mu0sim.policies.scripted.stack import StackExpert, closing_axis_in_eef, level_action
from tests.conftest import SIX_ROBOTS, run_expert


@pytest.mark.parametrize("robot", SIX_ROBOTS)
@pytest.mark.parametrize("task, expert_cls", [("Stack", StackExpert), ("PickPlaceCan", PickPlaceCanExpert)])
def test_expert_solves_the_task(task, expert_cls, robot):
    env = make_env(task, robot, cameras=())
    for seed in (0, 1):
        assert run_expert(env, expert_cls(), seed), f"{task} {robot} seed {seed}"
    assert run_expert(env, expert_cls(noise_std=0.1, approach_jitter_m=0.02), 2), f"{task} {robot} noisy"
    env.close()


def test_settle_pauses_open_and_still_at_the_cube_before_closing():
    env = make_env("Stack", "Panda", cameras=())
    grips = {}
    for settle in (0, 6):
        obs, _ = env.reset(seed=4)
        expert = StackExpert(settle_steps=settle)
        expert.reset(env.unwrapped, seed=4)
        phases, actions = [], []
        while expert._phase != "lift" and len(actions) < 200:
            actions.append(expert.select_action(obs))
            phases.append(expert._phase)
            obs, *_ = env.step(actions[-1])
        grips[settle] = [a[6] for a in actions]
        if settle:
            paused = [a for a, p in zip(actions, phases) if p == "settle"]
            assert len(paused) >= settle - 1 and all(a[6] < 0 for a in paused)  # open
            assert max(np.abs(a[:3]).max() for a in paused) < 0.1  # at the cube: barely moving
    first_close = {k: g.index(max(g)) for k, g in grips.items()}
    assert first_close[6] == first_close[0] + 6  # the same approach, closing 6 steps later
    assert run_expert(env, StackExpert(settle_steps=6), 5)
    env.close()


def test_same_seed_same_actions():
    env = make_env("Stack", "Panda", cameras=())
    runs = []
    for _ in range(2):
        obs, _ = env.reset(seed=3)
        expert = StackExpert(noise_std=0.1, approach_jitter_m=0.02)
        expert.reset(env.unwrapped, seed=3)
        actions = []
        for _ in range(20):
            actions.append(expert.select_action(obs))
            obs, *_ = env.step(actions[-1])
        runs.append(np.array(actions))
    env.close()
    np.testing.assert_array_equal(runs[0], runs[1])


def test_closing_axis_is_horizontal_in_the_grip_frame():
    env = make_env("Stack", "XArm7", cameras=())
    env.reset(seed=0)
    axis = closing_axis_in_eef(env.unwrapped)
    env.close()
    assert axis is not None and abs(axis[2]) < 0.1 and abs(axis[1]) > 0.9  # XArm7's fingers close along grip y


def test_level_action_turns_a_tilted_gripper_down():
    # gripper pointing straight down: nothing to do
    down = np.array([1.0, 0.0, 0.0, 0.0])  # xyzw: half turn about x, so grip z = world -z
    np.testing.assert_allclose(level_action(down), 0.0)
    # tilted 0.4 rad about world x: approach axis (0, sin, -cos); the correction turns it back (negative ax)
    tilt = 0.4
    rot_x = np.array([np.sin(tilt / 2), 0.0, 0.0, np.cos(tilt / 2)])  # xyzw
    x, y, z, w = rot_x
    x2, y2, z2, w2 = down
    tilted = np.array([w * x2 + x * w2 + y * z2 - z * y2, w * y2 - x * z2 + y * w2 + z * x2,
                       w * z2 + x * y2 - y * x2 + z * w2, w * w2 - x * x2 - y * y2 - z * z2])
    action = level_action(tilted, gain=1.0, deadband_rad=0.0)
    assert action[0] < 0 and abs(action[1]) < 1e-9
    np.testing.assert_allclose(action[0] * 0.5, -tilt, atol=1e-6)
