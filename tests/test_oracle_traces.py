"""The gt-trace oracle: on a demo it predicts the demo's own future; behind a learned policy it takes over as the
demonstrator would (phase from the state, fresh controllers) instead of trusting memory of motions it never made."""

from __future__ import annotations

import numpy as np
import pytest

from mu0sim.envs import make_env
from mu0sim.policies.oracle_traces import ExpertTraceOracle, RecordedFutureOracle
from mu0sim.policies.scripted import make_expert
from mu0sim.policies.scripted.common import OPEN, move_action
from mu0sim.traces.keypoints import gripper_keypoints

# the object each task's expert picks up first (an ``object_layout`` key of the env)
PICKED = {"Lift": "cube_pos", "PickPlaceCan": "Can_pos", "Stack": "cubeA_pos"}


def _demo(task: str, seed: int):
    """A scripted demo on Panda: the actions and the ``[time, qpos, qvel]`` state before each."""
    env = make_env(task, "Panda", cameras=(), image_period=0)
    expert = make_expert(task)
    obs, _ = env.reset(seed=seed)
    expert.reset(env.unwrapped, seed=seed)
    actions, states = [], []
    for _ in range(400):
        states.append(env.unwrapped.get_state())
        actions.append(expert.select_action(obs))
        obs, _, terminated, truncated, info = env.step(actions[-1])
        if terminated or truncated:
            break
    assert info["is_success"], f"the {task} expert failed its demo (seed {seed})"
    env.close()
    return np.array(actions), np.array(states)


@pytest.mark.parametrize("task", sorted(PICKED))
def test_oracle_reproduces_a_demo_future(task):
    """Rolled forward from a demo's state, the expert oracle predicts the demo's own recorded future: mid-episode,
    and past the demo's end (the demo stops on success and its future holds the last pose)."""
    seed = 3
    actions, states = _demo(task, seed)
    env = make_env(task, "Panda", cameras=(), image_period=0)
    base = env.unwrapped
    expert, recorded = ExpertTraceOracle(task, "Panda"), RecordedFutureOracle()
    recorded.load(states)
    obs, _ = env.reset(seed=seed)
    for oracle in (expert, recorded):
        oracle.reset(base, seed)
    keypoints = gripper_keypoints(base)
    checked, moving, previous = 0, 0, None
    checkpoints = {len(actions) // 4, len(actions) // 3, len(actions) // 2, 2 * len(actions) // 3, len(actions) - 6}
    for t, action in enumerate(actions):
        for oracle in (expert, recorded):
            oracle.observe(obs, previous)
        obs, *_ = env.step(action)
        previous = action
        if t + 1 in checkpoints:  # spread over the phases; the last: 16 steps reach past the demo's end
            futures = [oracle.future(base, keypoints, 16) for oracle in (expert, recorded)]
            moving += np.abs(futures[1][:, -1] - futures[1][:, 0]).max() > 0.01  # (not while closing)
            np.testing.assert_allclose(futures[0], futures[1], atol=1e-3)  # < 1 mm: solver warm start differs
            checked += 1
    assert checked == len(checkpoints) and moving >= 3
    expert.close()
    env.close()


@pytest.mark.parametrize("task", ["PickPlaceCan", "Stack"])
def test_oracle_takes_over_from_a_policy_that_stops_short(task):
    """A policy that hovers 2.5 cm beside the expert's hover point: the tracking expert's servo integrates that
    error it never commanded. Its copy must still show the demonstrator's future from here — move over the
    object and descend — not settle centimetres off (outside its gate to descend) for the whole horizon."""
    env = make_env(task, "Panda", cameras=(), image_period=0)
    base = env.unwrapped
    oracle = ExpertTraceOracle(task, "Panda")
    obs, _ = env.reset(seed=0)
    oracle.reset(base, 0)
    hover_m = oracle._expert.hover_m
    previous = None
    for _ in range(60):
        oracle.observe(obs, previous)
        picked = obs["object"][base.object_layout[PICKED[task]]]
        previous = move_action(obs["robot0_eef_pos"], picked + [0.025, 0.0, hover_m], OPEN).astype(np.float32)
        obs, *_ = env.step(previous)
    oracle.observe(obs, previous)
    picked = obs["object"][base.object_layout[PICKED[task]]]
    assert abs(obs["robot0_eef_pos"][2] - (picked[2] + hover_m)) < 0.01  # the policy got to hover height
    future = oracle.future(base, gripper_keypoints(base), 32)
    assert future[:, -1, 2].max() < picked[2] + hover_m - 0.03  # the gripper descends towards the object
    oracle.close()
    env.close()


def test_oracle_lowers_a_cube_a_policy_holds_over_its_target():
    """A policy (here the Stack expert with another hover height) carries the red cube over the green one and holds
    it there, while the oracle's tracking expert is still in hover (as in closed loop, where a policy's approach
    never passes the expert's own gates). The oracle must read the carrying phase from the state and show the
    cube going down, not restart at lift (oracle version 2: "up, then down", and the policy never lowered)."""
    env = make_env("Stack", "Panda", cameras=(), image_period=0)
    base = env.unwrapped
    oracle, policy = ExpertTraceOracle("Stack", "Panda"), make_expert("Stack", hover_m=0.12)
    obs, _ = env.reset(seed=0)
    oracle.reset(base, 0)
    policy.reset(base, seed=0)
    layout = base.object_layout
    rs = base.robosuite_env
    stack_dz = float(np.max(rs.cubeA.size) + np.max(rs.cubeB.size))  # red centre above green when stacked
    previous, held = None, 0
    for _ in range(250):
        oracle.observe(obs, previous)
        red, green = obs["object"][layout["cubeA_pos"]], obs["object"][layout["cubeB_pos"]]
        # over the green cube, 1-1.5 cm above resting on it: below the expert's carrying height
        over = (np.linalg.norm((red - green)[:2]) < 0.008
                and green[2] + stack_dz + 0.01 < red[2] < green[2] + stack_dz + 0.015)
        held += bool(over)
        previous = policy.select_action(obs)
        if held:  # hold still over the green cube, fingers closed
            previous = move_action(obs["robot0_eef_pos"], obs["robot0_eef_pos"], 1.0).astype(np.float32)
        obs, *_ = env.step(previous)
        if held >= 8:
            break
    assert held >= 8, "the policy never carried the red cube over the green one"
    oracle.observe(obs, previous)
    oracle._expert._to("hover")  # stale tracking, as behind a learned policy: the state must tell the phase
    keypoints = gripper_keypoints(base)
    future = oracle.future(base, keypoints, 32)
    start = keypoints.world_positions(base.mj_data)
    assert (future[:, :8, 2] - start[:, None, 2]).max() < 0.002  # straight down (version 2 lifted 1.2 cm first)
    assert (start[:, 2] - future[:, -1, 2]).min() > 0.001  # and put down
    oracle.close()
    env.close()


@pytest.mark.parametrize("tracked", ["lift", "release"])
def test_oracle_lowers_a_can_a_policy_holds_near_its_placing_point(tracked):
    """A policy holds the can 2 cm beside its placing point, 5 cm under the carrying height, as a learned policy
    does midway through lowering it. Whether the tracking expert thinks it is still lifting or has timed out
    into release, the oracle must show the can going straight down: oracle version 3 told it to lift first (it
    wanted the can within 1 cm of a placing point that the tracker's "stalls" behind the policy had also moved),
    or to open the fingers first; policies bobbed up and down until the time limit."""
    env = make_env("PickPlaceCan", "Panda", cameras=(), image_period=0)
    base = env.unwrapped
    oracle, policy = ExpertTraceOracle("PickPlaceCan", "Panda"), make_expert("PickPlaceCan")
    obs, _ = env.reset(seed=0)
    oracle.reset(base, 0)
    policy.reset(base, seed=0)
    previous = None
    for _ in range(300):
        oracle.observe(obs, previous)
        previous = policy.select_action(obs)
        if policy._phase == "lower":
            break
        obs, *_ = env.step(previous)
    assert policy._phase == "lower", "the expert never carried the can over its placing point"
    hold = np.append(policy._place_point() + [0.02, 0.0], policy.carry_z_m - 0.05)
    for _ in range(40):  # to the held pose, fingers closed
        previous = move_action(obs["robot0_eef_pos"], hold, 1.0).astype(np.float32)
        obs, *_ = env.step(previous)
        oracle.observe(obs, previous)
    assert np.linalg.norm(obs["robot0_eef_pos"] - hold) < 0.01
    oracle._expert._to(tracked)  # stale, as behind a learned policy (its "stalls" also moved its placing point)
    keypoints = gripper_keypoints(base)
    can = np.array([base.robosuite_env.obj_body_id["Can"]])
    keypoints.extend(can, np.zeros((1, 3)), "object", "query")  # the can's centre
    future = oracle.future(base, keypoints, 32)
    start = keypoints.world_positions(base.mj_data)
    assert (future[:, :, 2] - start[:, None, 2]).max() < 0.002  # never up (version 3 lifted first)
    assert (start[:, 2] - future[:, -1, 2]).min() > 0.02  # and down towards the bin
    assert start[-1, 2] - future[-1, 3, 2] > 0.02  # at once (version 3, tracking release, opened for 6 steps)
    oracle.close()
    env.close()
