"""Following keypoints through an episode: exactly from simulator state (``sim``) or from RGB-D video (``video``).

Both produce :class:`Tracks` — world positions (T, K, 3) in metres, per-frame camera projections ``uv_px``
(T, K, 2) and ``depth_m`` (T, K), ``visible`` (T, K: in the image and not occluded) and ``valid`` (T, K: the
tracker still follows the point; always true in sim mode).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mu0sim.camera import CameraParams, project_points, unproject_points


@dataclass
class Tracks:
    world: np.ndarray
    uv_px: np.ndarray
    depth_m: np.ndarray
    visible: np.ndarray
    valid: np.ndarray

    @property
    def num_frames(self) -> int:
        return self.world.shape[0]


def visibility(uv_px: np.ndarray, depth_m: np.ndarray, depth_image: np.ndarray, tolerance_m: float = 0.01,
               relative_tolerance: float = 0.02) -> np.ndarray:
    """A point is visible if it projects inside the image in front of the camera and the rendered depth at its
    pixel agrees with its own depth (otherwise something is in front of it)."""
    h, w = depth_image.shape
    px = np.floor(uv_px).astype(int)
    inside = (depth_m > 0) & (px[..., 0] >= 0) & (px[..., 0] < w) & (px[..., 1] >= 0) & (px[..., 1] < h)
    rows, cols = np.clip(px[..., 1], 0, h - 1), np.clip(px[..., 0], 0, w - 1)
    seen = depth_image[rows, cols]
    return inside & (np.abs(seen - depth_m) <= tolerance_m + relative_tolerance * depth_m)


def project_tracks(world: np.ndarray, params: list[CameraParams], depth_images: np.ndarray) -> Tracks:
    """Camera-frame view of known world positions (T, K, 3) with per-frame camera parameters and depth images."""
    uv = np.zeros(world.shape[:2] + (2,))
    depth = np.zeros(world.shape[:2])
    for t, p in enumerate(params):
        uv[t], depth[t] = project_points(world[t], p)
    visible = np.stack([visibility(uv[t], depth[t], depth_images[t]) for t in range(len(params))])
    return Tracks(world.astype(np.float32), uv.astype(np.float32), depth.astype(np.float32), visible,
                  np.ones(world.shape[:2], dtype=bool))


def track_video(rgb: np.ndarray, depth_images: np.ndarray, params: list[CameraParams], start_uv_px: np.ndarray,
                start_ok: np.ndarray, fb_threshold_px: float = 1.0, occlusion_jump_m: float = 0.03,
                window_px: int = 15, pyramid_levels: int = 2) -> Tracks:
    """Track pixels with OpenCV's pyramidal Lucas–Kanade, forward-backward checked, and lift them to 3D by depth.

    Args:
        rgb: (T, H, W, 3) uint8 frames; depth_images: (T, H, W) metres; params: camera parameters per frame.
        start_uv_px: (K, 2) pixels at frame 0; start_ok: (K,) which of them to track.
        fb_threshold_px: a track is lost when tracking forward then backward misses its start by more than this.
        occlusion_jump_m: depth at the tracked pixel jumping by more than this since the last visible frame means
            something passed in front: the point is not visible there (tracking continues).
    """
    num_frames, k = len(rgb), len(start_uv_px)
    h, w = depth_images.shape[1:]
    uv = np.zeros((num_frames, k, 2), dtype=np.float32)
    valid = np.zeros((num_frames, k), dtype=bool)
    uv[0], valid[0] = start_uv_px, start_ok
    gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in rgb]
    lk = dict(winSize=(window_px, window_px), maxLevel=pyramid_levels,
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    for t in range(1, num_frames):
        alive = np.flatnonzero(valid[t - 1])
        uv[t] = uv[t - 1]
        if len(alive) == 0:
            continue
        # OpenCV puts pixel centres on integer coordinates; mu0sim at +0.5
        previous = (uv[t - 1, alive] - 0.5).reshape(-1, 1, 2).astype(np.float32)
        forward, ok_f, _ = cv2.calcOpticalFlowPyrLK(gray[t - 1], gray[t], previous, None, **lk)
        backward, ok_b, _ = cv2.calcOpticalFlowPyrLK(gray[t], gray[t - 1], forward, None, **lk)
        fb_error = np.linalg.norm((backward - previous).reshape(-1, 2), axis=1)
        new = forward.reshape(-1, 2) + 0.5
        inside = (new[:, 0] >= 0) & (new[:, 0] < w) & (new[:, 1] >= 0) & (new[:, 1] < h)
        ok = ok_f.ravel().astype(bool) & ok_b.ravel().astype(bool) & (fb_error < fb_threshold_px) & inside
        uv[t, alive] = new
        valid[t, alive] = ok
    px = np.clip(np.floor(uv).astype(int), 0, [w - 1, h - 1])
    depth = depth_images[np.arange(num_frames)[:, None], px[..., 1], px[..., 0]].astype(np.float32)
    world = np.stack([unproject_points(uv[t], depth[t], params[t]) for t in range(num_frames)]).astype(np.float32)
    visible = valid.copy()
    last_depth = depth[0].copy()
    for t in range(1, num_frames):
        jump = np.abs(depth[t] - last_depth) > occlusion_jump_m
        visible[t] &= ~jump
        last_depth = np.where(visible[t], depth[t], last_depth)
    return Tracks(world, uv, depth, visible, valid)
