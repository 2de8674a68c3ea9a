"""Pinhole camera geometry shared by the environments, TraceExtract and μ0.

Conventions (used everywhere in mu0sim):

* Images are upright (row 0 is the top of the picture), OpenCV style.
* Camera axes are OpenCV's: +x right, +y down, +z forward (out of the lens).
* ``uv_px`` are continuous pixel coordinates: pixel ``(row i, col j)`` covers
  ``u in [j, j+1)``, ``v in [i, i+1)``, so its centre is ``(j + 0.5, i + 0.5)`` and the pixel
  holding a point is ``floor(uv)``.
* ``depth_m`` is metric z-depth along the optical axis (not ray length), as in MuJoCo's depth buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraParams:
    """Intrinsics and pose of one camera at one instant.

    Attributes:
        name: camera name in the MuJoCo model.
        width_px, height_px: image size in pixels.
        intrinsics: (3, 3) pinhole matrix K in pixels.
        cam_to_world: (4, 4) pose of the camera in the world frame, OpenCV camera axes.
    """

    name: str
    width_px: int
    height_px: int
    intrinsics: np.ndarray
    cam_to_world: np.ndarray

    @property
    def world_to_cam(self) -> np.ndarray:
        rot, pos = self.cam_to_world[:3, :3], self.cam_to_world[:3, 3]
        out = np.eye(4)
        out[:3, :3] = rot.T
        out[:3, 3] = -rot.T @ pos
        return out

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "width_px": self.width_px,
            "height_px": self.height_px,
            "intrinsics": self.intrinsics.tolist(),
            "cam_to_world": self.cam_to_world.tolist(),
        }


def pinhole_intrinsics(fovy_deg: float, width_px: int, height_px: int) -> np.ndarray:
    """K for a MuJoCo camera: square pixels, f = 0.5 H / tan(fovy / 2), principal point at the centre."""
    f = 0.5 * height_px / np.tan(np.deg2rad(fovy_deg) / 2.0)
    return np.array([[f, 0.0, width_px / 2.0], [0.0, f, height_px / 2.0], [0.0, 0.0, 1.0]])


# MuJoCo cameras look along -z with +y up; OpenCV looks along +z with +y down.
_MUJOCO_TO_OPENCV = np.diag([1.0, -1.0, -1.0])


def mujoco_cam_to_world(cam_xpos: np.ndarray, cam_xmat: np.ndarray) -> np.ndarray:
    """(4, 4) camera-to-world pose with OpenCV axes from MuJoCo's ``data.cam_xpos``/``cam_xmat``."""
    out = np.eye(4)
    out[:3, :3] = np.asarray(cam_xmat).reshape(3, 3) @ _MUJOCO_TO_OPENCV
    out[:3, 3] = cam_xpos
    return out


def project_points(points_world: np.ndarray, params: CameraParams) -> tuple[np.ndarray, np.ndarray]:
    """World points (..., 3) in metres -> (uv_px (..., 2), depth_m (...)). Points behind the camera get depth <= 0."""
    pts = np.asarray(points_world, dtype=np.float64)
    w2c = params.world_to_cam
    cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
    depth = cam[..., 2]
    safe = np.where(np.abs(depth) < 1e-9, 1e-9, depth)
    k = params.intrinsics
    u = k[0, 0] * cam[..., 0] / safe + k[0, 2]
    v = k[1, 1] * cam[..., 1] / safe + k[1, 2]
    return np.stack([u, v], axis=-1), depth


def unproject_points(uv_px: np.ndarray, depth_m: np.ndarray, params: CameraParams) -> np.ndarray:
    """Inverse of :func:`project_points`: (uv_px (..., 2), depth_m (...)) -> world points (..., 3) in metres."""
    uv = np.asarray(uv_px, dtype=np.float64)
    z = np.asarray(depth_m, dtype=np.float64)
    k = params.intrinsics
    x = (uv[..., 0] - k[0, 2]) / k[0, 0] * z
    y = (uv[..., 1] - k[1, 2]) / k[1, 1] * z
    cam = np.stack([x, y, z], axis=-1)
    c2w = params.cam_to_world
    return cam @ c2w[:3, :3].T + c2w[:3, 3]


def pixel_centers(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """uv_px of the centres of pixels given by integer (row, col) indices."""
    return np.stack([np.asarray(cols) + 0.5, np.asarray(rows) + 0.5], axis=-1)


def normalize_uv(uv_px: np.ndarray, width_px: int, height_px: int) -> np.ndarray:
    """Pixel coordinates -> [-1, 1] (μ0's image coordinates; -1/+1 are the image borders)."""
    uv = np.asarray(uv_px, dtype=np.float64)
    return np.stack([uv[..., 0] / width_px * 2.0 - 1.0, uv[..., 1] / height_px * 2.0 - 1.0], axis=-1)
