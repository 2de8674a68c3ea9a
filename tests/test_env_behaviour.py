"""Behaviour shared by all tasks: truncation, success, bad input, sim errors, rendering on demand, action meaning."""

import numpy as np
import pytest
from robosuite.utils import camera_utils

from mu0sim.envs import ROBOTS, make_env
from mu0sim.envs.rendering import RenderSettings
from mu0sim.envs.robosuite_env import Mu0SimEnv
from tests.conftest import SIX_ROBOTS, TASKS

ZERO = np.zeros(7, dtype=np.float32)


@pytest.fixture(scope="module")
def lift_state_only():
    env = make_env("Lift", "Panda", cameras=())
    yield env
    env.close()


def test_truncation_is_not_termination():
    env = make_env("Lift", "Panda", cameras=(), max_episode_steps=3)
    env.reset(seed=0)
    flags = [env.step(ZERO)[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    env.close()


def test_success_terminates_and_is_reported(lift_state_only):
    base = lift_state_only.unwrapped
    lift_state_only.reset(seed=0)
    state = base.get_state()
    cube_z = 1 + base._model.jnt_qposadr[base._model.body(base.object_root_bodies["red_cube"]).jntadr[0]] + 2
    state[cube_z] += 0.25  # hold the cube 25 cm above the table: Lift's success condition
    base.reset_to_state(state)
    _, reward, terminated, truncated, info = lift_state_only.step(ZERO)
    assert info["is_success"] is True and terminated is True and truncated is False and reward > 0


def test_state_only_env_renders_nothing(lift_state_only):
    obs, info = lift_state_only.reset(seed=0)
    assert lift_state_only.unwrapped._renderer is None
    assert not any(key.endswith(("_image", "_depth", "_segmentation")) for key in obs)
    assert "images_fresh" not in info


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(task="Lfit"), "unknown task 'Lfit'; valid tasks: Lift, Stack"),
        (dict(robot="Baxter"), "unknown robot 'Baxter'; valid robots: Panda, Sawyer"),
        (dict(cameras=("topview",)), "unknown camera 'topview'; valid cameras: agentview"),
        (dict(task="PickPlaceCan", cameras=("sideview",)), "unknown camera 'sideview'"),
        (dict(image_size=0), "image_size must be a positive int"),
        # gym.make turns "human" into rgb_array + HumanRendering itself, so this one goes to the class
        (dict(render_mode="human"), "unknown render_mode 'human'; valid render_modes: rgb_array"),
    ],
)
def test_bad_construction_arguments_name_the_choices(kwargs, message):
    kwargs = {"task": "Lift", "robot": "Panda", **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Mu0SimEnv(**kwargs)


@pytest.mark.parametrize("action, message", [(np.zeros(6), r"shape \(7,\)"), (np.full(7, np.nan), "NaN or inf"),
                                             (np.array([0, 0, np.inf, 0, 0, 0, 0]), "NaN or inf")])
def test_bad_actions_are_rejected(lift_state_only, action, message):
    lift_state_only.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        lift_state_only.unwrapped.step(action)


def test_physics_instability_ends_episode_with_sim_error():
    env = make_env("Lift", "Panda", cameras=())
    env.reset(seed=0)
    env.unwrapped._data.qvel[:] = 1e30  # diverges on the next physics step
    _, reward, terminated, _, info = env.step(ZERO)
    assert terminated is True and info["is_success"] is False and "instability" in info["sim_error"]
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(ZERO)
    env.reset(seed=0)
    assert "sim_error" not in env.step(ZERO)[4]
    env.close()


def test_image_period_renders_only_on_requested_steps():
    env = make_env("Lift", "Panda", cameras=("robot0_eye_in_hand",), image_size=32, image_period=3)
    obs, info = env.reset(seed=0)
    assert info["images_fresh"] is True
    moving_down = np.array([0, 0, -1, 0, 0, 0, 0], dtype=np.float32)
    fresh = []
    for _ in range(3):
        new_obs, _, _, _, info = env.step(moving_down)
        fresh.append(info["images_fresh"])
    assert fresh == [False, False, True]
    assert not np.array_equal(new_obs["robot0_eye_in_hand_image"], obs["robot0_eye_in_hand_image"])
    stale, *_ = env.step(moving_down)
    np.testing.assert_array_equal(stale["robot0_eye_in_hand_image"], new_obs["robot0_eye_in_hand_image"])
    refreshed = env.unwrapped.refresh_images()["robot0_eye_in_hand_image"]
    assert not np.array_equal(refreshed, stale["robot0_eye_in_hand_image"])
    env.close()


def test_rgb_array_render_mode():
    env = make_env("Door", "UR5e", cameras=(), render_mode="rgb_array", render_camera="frontview", render_size=64)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8 and frame.std() > 10
    env.close()


@pytest.mark.parametrize("robot", list(ROBOTS))
def test_action_means_the_same_on_every_robot(robot):
    """+x drives the gripper along world +x at a similar speed on every arm (~1 cm per step at 1.0 once moving,
    from a 5 cm target offset), with little cross-axis drift; +1 closes the gripper."""
    env = make_env("Lift", robot, cameras=())
    obs, _ = env.reset(seed=0)
    for _ in range(4):
        obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float32))
    start, open_width = obs["robot0_eef_pos"].copy(), float(obs["robot0_gripper_width"][0])
    for _ in range(8):
        obs, *_ = env.step(np.array([1, 0, 0, 0, 0, 0, 1], dtype=np.float32))
    moved = obs["robot0_eef_pos"] - start
    assert 0.05 < moved[0] < 0.12 and abs(moved[1]) < 0.01 and abs(moved[2]) < 0.03, moved
    if robot != "Jaco":  # three fingers curl past each other: pad distance is not monotonic (grasp test below)
        assert obs["robot0_gripper_width"][0] < open_width - 0.02, (open_width, obs["robot0_gripper_width"])
    env.close()


def test_jaco_plus_one_closes_on_the_cube():
    """robosuite wires Jaco's gripper the other way round; mu0sim flips it, so +1 grasps and lifts the cube."""
    env = make_env("Lift", "Jaco", cameras=())
    obs, _ = env.reset(seed=0)
    cube = obs["object"][:3].copy()

    def towards(target, grip):
        delta = np.clip((target - obs["robot0_eef_pos"]) / 0.025, -1, 1)
        return np.concatenate([delta, [0, 0, 0, grip]]).astype(np.float32)

    for target, grip, steps in [((0, 0, 0.08), -1, 30), ((0, 0, -0.005), -1, 25), ((0, 0, -0.005), 1, 20),
                                ((0, 0, 0.2), 1, 30)]:
        for _ in range(steps):
            obs, _, terminated, _, info = env.step(towards(cube + np.array(target), grip))
            if terminated:
                break
    assert info["is_success"] is True
    env.close()


def test_camera_params_match_robosuite_camera_utils():
    env = make_env("Lift", "Panda", cameras=("agentview", "robot0_eye_in_hand"), image_size=(64, 96))
    env.reset(seed=0)
    sim = env.unwrapped.robosuite_env.sim
    for camera in ("agentview", "robot0_eye_in_hand"):
        params = env.unwrapped.camera_params(camera)
        np.testing.assert_allclose(params.intrinsics, camera_utils.get_camera_intrinsic_matrix(sim, camera, 64, 96))
        np.testing.assert_allclose(params.cam_to_world, camera_utils.get_camera_extrinsic_matrix(sim, camera),
                                   atol=1e-12)
    env.close()


def _camera_frames(task, settings, cameras=("frontview", "agentview", "robot0_eye_in_hand")):
    env = make_env(task, "Panda", cameras=cameras, image_size=64, depth=True, segmentation=True,
                   render_settings=settings)
    obs, _ = env.reset(seed=0)
    for _ in range(3):  # move, so the eye-in-hand view is not the reset pose only
        obs, *_ = env.step(np.array([0.3, 0.2, -0.5, 0, 0, 0, 1], dtype=np.float32))
    env.close()
    return {key: value for key, value in obs.items() if key.startswith(cameras)}


@pytest.mark.parametrize("task", TASKS)
def test_pixel_preserving_fast_settings_change_no_pixel(task):
    """Frustum culling only drops off-screen geoms (RGB, depth and segmentation unchanged); the skybox, site markers
    and IK markers are invisible (RGB and depth unchanged; MuJoCo's segmentation pass draws sites opaque, so there
    the default of hiding them is the correct picture)."""
    default = _camera_frames(task, RenderSettings())
    unculled = _camera_frames(task, RenderSettings(frustum_culling=False))
    everything = _camera_frames(task, RenderSettings(skybox=True, sites=True, ik_target_markers=True,
                                                     frustum_culling=False))
    for key in default:
        np.testing.assert_array_equal(default[key], unculled[key], err_msg=key)
        if not key.endswith("_segmentation"):
            np.testing.assert_array_equal(default[key], everything[key], err_msg=key)


def test_interleaved_envs_in_one_process_render_their_own_scenes():
    """Each env renders through its own GL context, even when another env was created or closed since."""
    kwargs = dict(cameras=("agentview",), image_size=48, depth=True)
    alone = make_env("Lift", "Panda", **kwargs)
    reference = alone.reset(seed=0)[0]
    alone.close()
    a, b = make_env("Lift", "Panda", **kwargs), make_env("Stack", "IIWA", **kwargs)
    obs_a, _ = a.reset(seed=0)
    b.reset(seed=0)
    make_env("Door", "Panda", **kwargs).close()
    again, _ = a.reset(seed=0)
    for obs in (obs_a, again):
        np.testing.assert_array_equal(obs["agentview_image"], reference["agentview_image"])
        np.testing.assert_array_equal(obs["agentview_depth"], reference["agentview_depth"])
    a.close()
    b.close()


@pytest.mark.parametrize("robot", SIX_ROBOTS)
def test_grasping_is_reported_while_the_gripper_holds_the_object(robot):
    """info["grasping"]: never while the hand approaches, always while the scripted expert lifts the cube (each
    robot's own finger pads)."""
    from mu0sim.policies.scripted import make_expert

    env = make_env("Lift", robot, cameras=())
    obs, info = env.reset(seed=1)
    expert = make_expert("Lift")
    expert.reset(env.unwrapped, seed=1)
    grasping = [info["grasping"]]
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(expert.select_action(obs))
        grasping.append(info["grasping"])
        done = terminated or truncated
    env.close()
    assert info["is_success"] and grasping[-1]
    first = grasping.index(True)
    assert first > 10 and all(grasping[first + 5:])  # held from shortly after the close until the cube is up
