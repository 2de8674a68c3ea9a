"""Keypoint selection: salient interaction points, each attached to the MuJoCo body it lies on.

Categories: ``object`` (spread over each manipulated object's visible surface at t0), ``gripper`` (finger pads and
the grip site), ``contact`` (where the fingers touch an object when it is grasped; attached to the object, so the
point is defined over the whole episode), ``grid`` (optional sparse uniform grid over the image). A keypoint is a
body id plus an offset in that body's frame: following it through recorded states is exact (sim mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from mu0sim.camera import CameraParams, pixel_centers, unproject_points

CATEGORIES = ("object", "gripper", "contact", "grid")


@dataclass
class Keypoints:
    """K keypoints. ``body`` (K,) int body ids; ``offset`` (K, 3) metres in the body frame; ``category`` (K,) index
    into CATEGORIES; ``owner`` (K,) name of what the point belongs to (object name, ``robot``, ``background``)."""

    body: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    offset: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    category: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    owner: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.body)

    def extend(self, body, offset, category: str, owner) -> None:
        body = np.atleast_1d(np.asarray(body, dtype=np.int32))
        self.body = np.concatenate([self.body, body])
        self.offset = np.concatenate([self.offset, np.asarray(offset, dtype=np.float64).reshape(-1, 3)])
        self.category = np.concatenate([self.category, np.full(len(body), CATEGORIES.index(category), np.int8)])
        self.owner += list(owner) if not isinstance(owner, str) else [owner] * len(body)

    def concat(self, other: "Keypoints") -> "Keypoints":
        return Keypoints(np.concatenate([self.body, other.body]), np.concatenate([self.offset, other.offset]),
                         np.concatenate([self.category, other.category]), self.owner + other.owner)

    def subset(self, keep: np.ndarray) -> "Keypoints":
        keep = np.asarray(keep)
        index = np.flatnonzero(keep) if keep.dtype == bool else keep
        return Keypoints(self.body[index], self.offset[index], self.category[index], [self.owner[i] for i in index])

    def world_positions(self, data: mujoco.MjData) -> np.ndarray:
        """(K, 3) world positions for the current body poses in ``data``."""
        rot = data.xmat[self.body].reshape(-1, 3, 3)
        return data.xpos[self.body] + np.einsum("kij,kj->ki", rot, self.offset)


def body_offsets(data: mujoco.MjData, bodies: np.ndarray, points_world: np.ndarray) -> np.ndarray:
    """World points -> offsets in their bodies' frames (inverse of :meth:`Keypoints.world_positions`)."""
    rot = data.xmat[bodies].reshape(-1, 3, 3)
    return np.einsum("kji,kj->ki", rot, points_world - data.xpos[bodies])


def farthest_point_sampling(points: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``count`` points spread out over ``points`` (N, d) (greedy farthest-point order)."""
    if len(points) <= count:
        return np.arange(len(points))
    chosen = [int(rng.integers(len(points)))]
    distance = np.linalg.norm(points - points[chosen[0]], axis=1)
    for _ in range(count - 1):
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.linalg.norm(points - points[chosen[-1]], axis=1))
    return np.array(chosen)


def interior_mask(mask: np.ndarray) -> np.ndarray:
    """Mask pixels whose 4 neighbours are in the mask too (edge pixels mix surfaces and depths)."""
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return inner


def select_surface_keypoints(base_env, camera: str, params: CameraParams, per_object: int, grid: int,
                             rng: np.random.Generator) -> Keypoints:
    """Object (and optional grid) keypoints from the current frame of ``base_env`` (an unwrapped Mu0SimEnv)."""
    model, data = base_env.mj_model, base_env.mj_data
    frame = base_env.render_frame(camera, depth=True, segmentation=True)
    geom_ids, depth_m = frame.geom_ids, frame.depth_m
    labels = base_env.segmentation_label_of_geoms(geom_ids)
    keypoints = Keypoints()
    for label, name in base_env.segmentation_labels.items():
        if label < 2:
            continue
        mask = interior_mask(labels == label)
        rows, cols = np.nonzero(mask)
        if len(rows) == 0:
            continue
        pick = farthest_point_sampling(np.stack([rows, cols], 1).astype(float), per_object, rng)
        rows, cols = rows[pick], cols[pick]
        world = unproject_points(pixel_centers(rows, cols), depth_m[rows, cols], params)
        bodies = model.geom_bodyid[geom_ids[rows, cols]]
        keypoints.extend(bodies, body_offsets(data, bodies, world), "object", name)
    if grid > 0:
        h, w = depth_m.shape
        rows, cols = np.meshgrid((np.arange(grid) + 0.5) * h / grid, (np.arange(grid) + 0.5) * w / grid,
                                 indexing="ij")
        rows, cols = rows.astype(int).ravel(), cols.astype(int).ravel()
        hit = geom_ids[rows, cols] >= 0
        rows, cols = rows[hit], cols[hit]
        world = unproject_points(pixel_centers(rows, cols), depth_m[rows, cols], params)
        bodies = model.geom_bodyid[geom_ids[rows, cols]]
        owners = [base_env.segmentation_labels[int(label)] for label in labels[rows, cols]]
        keypoints.extend(bodies, body_offsets(data, bodies, world), "grid", owners)
    return keypoints


def gripper_keypoints(base_env) -> Keypoints:
    """The finger pads' centres and the grip site, attached to their bodies."""
    model, data = base_env.mj_model, base_env.mj_data
    keypoints = Keypoints()
    pads = [g for side in base_env.fingerpad_geoms for g in side]
    bodies = model.geom_bodyid[pads]
    keypoints.extend(bodies, body_offsets(data, bodies, data.geom_xpos[pads]), "gripper", "robot")
    site = base_env.eef_site_id
    body = np.array([model.site_bodyid[site]])
    keypoints.extend(body, body_offsets(data, body, data.site_xpos[[site]]), "gripper", "robot")
    return keypoints


def contact_keypoints(base_env, max_points: int = 4) -> Keypoints:
    """Current contacts between the gripper and task objects, attached to the object's body."""
    model, data = base_env.mj_model, base_env.mj_data
    geom_label = base_env.segmentation_label_of_geoms(np.arange(model.ngeom))
    gripper_bodies = set(model.geom_bodyid[[g for side in base_env.fingerpad_geoms for g in side]])
    gripper_bodies |= {b for b in range(model.nbody) if model.body(b).name.startswith("gripper0_")}
    keypoints = Keypoints()
    for i in range(data.ncon):
        contact = data.contact[i]
        for mine, other in ((contact.geom1, contact.geom2), (contact.geom2, contact.geom1)):
            if model.geom_bodyid[mine] in gripper_bodies and geom_label[other] >= 2:
                body = np.array([model.geom_bodyid[other]])
                keypoints.extend(body, body_offsets(data, body, contact.pos[None].copy()), "contact",
                                 base_env.segmentation_labels[int(geom_label[other])])
                break
        if len(keypoints) >= max_points:
            break
    return keypoints
