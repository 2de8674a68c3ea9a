"""Mu0TraceObservation: frozen μ0 in the loop adds traces to the observation, querying (and rendering) only every
``query_every`` steps."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from mu0sim.camera import project_points
from mu0sim.envs import make_env
from mu0sim.model import Mu0
from mu0sim.policies.trace_observation import (Mu0TraceObservation, grid_query_points, keypoint_query_points,
                                               object_pixel_moments, object_pixel_samples, query_point_labels)


@pytest.fixture(scope="module")
def mu0(tiny_mu0):
    return Mu0.from_pretrained(tiny_mu0[0])


def _env(segmentation: bool = True, depth: bool = True):
    return make_env("Lift", "Panda", cameras=("agentview",), image_size=128, depth=depth, segmentation=segmentation,
                    image_period=0)


@pytest.mark.parametrize("query", ["keypoints", "grid"])
def test_traces_are_added_and_refreshed_every_chunk(mu0, query):
    env = Mu0TraceObservation(_env(), mu0, query=query, num_points=16, grid=4, query_every=8)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    k = 16
    assert obs["mu0_traces"].shape == (k, 32, 3) and obs["mu0_query_uvz"].shape == (k, 3)
    assert obs["mu0_traces"].dtype == np.float32 and obs["mu0_age"][0] == 0
    assert np.isfinite(obs["mu0_traces"]).all() and obs["mu0_query_mask"].sum() > 5
    if query == "keypoints":  # some keypoint lies on the cube (label 2, Lift's only object), the first 5 on the robot
        assert 2 in obs["mu0_query_label"] and (obs["mu0_query_label"][:5] == 1).all()
        # ... at the gripper's own depth (not the table's, seen between the fingers): the first is the grip site
        np.testing.assert_allclose(obs["mu0_query_world"][0], obs["robot0_eef_pos"], atol=2e-3)
        assert np.ptp(obs["mu0_query_uvz"][:5, 2]) == 0
    else:  # a coarse grid mostly sees the table and the robot
        assert set(np.unique(obs["mu0_query_label"])) <= {0.0, 1.0, 2.0}
    first = obs["mu0_traces"].copy()
    for step in range(1, 9):
        obs, _, terminated, truncated, _ = env.step(np.zeros(7, np.float32))
        assert not (terminated or truncated)
        if step < 8:
            assert obs["mu0_age"][0] == step and np.array_equal(obs["mu0_traces"], first)
    assert env.queries == 2 and obs["mu0_age"][0] == 0
    env.close()


def test_wrapper_passes_gymnasium_check_env(mu0):
    env = Mu0TraceObservation(_env(), mu0, query="grid", grid=4, wrist_camera="robot0_eye_in_hand")
    check_env(env, skip_render_check=True)
    env.close()


def test_wrist_view_and_oracle_traces(mu0):
    """The wrist camera adds the backbone's feature cells of that view; oracle traces are ground-truth futures
    (here: the scripted expert moves the gripper, so some query point moves) in the same keys and units."""
    env = Mu0TraceObservation(_env(), mu0, num_points=16, wrist_camera="robot0_eye_in_hand", traces="oracle")
    obs, _ = env.reset(seed=0)
    assert obs["wrist_tokens"].shape == (64, 112) and obs["wrist_tokens"].dtype == np.float32
    assert env.observation_space.contains(obs)
    moved = np.linalg.norm(obs["mu0_traces_world"][:, -1], axis=-1)
    assert moved[:5].min() > 0.01  # metres over 32 expert steps: the gripper's points move with the gripper
    env.close()


def test_wrist_points_lie_on_the_objects_in_the_wrist_view(mu0):
    """``wrist_points`` samples the task objects' pixels of the wrist view: at reset the Panda's wrist camera looks
    down at Lift's cube, so every point is a cube point (label 2), within the cube's extent of its centre. With
    ``pixel_moments`` the moments of every cube pixel come too (and only then: they cost every query)."""
    plain = Mu0TraceObservation(_env(), mu0, num_points=16, wrist_camera="robot0_eye_in_hand", wrist_points=12)
    assert "wrist_object_moments" not in plain.reset(seed=0)[0]
    plain.close()
    env = Mu0TraceObservation(_env(), mu0, num_points=16, wrist_camera="robot0_eye_in_hand", wrist_points=12,
                              pixel_moments=True)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert obs["wrist_query_world"].shape == (12, 3) and obs["wrist_query_mask"].sum() == 12
    assert (obs["wrist_query_label"] == 2).all()
    base = env.unwrapped
    cube = base.mj_data.xpos[base.mj_model.body("cube_main").id]
    assert np.linalg.norm(obs["wrist_query_world"] - cube, axis=-1).max() < 0.04  # metres: on the cube's surface
    # every cube pixel's moments read the cube's yaw in the gripper's frame; a whole square in view weights its
    # corners, so arg(m_4) / 4 sits 45 degrees off the faces (test_object_moments_read_a_square_objects_yaw...)
    from mu0sim.policies.action_expert import quat_xyzw_to_matrix

    m = obs["wrist_object_moments"].reshape(3, 4)
    cube_x = quat_xyzw_to_matrix(obs["robot0_eef_quat"].astype(np.float64)).T @ base.mj_data.xmat[
        base.mj_model.body("cube_main").id].reshape(3, 3)[:, 0]
    off = np.degrees(np.arctan2(m[0, 3], m[0, 2]) / 4 - np.arctan2(cube_x[1], cube_x[0])) - 45.0
    assert abs((off + 45.0) % 90.0 - 45.0) < 3.0 and np.hypot(m[0, 2], m[0, 3]) > 0.2
    np.testing.assert_array_equal(m[1:], 0.0)  # Lift has one object
    before = obs["wrist_query_world"].copy()
    for _ in range(8):
        obs, *_ = env.step(np.zeros(7, np.float32))
    assert obs["wrist_query_world"] is not before  # refreshed with every query (copies, never shared)
    env.close()


def test_wrist_points_without_wrist_features_skip_only_the_cells(mu0):
    """An expert that reads the wrist view's points but not its feature cells (Stack's recipe) gets no
    ``wrist_tokens`` (a backbone pass a query saved), and everything else exactly as with them."""
    kwargs = dict(num_points=16, wrist_camera="robot0_eye_in_hand", wrist_points=12)
    full, lean = Mu0TraceObservation(_env(), mu0, **kwargs), Mu0TraceObservation(_env(), mu0, **kwargs,
                                                                                wrist_features=False)
    assert "wrist_tokens" in full.observation_space.spaces
    assert "wrist_tokens" not in lean.observation_space.spaces
    obs_full, obs_lean = full.reset(seed=3)[0], lean.reset(seed=3)[0]
    for _ in range(8):  # through the next query
        obs_full = full.step(np.full(7, 0.2, np.float32))[0]
        obs_lean = lean.step(np.full(7, 0.2, np.float32))[0]
    assert lean.queries == 2 and lean.observation_space.contains(obs_lean) and "wrist_tokens" not in obs_lean
    assert set(obs_full) - set(obs_lean) == {"wrist_tokens"}
    for key in obs_lean:
        np.testing.assert_array_equal(obs_lean[key], obs_full[key], err_msg=key)
    full.close()
    lean.close()


def _top_down_square(yaw_deg: float, size_px: int = 96):
    """Labels and depth of a 4 cm square (label 2) on a table 0.12 m under a camera looking straight down, and that
    camera: its image x is the world's x, its image y the world's -y."""
    from mu0sim.camera import CameraParams, pinhole_intrinsics

    k = pinhole_intrinsics(45.0, size_px, size_px)
    pose = np.eye(4)
    pose[:3, :3] = np.diag([1.0, -1.0, -1.0])
    pose[2, 3] = 0.12
    v, u = np.mgrid[:size_px, :size_px] + 0.5
    x, y = (u - k[0, 2]) * 0.12 / k[0, 0], -(v - k[1, 2]) * 0.12 / k[1, 1]
    c, s = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
    inside = (np.abs(c * x + s * y) < 0.02) & (np.abs(-s * x + c * y) < 0.02)
    return inside.astype(np.int64) * 2, np.full((size_px, size_px), 0.12), CameraParams("top", size_px, size_px, k,
                                                                                        pose)


def test_object_pixel_moments_follow_a_squares_yaw_more_closely_than_16_samples():
    """Every interior pixel of the square, seen in the gripper's frame (here the world's), turns arg(m_4) / 4 with
    the square, to within pixelation; 16 farthest-point samples of the same pixels read it less well (here by up to
    2 degrees; in Stack/Sawyer's wrist views, with the cube's sides and the other cube in view, by 5 degrees
    typically: the reason for ``moments_from="pixels"``)."""
    from mu0sim.camera import unproject_points
    from mu0sim.policies.action_expert import object_moments

    gripper = {"robot0_eef_pos": np.zeros(3), "robot0_eef_quat": np.array([0.0, 0.0, 0.0, 1.0])}
    dense, sampled = [], []
    for yaw in (0.0, 10.0, 25.0, 40.0):
        labels, depth, camera = _top_down_square(yaw)
        m = object_pixel_moments(labels, depth, camera, gripper).reshape(3, 4)
        np.testing.assert_array_equal(m[1:], 0.0)
        dense.append(np.degrees(np.arctan2(m[0, 3], m[0, 2])) / 4)
        px = object_pixel_samples(labels, 16, np.random.default_rng(int(yaw)))
        world = unproject_points(px, depth[px[:, 1].astype(int), px[:, 0].astype(int)], camera)
        m16 = object_moments(world, np.full(16, 2), np.ones(16))
        sampled.append(np.degrees(np.arctan2(m16[0, 3], m16[0, 2])) / 4)

    def turns(readings):
        return (np.diff(readings) + 45.0) % 90.0 - 45.0  # a square's yaw is defined mod 90 degrees

    np.testing.assert_allclose(turns(dense), [10.0, 15.0, 15.0], atol=1.0)
    assert np.abs(turns(dense) - [10, 15, 15]).max() < np.abs(turns(sampled) - [10, 15, 15]).max()
    empty = object_pixel_moments(np.zeros((8, 8), np.int64), np.ones((8, 8)), _top_down_square(0.0, 8)[2], gripper)
    np.testing.assert_array_equal(empty, 0.0)


def test_same_seed_same_observation(mu0):
    outs = []
    for _ in range(2):
        env = Mu0TraceObservation(_env(), mu0, num_points=16)
        obs, _ = env.reset(seed=3)
        outs.append(obs["mu0_traces"])
        env.close()
    np.testing.assert_array_equal(outs[0], outs[1])


def test_point_tokens_are_the_tokens_mu0_decodes_the_traces_from(mu0):
    """``point_tokens`` adds μ0's per-keypoint tokens: those its flow head is given for this query (one per query
    point, μ0's width), and only when asked for."""
    plain = Mu0TraceObservation(_env(), mu0, num_points=16)
    assert "mu0_point_tokens" not in plain.reset(seed=0)[0]
    plain.close()
    env = Mu0TraceObservation(_env(), mu0, num_points=16, point_tokens=True)
    given = []
    sample = mu0.model.head.sample
    mu0.model.head.sample = lambda cond, *args, **kwargs: (given.append(cond.clone()), sample(cond, *args,
                                                                                             **kwargs))[1]
    try:
        obs, _ = env.reset(seed=0)
    finally:
        mu0.model.head.sample = sample
    assert env.observation_space.contains(obs)
    assert obs["mu0_point_tokens"].shape == (16, mu0.config.dim)
    np.testing.assert_array_equal(obs["mu0_point_tokens"], given[0][0].numpy())
    assert np.ptp(obs["mu0_point_tokens"], axis=0).max() > 0  # one token per point, not one per image
    env.close()


def test_query_history_is_each_points_past_on_its_body(mu0):
    """``query_history`` gives μ0 each query point's last ``history`` positions as pretraining samples hold them:
    oldest first, invalid before the episode began, the point carried by its body. Checked on the grip site (the
    first query point) against the eef positions the observations reported, and on a point of the cube, which the
    test slides 1 cm sideways before every step."""
    env = Mu0TraceObservation(_env(), mu0, num_points=16, query_every=4, query_history=True)
    given = []
    predict = mu0.predict_traces
    mu0.predict_traces = lambda *args, **kwargs: (given.append(kwargs), predict(*args, **kwargs))[1]
    try:
        obs, _ = env.reset(seed=0)
        base = env.unwrapped
        joint = base.mj_model.body_jntadr[base.mj_model.body("cube_main").id]
        qpos, qvel = base.mj_model.jnt_qposadr[joint], base.mj_model.jnt_dofadr[joint]
        eef, cube = [], []
        for _ in range(8):  # queries at steps 0, 4 and 8; the last one's history is steps 0-7
            eef.append(obs["robot0_eef_pos"].astype(np.float64))
            cube.append(base.mj_data.qpos[qpos:qpos + 3].copy())
            base.mj_data.qpos[qpos + 1] += 0.01
            base.mj_data.qvel[qvel:qvel + 6] = 0.0
            mujoco.mj_forward(base.mj_model, base.mj_data)
            obs, *_ = env.step(np.array([0.3, 0, 0, 0, 0, 0, -1], np.float32))
    finally:
        mu0.predict_traces = predict
    assert [int(g["history_valid"][0, 0].sum()) for g in given] == [0, 4, 8]
    history = given[-1]["history_uvz"][0]
    params = base.camera_params("agentview")

    def uvz(world: np.ndarray) -> np.ndarray:
        uv, depth = project_points(world, params)
        return np.concatenate([uv / 128 * 2 - 1, depth[:, None]], -1)

    np.testing.assert_allclose(history[0], uvz(np.array(eef)), atol=1e-5)
    on_cube = np.flatnonzero(obs["mu0_query_label"] == 2)[0]  # the cube slid, it did not turn
    past = obs["mu0_query_world"][on_cube] + (np.array(cube) - base.mj_data.qpos[qpos:qpos + 3])
    np.testing.assert_allclose(history[on_cube], uvz(past), atol=2e-3)
    assert np.ptp(history[on_cube, :, 0]) > 0.05  # 7 cm of sliding, seen in the image
    env.close()
    with pytest.raises(ValueError, match="query_history .* needs query='keypoints'"):
        Mu0TraceObservation(_env(), mu0, query="grid", query_history=True)


def test_query_points_from_the_observation_alone():
    grid = grid_query_points(128, 4)
    assert grid.shape == (16, 2) and grid.min() == 16 and grid.max() == 112
    seg = np.zeros((128, 128, 1), np.uint8)
    seg[60:70, 40:50] = 2  # one object
    points, mask = keypoint_query_points(seg, np.array([64.0, 30.0]), 20, np.random.default_rng(0))
    assert points.shape == (20, 2) and mask.sum() == 20
    on_object = (points[5:, 0] >= 40) & (points[5:, 0] <= 50) & (points[5:, 1] >= 60) & (points[5:, 1] <= 70)
    assert on_object.all()  # after the 5 gripper points, every point lies on the object
    labels = query_point_labels(seg, points, gripper_points=5)
    assert labels.dtype == np.float32 and (labels[:5] == 1).all() and (labels[5:] == 2).all()
    assert (query_point_labels(None, points) == -1).all()  # no segmentation: unknown
    points, mask = keypoint_query_points(np.zeros_like(seg), np.array([64.0, 30.0]), 20, np.random.default_rng(0))
    assert mask.sum() == 5  # no object visible: gripper points only, the rest is padding


def test_bad_setups_are_refused(mu0):
    with pytest.raises(ValueError, match="valid modes"):
        Mu0TraceObservation(_env(), mu0, query="random")
    with pytest.raises(ValueError, match="segmentation"):
        Mu0TraceObservation(_env(segmentation=False), mu0, query="keypoints")
    with pytest.raises(ValueError, match="does not render camera"):
        Mu0TraceObservation(_env(), mu0, camera="frontview")
    with pytest.raises(ValueError, match="valid wrist cameras"):
        Mu0TraceObservation(_env(), mu0, wrist_camera="robot0_wrist")
    with pytest.raises(ValueError, match="valid sources"):
        Mu0TraceObservation(_env(), mu0, traces="future")
    with pytest.raises(ValueError, match="needs a wrist_camera"):
        Mu0TraceObservation(_env(), mu0, wrist_points=8)
    with pytest.raises(ValueError, match="pixel_moments .* needs wrist_points > 0, got 0"):
        Mu0TraceObservation(_env(), mu0, wrist_camera="robot0_eye_in_hand", pixel_moments=True)


def test_forecast_error_moves_each_label_slots_traces_by_the_mean_error_asked_for():
    """One random direction per label slot and forecast, zero now and growing along the horizon with a mean of
    error_m over it; held between forecasts, redrawn at the next, the same for the same reset seed."""
    import gymnasium as gym

    from mu0sim.policies.trace_observation import ForecastErrorObservation

    class Forecasts(gym.Env):  # a Mu0TraceObservation's trace keys, a fresh forecast every 2 steps
        observation_space = gym.spaces.Dict({})
        action_space = gym.spaces.Box(-1, 1, (1,))

        def _obs(self):
            return {"mu0_traces_world": np.zeros((4, 32, 3), np.float32), "mu0_age": np.array([self.t % 2.0]),
                    "mu0_query_label": np.array([1.0, 1.0, 2.0, 0.0], np.float32)}

        def reset(self, *, seed=None, options=None):
            self.t = 0
            return self._obs(), {}

        def step(self, action):
            self.t += 1
            return self._obs(), 0.0, False, False, {}

    env = ForecastErrorObservation(Forecasts(), error_m=0.02)
    first = env.reset(seed=5)[0]["mu0_traces_world"]
    distance = np.linalg.norm(first, axis=-1)  # (K, H)
    np.testing.assert_allclose(distance.mean(1), 0.02, rtol=1e-5)
    assert distance[0, 0] < distance[0, -1]  # grows along the horizon
    np.testing.assert_array_equal(first[0], first[1])  # the gripper's points move together
    assert not np.allclose(first[0], first[2])  # the cube's along its own direction
    held = env.step(np.zeros(1))[0]["mu0_traces_world"]
    np.testing.assert_array_equal(held, first)
    redrawn = env.step(np.zeros(1))[0]["mu0_traces_world"]
    assert not np.allclose(redrawn, first)
    np.testing.assert_array_equal(env.reset(seed=5)[0]["mu0_traces_world"], first)
    with pytest.raises(ValueError, match="must be >= 0"):
        ForecastErrorObservation(Forecasts(), error_m=-0.01)
    # persistent: the first forecast's directions kept for the whole episode, new ones after a reset
    bias = ForecastErrorObservation(Forecasts(), error_m=0.02, persistent=True)
    start = bias.reset(seed=5)[0]["mu0_traces_world"]
    np.testing.assert_array_equal(start, first)  # the same first draw as the fresh error's
    for _ in range(4):
        np.testing.assert_array_equal(bias.step(np.zeros(1))[0]["mu0_traces_world"], start)
    assert not np.allclose(bias.reset(seed=6)[0]["mu0_traces_world"], start)
