"""Frozen μ0 in the loop: a Gymnasium wrapper that adds μ0's predicted traces to the observation.

μ0 is queried at reset and then every ``query_every`` steps (an action chunk's execution); only those steps render
the camera (the wrapped env should use ``image_period=0`` so that nothing else renders). Between queries the last
prediction stays in the observation and ``mu0_age`` counts the steps since it was made.

With ``traces="oracle"`` the trace keys hold ground-truth futures instead (the task's scripted expert rolled
forward from the current state, :mod:`mu0sim.policies.oracle_traces`): the ``gt-trace`` variant. Everything else
(query points, image feature, cadence) stays the same, so the two differ only in where the traces come from.

Added observation keys (K query points, H future steps):
    mu0_query_uvz   (K, 3)    query point at the query step: u, v in [-1, 1], depth in metres
    mu0_traces      (K, H, 3) predicted future minus the query point, divided by μ0's per-axis scale
    mu0_query_mask  (K,)      1 for real query points, 0 for padding
    mu0_query_label (K,)      what each query point lies on: the segmentation label (0 background, 1 robot, 2.. the
                              task's objects in order; the gripper keypoints are 1), -1 where the env renders no
                              segmentation (grid queries without it)
    mu0_query_world (K, 3)    the query point in the world frame (metres), through the camera's calibration
    mu0_traces_world (K, H, 3) predicted future minus the query point, world frame, metres
    mu0_image       (1280,)   the frozen backbone's pooled RGB feature (a compact image summary)
    mu0_age         (1,)      steps since the prediction
    wrist_tokens    (T, 112)  with ``wrist_camera`` (unless ``wrist_features=False``: an expert that reads only the
                              wrist points): the frozen backbone's stride-16 feature map of that camera's RGB
                              (T = 64 cells at 128 px), for the fine alignment the third-person view is too coarse for
    wrist_query_world (W, 3)  with ``wrist_points=W``: farthest-point samples of the task objects' pixels in the wrist
                              view, in the world frame (metres, through that view's depth and calibration). They
                              carry no trace: they say precisely where the objects are when the arm hides them from
                              the third-person camera, which is exactly when a grasp needs it (Stack)
    wrist_query_label (W,)    their segmentation labels (2.. the task's objects)
    wrist_query_mask  (W,)    1 for real points, 0 for padding (nothing of the objects in view)
    mu0_point_tokens (K, dim) with ``point_tokens``: μ0's per-keypoint tokens at the query step (its trace expert's
                              encoder output, after attending to the image and the instruction; dim = μ0's width):
                              what its head decodes the traces from. The paper's action experts read these, pooled,
                              rather than the decoded traces. Always μ0's, also with ``traces="oracle"``
    wrist_object_moments (12,) with ``pixel_moments``: :func:`~mu0sim.policies.action_expert.object_moments` of every
                              interior pixel of each task object in the wrist view (3 objects x (m_2, m_4) as real,
                              imaginary), in the gripper's frame: the objects' yaw without the sampling noise of
                              W points (an expert reads it with ``moments_from="pixels"``)

With ``query_history`` μ0 also gets each query point's past ``mu0.config.history`` positions, as in pretraining
(TraceExtract's sim-mode tracks: the point moves with the MuJoCo body it lies on, here through the body poses of
the last steps); without it μ0 forecasts from the frame alone, which it learned on only its history-dropout share
of samples (shipped μ0: 25%).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from mu0sim.camera import project_points, unproject_points
from mu0sim.envs.catalog import check_choice
from mu0sim.policies.action_expert import LABEL_SLOTS, OBJECT_SLOTS, in_gripper_frame, label_slots, object_moments
from mu0sim.traces.keypoints import interior_mask

QUERY_MODES = ("grid", "keypoints")
WRIST_POINT_KEYS = ("wrist_query_world", "wrist_query_label", "wrist_query_mask")  # with wrist_points
PIXEL_MOMENTS_KEY = "wrist_object_moments"  # with pixel_moments
POINT_TOKENS_KEY = "mu0_point_tokens"  # with point_tokens


def optional_keys(wrist_points: int = 0, pixel_moments: bool = False, point_tokens: bool = False) -> tuple[str, ...]:
    """The observation keys the wrapper adds for these settings (beyond the always-present ones and
    ``wrist_tokens``, which comes with a wrist camera and ``wrist_features``)."""
    return (*(WRIST_POINT_KEYS if wrist_points else ()), *((PIXEL_MOMENTS_KEY,) if pixel_moments else ()),
            *((POINT_TOKENS_KEY,) if point_tokens else ()))


TRACE_SOURCES = ("mu0", "oracle")


def grid_query_points(size_px: int, per_side: int) -> np.ndarray:
    """(per_side**2, 2) pixel centres of a uniform grid over a square image (μ0's own policy queries a grid)."""
    step = size_px / per_side
    centres = (np.arange(per_side) + 0.5) * step
    u, v = np.meshgrid(centres, centres)
    return np.stack([u.ravel(), v.ravel()], -1).astype(np.float32)


GRIPPER_KEYPOINTS = 5  # keypoint_query_points puts the gripper (its projection and a ring of 4) first
ROBOT_LABEL = 1


def query_point_labels(segmentation: np.ndarray | None, points_px: np.ndarray, gripper_points: int = 0) -> np.ndarray:
    """(K,) float32 segmentation label under each query point (pixel centres ``points_px``, (K, 2) u, v); the first
    ``gripper_points`` are the robot's whatever lies under them (the gripper's projection may fall on the object
    it holds). All -1 without a segmentation."""
    if segmentation is None:
        return np.full(len(points_px), -1.0, np.float32)
    labels = segmentation[..., 0] if segmentation.ndim == 3 else segmentation
    h, w = labels.shape
    cols = np.clip(points_px[:, 0].astype(int), 0, w - 1)
    rows = np.clip(points_px[:, 1].astype(int), 0, h - 1)
    out = labels[rows, cols].astype(np.float32)
    out[:gripper_points] = ROBOT_LABEL
    return out


def keypoint_query_points(segmentation: np.ndarray, eef_uv_px: np.ndarray, count: int,
                          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Query points as TraceExtract picks them, from the observation alone: farthest-point samples over the task
    objects' pixels (segmentation labels >= 2) and the gripper (its projected position and a ring around it).
    Returns ((count, 2) pixels, (count,) mask); padding repeats the first point with mask 0."""
    labels = segmentation[..., 0] if segmentation.ndim == 3 else segmentation
    ring = eef_uv_px + 3.0 * np.stack([np.cos(a := np.linspace(0, 2 * np.pi, 4, endpoint=False)), np.sin(a)], -1)
    gripper = np.concatenate([eef_uv_px[None], ring]).astype(np.float32)
    chosen = object_pixel_samples(labels, count - len(gripper), rng)
    points = np.concatenate([gripper, chosen])[:count]
    mask = np.zeros(count, np.float32)
    mask[:len(points)] = 1.0
    out = np.repeat(points[:1], count, 0)
    out[:len(points)] = points
    return out, mask


def object_pixel_samples(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``count`` farthest-point samples (pixel centres, (n, 2) uv_px) over the task objects' pixels
    (segmentation labels >= 2); fewer where fewer such pixels are in view."""
    rows, cols = np.nonzero(labels >= 2)
    pixels = np.stack([cols + 0.5, rows + 0.5], -1).astype(np.float32)
    return _farthest_points(pixels, count, rng) if len(pixels) else np.zeros((0, 2), np.float32)


def object_pixel_moments(labels: np.ndarray, depth_m: np.ndarray, params, obs: dict[str, np.ndarray]) -> np.ndarray:
    """(OBJECT_SLOTS * 4,) :func:`~mu0sim.policies.action_expert.object_moments` of every interior pixel of each
    task object (labels >= 2; a pixel whose four neighbours carry its label), unprojected through ``depth_m`` and
    the camera ``params`` and seen in the gripper's frame (the eef pose in ``obs``).

    Why every pixel: the 4-fold moment of 16 farthest-point samples depends on where the samples fall (corners or
    edge midpoints turn its phase by up to 45 degrees); on three Stack/Sawyer demos the samples' yaw was 3.8
    degrees off the pixels' (median) while the gripper hovered and turned. Edge pixels are left out: their depth may
    be the background's, which moves them outwards along their rays."""
    inner = np.zeros(labels.shape, bool)
    for label in np.unique(labels[labels >= 2]):
        inner |= interior_mask(labels == label)
    rows, cols = np.nonzero(inner)
    if not len(rows):
        return np.zeros(OBJECT_SLOTS * 4, np.float32)
    pixels = np.stack([cols + 0.5, rows + 0.5], -1).astype(np.float32)
    world = unproject_points(pixels, depth_m[rows, cols], params)
    moments = object_moments(in_gripper_frame(obs, world), labels[rows, cols], np.ones(len(rows)))
    return moments.reshape(-1).astype(np.float32)


def _farthest_points(points: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    if len(points) <= count:
        return points
    chosen = [int(rng.integers(len(points)))]
    dist = np.linalg.norm(points - points[chosen[0]], axis=-1)
    for _ in range(count - 1):
        chosen.append(int(np.argmax(dist)))
        dist = np.minimum(dist, np.linalg.norm(points - points[chosen[-1]], axis=-1))
    return points[chosen]


class Mu0TraceObservation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Runs a frozen :class:`~mu0sim.model.Mu0` every ``query_every`` steps and adds its traces (see the module
    docstring). The wrapped env must render ``camera`` with depth (and segmentation for ``query="keypoints"``)."""

    def __init__(self, env: gym.Env, mu0, query: str = "keypoints", num_points: int = 32, grid: int = 8,
                 query_every: int = 8, camera: str = "agentview", seed: int = 0, traces: str = "mu0",
                 oracle=None, wrist_camera: str | None = None, wrist_points: int = 0,
                 pixel_moments: bool = False, point_tokens: bool = False, query_history: bool = False,
                 wrist_features: bool = True) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, mu0=mu0, query=query, num_points=num_points, grid=grid,
                                                 query_every=query_every, camera=camera, seed=seed, traces=traces,
                                                 oracle=oracle, wrist_camera=wrist_camera, wrist_points=wrist_points,
                                                 pixel_moments=pixel_moments, point_tokens=point_tokens,
                                                 query_history=query_history, wrist_features=wrist_features)
        gym.Wrapper.__init__(self, env)
        if query not in QUERY_MODES:
            raise ValueError(f"unknown query mode {query!r}; valid modes: {', '.join(QUERY_MODES)}")
        if traces not in TRACE_SOURCES:
            raise ValueError(f"unknown trace source {traces!r}; valid sources: {', '.join(TRACE_SOURCES)}")
        base = env.unwrapped
        if camera not in getattr(base, "cameras", ()):
            raise ValueError(f"the env does not render camera {camera!r} (it renders {getattr(base, 'cameras', ())})")
        if not base.depth or (query == "keypoints" and not base.segmentation):
            raise ValueError("the env must render depth" + (" and segmentation" if query == "keypoints" else "")
                             + f" for μ0 queries with query={query!r}")
        if base.image_hw != (mu0.image_size, mu0.image_size):
            raise ValueError(f"μ0 expects {mu0.image_size} px images, the env renders {base.image_hw}")
        if wrist_camera is not None:
            check_choice("wrist camera", wrist_camera, base.available_cameras())
        if wrist_points < 0 or (wrist_points and wrist_camera is None):
            raise ValueError(f"wrist_points must be >= 0 and needs a wrist_camera; got wrist_points={wrist_points} "
                             f"with wrist_camera={wrist_camera!r}")
        self.mu0, self.query, self.camera, self.query_every = mu0, query, camera, query_every
        if pixel_moments and not wrist_points:
            raise ValueError("pixel_moments describes the wrist view's objects like wrist_points do: it needs "
                             f"wrist_points > 0, got {wrist_points}")
        self.wrist_camera, self.wrist_points, self.pixel_moments = wrist_camera, wrist_points, pixel_moments
        # the wrist view's feature cells cost a backbone pass a query: only for the experts that read them
        self.wrist_features = wrist_camera is not None and wrist_features
        self.point_tokens = point_tokens
        if query_history and query != "keypoints":
            raise ValueError("query_history tracks each query point on the body it lies on, which needs "
                             f"query='keypoints' (their segmentation); got query={query!r}")
        self.query_history = query_history
        # (xpos, xmat) of every body at each of the last mu0.config.history steps, oldest first
        self._poses: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=mu0.config.history)
        self.num_points = grid * grid if query == "grid" else num_points
        self.grid = grid
        self.oracle = None
        if traces == "oracle":  # default oracle: the scripted expert rolled forward; replays pass their recording
            from mu0sim.policies.oracle_traces import ExpertTraceOracle

            self.oracle = oracle or ExpertTraceOracle(base.task_spec.name, base.robot_spec.name)
        self._rng = np.random.default_rng(seed)
        horizon = mu0.config.horizon
        k = self.num_points
        self.observation_space = spaces.Dict({
            **env.observation_space.spaces,
            "mu0_query_uvz": spaces.Box(-np.inf, np.inf, (k, 3), np.float32),
            "mu0_traces": spaces.Box(-np.inf, np.inf, (k, horizon, 3), np.float32),
            "mu0_query_mask": spaces.Box(0.0, 1.0, (k,), np.float32),
            "mu0_query_label": spaces.Box(-1.0, 255.0, (k,), np.float32),
            "mu0_query_world": spaces.Box(-np.inf, np.inf, (k, 3), np.float32),
            "mu0_traces_world": spaces.Box(-np.inf, np.inf, (k, horizon, 3), np.float32),
            "mu0_image": spaces.Box(-np.inf, np.inf, (1280,), np.float32),
            "mu0_age": spaces.Box(0.0, np.inf, (1,), np.float32),
        })
        if self.wrist_features:
            cells = (base.image_hw[0] // 16) * (base.image_hw[1] // 16)
            self.observation_space.spaces["wrist_tokens"] = spaces.Box(-np.inf, np.inf, (cells, 112), np.float32)
        if wrist_points:
            self.observation_space.spaces.update({
                "wrist_query_world": spaces.Box(-np.inf, np.inf, (wrist_points, 3), np.float32),
                "wrist_query_label": spaces.Box(-1.0, 255.0, (wrist_points,), np.float32),
                "wrist_query_mask": spaces.Box(0.0, 1.0, (wrist_points,), np.float32)})
        if pixel_moments:
            self.observation_space.spaces[PIXEL_MOMENTS_KEY] = spaces.Box(-1.0, 1.0, (OBJECT_SLOTS * 4,), np.float32)
        if point_tokens:
            self.observation_space.spaces[POINT_TOKENS_KEY] = spaces.Box(-np.inf, np.inf, (k, mu0.config.dim),
                                                                         np.float32)
        self._last: dict[str, np.ndarray] = {}
        self._age = 0
        self.queries = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        obs, info = self.env.reset(seed=seed, options=options)
        if self.oracle is not None:
            self.oracle.reset(self.env.unwrapped, seed)
        self._poses.clear()
        out = self._query(obs)
        self._observe(obs, None)
        return out, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._age += 1
        if self._age >= self.query_every and not (terminated or truncated):
            out = self._query(obs)
        else:
            out = self._with_last(obs)
        self._observe(obs, action)
        return out, reward, terminated, truncated, info

    def close(self) -> None:
        if self.oracle is not None:
            self.oracle.close()
        super().close()

    def _observe(self, obs: dict[str, np.ndarray], action: np.ndarray | None) -> None:
        if self.query_history:  # after the query: this step is history from the next one on
            data = self.env.unwrapped.mj_data
            self._poses.append((data.xpos.copy(), data.xmat.copy()))
        if self.oracle is not None:  # after the query: the oracle's rollout starts from this observation
            self.oracle.observe(obs, action)

    def _query(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        base = self.env.unwrapped
        images = base.refresh_images()  # the query step's own frame (the env itself renders only at reset)
        rgb, depth = images[f"{self.camera}_image"], images[f"{self.camera}_depth"][..., 0]
        size = self.mu0.image_size
        segmentation = images.get(f"{self.camera}_segmentation")
        params = base.camera_params(self.camera)
        gripper_points = 0
        if self.query == "grid":
            points, mask = grid_query_points(size, self.grid), np.ones(self.num_points, np.float32)
        else:
            eef_uv, eef_depth = project_points(obs["robot0_eef_pos"][None].astype(np.float64), params)
            points, mask = keypoint_query_points(segmentation, eef_uv[0], self.num_points, self._rng)
            gripper_points = GRIPPER_KEYPOINTS
        # the gripper's points lie at the gripper's depth (proprioception), not at the surface seen through the gap
        # between its fingers: μ0 learned gripper keypoints at their own depth, and the oracle tracks the gripper
        rows = np.clip(points[:, 1].astype(int), 0, size - 1)
        cols = np.clip(points[:, 0].astype(int), 0, size - 1)
        point_depth = depth[rows, cols].astype(np.float32)
        if gripper_points:
            point_depth[:gripper_points] = eef_depth[0]
        labels = query_point_labels(segmentation, points, gripper_points=gripper_points)
        current = np.concatenate([points / size * 2 - 1, point_depth[:, None]], -1).astype(np.float32)
        query_world = unproject_points(points, current[:, 2], params).astype(np.float32)
        history = self._history_uvz(points, query_world, params, gripper_points) if self.query_history else {}
        pred = self.mu0.predict_traces(rgb[None], depth[None], points[None], base.instruction,
                                       query_mask=mask[None] > 0, seed=int(self._rng.integers(2**31)),
                                       query_depth_m=point_depth[None], **history)
        scale = self.mu0.model.normalizer.scale
        future_world = pred.world(params)[0, 0]
        if self.oracle is not None:
            from mu0sim.policies.oracle_traces import attach_query_points

            keypoints = attach_query_points(base, params, points, query_world.astype(np.float64), gripper_points,
                                            geom_ids=base.last_geom_ids(self.camera))
            future_world = self.oracle.future(base, keypoints, self.mu0.config.horizon)
            uv_px, depth_m = project_points(future_world, params)
            pred_uvz = np.concatenate([uv_px / size * 2 - 1, depth_m[..., None]], -1)
        else:
            pred_uvz = pred.uvz[0, 0]
        traces_world = future_world - query_world[:, None]
        self._last = {"mu0_query_uvz": current,
                      "mu0_query_world": query_world, "mu0_traces_world": traces_world.astype(np.float32),
                      "mu0_traces": ((pred_uvz - current[:, None]) / scale).astype(np.float32),
                      "mu0_query_mask": mask,
                      "mu0_query_label": labels,
                      "mu0_image": pred.image_feature[0]}
        if self.point_tokens:
            self._last[POINT_TOKENS_KEY] = pred.point_tokens[0].astype(np.float32)
        if self.wrist_features or self.wrist_points:
            frame = base.render_frame(self.wrist_camera, depth=bool(self.wrist_points),
                                      segmentation=bool(self.wrist_points))
            if self.wrist_features:
                cells = self.mu0.encoder.encode_rgb(frame.rgb[None]).sample_map[0]  # (112, h/16, w/16)
                self._last["wrist_tokens"] = cells.flatten(1).T.contiguous().numpy().astype(np.float32)
            if self.wrist_points:
                self._last.update(self._wrist_query_points(frame, obs))
        self._age = 0
        self.queries += 1
        return self._with_last(obs)

    def _history_uvz(self, points_px: np.ndarray, query_world: np.ndarray, params,
                     gripper_points: int) -> dict[str, np.ndarray]:
        """``predict_traces``' history arguments: each query point, attached to the body it lies on, at the body
        poses of the last steps, in this camera ((1, K, Hh, 3) uvz, oldest first; steps before the episode began
        are invalid, as in pretraining samples)."""
        from mu0sim.policies.oracle_traces import attach_query_points

        base = self.env.unwrapped
        size = self.mu0.image_size
        k, hh = len(points_px), self.mu0.config.history
        uvz, valid = np.zeros((1, k, hh, 3), np.float32), np.zeros((1, k, hh), bool)
        if not self._poses:
            return {"history_uvz": uvz, "history_valid": valid}
        keypoints = attach_query_points(base, params, points_px, query_world.astype(np.float64), gripper_points,
                                        geom_ids=base.last_geom_ids(self.camera))
        for j, (xpos, xmat) in enumerate(self._poses, start=hh - len(self._poses)):
            world = xpos[keypoints.body] + np.einsum("kij,kj->ki", xmat[keypoints.body].reshape(-1, 3, 3),
                                                     keypoints.offset)
            uv_px, depth_m = project_points(world, params)
            uvz[0, :, j] = np.concatenate([uv_px / size * 2 - 1, depth_m[:, None]], -1)
            valid[0, :, j] = True
        return {"history_uvz": uvz, "history_valid": valid}

    def _wrist_query_points(self, frame, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        base = self.env.unwrapped
        labels = base.segmentation_label_of_geoms(frame.geom_ids)
        params = base.camera_params(self.wrist_camera)
        count = self.wrist_points
        chosen = object_pixel_samples(labels, count, self._rng)
        n = len(chosen)
        points = np.zeros((count, 2), np.float32)
        points[:n] = chosen
        r, c = points[:, 1].astype(int), points[:, 0].astype(int)
        world = unproject_points(points, frame.depth_m[r, c], params)
        mask = (np.arange(count) < n).astype(np.float32)
        out = {"wrist_query_world": (world * mask[:, None]).astype(np.float32),
               "wrist_query_label": (labels[r, c] * mask).astype(np.float32), "wrist_query_mask": mask}
        if self.pixel_moments:  # 0.6-3.4 ms a query (every object pixel): only for the experts that read it
            out[PIXEL_MOMENTS_KEY] = object_pixel_moments(labels, frame.depth_m, params, obs)
        return out

    def _with_last(self, obs: dict[str, np.ndarray]) -> dict[str, Any]:
        # copies: users keep observations, and the next steps must not change them
        return {**obs, **{k: v.copy() for k, v in self._last.items()}, "mu0_age": np.array([self._age], np.float32)}



class ForecastErrorObservation(gym.Wrapper):
    """Adds a known error to the 3D traces of a :class:`Mu0TraceObservation`: how far off may a forecast be before
    an expert that follows it fails? (``scripts/forecast_tolerance.py``; ground-truth traces plus this error stand
    for a μ0 that is exactly that far off.)

    At each fresh forecast (``mu0_age`` 0) every label slot's query points (the gripper's, each task object's) get
    one random direction, and their ``mu0_traces_world`` move along it by ``error_m * 2 H / (H + 1) * h / H`` at
    future step h = 1..H: zero now, growing along the horizon, so that the mean over the H steps is ``error_m``
    (metres; the measure of ``scripts/forecast_error.py``). The error is held until the next forecast. Only the
    world-frame traces change (what 3D trace-reading experts read); ``reset(seed=...)`` reseeds the directions, so an
    episode depends on its seed only.

    ``persistent``: each slot's direction is drawn once per episode and kept for every forecast (a bias, as a
    forecaster that is wrong the same way from similar states), instead of fresh at each forecast (noise, which
    a follower re-querying every few steps averages out)."""

    def __init__(self, env: gym.Env, error_m: float, seed: int = 0, persistent: bool = False) -> None:
        super().__init__(env)
        if error_m < 0:
            raise ValueError(f"error_m is a distance (metres): must be >= 0, got {error_m}")
        self.error_m, self.persistent = error_m, persistent
        self._rng = np.random.default_rng([seed, 1])
        self._direction: np.ndarray | None = None  # (LABEL_SLOTS, 3) unit vectors, for the current forecast
        self._offset: np.ndarray | None = None  # (K, H, 3) metres, for the current forecast

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng([seed, 1])  # its own stream: the env's draws stay as they were
        obs, info = self.env.reset(seed=seed, options=options)
        self._direction = None
        return self._perturb(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._perturb(obs), reward, terminated, truncated, info

    def _perturb(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        traces = obs["mu0_traces_world"]
        if self._offset is None or obs["mu0_age"][0] == 0:
            horizon = traces.shape[1]
            if self._direction is None or not self.persistent:
                direction = self._rng.normal(size=(LABEL_SLOTS, 3))
                self._direction = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
            ramp = self.error_m * 2.0 / (horizon + 1) * np.arange(1, horizon + 1)  # mean over the steps: error_m
            self._offset = self._direction[label_slots(obs["mu0_query_label"])][:, None, :] * ramp[None, :, None]
        return {**obs, "mu0_traces_world": (traces + self._offset).astype(np.float32)}
