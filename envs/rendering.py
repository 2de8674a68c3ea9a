"""Fast offscreen rendering of RGB, metric depth and segmentation from one robosuite simulation.

robosuite renders every camera observation with 4x multisampling, shadows, reflections and the skybox.
On a CPU rasteriser (Mesa llvmpipe) those settings dominate the cost of a step, and multisampling also
blends depth across object edges (mm-level errors). The defaults here turn them off. The skybox (with its horizon
haze) is hidden behind the arena walls in every robosuite camera, site markers are invisible debug visualisations
and robosuite's translucent IK-target markers sit under the floor, yet all cost draw calls (translucent ones a
sorted extra pass); dropping them changes no pixel (checked in the tests on every task).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
from robosuite.utils.binding_utils import MjRenderContextOffscreen, MjSim

_HIDDEN_GROUP = 5  # a geom group that our render options never show


@dataclass(frozen=True)
class RenderSettings:
    """Renderer quality switches. The defaults are the fast ones (see module docstring)."""

    anti_aliasing: bool = False
    shadows: bool = False
    reflections: bool = False
    skybox: bool = False  # also switches the horizon haze
    sites: bool = False  # MuJoCo site markers (robosuite keeps them transparent unless visualising)
    ik_target_markers: bool = False  # geom group 2: robosuite's translucent IK targets, parked under the floor
    # Skip geoms whose bounding sphere lies outside the camera's view (MuJoCo draws every geom, and llvmpipe shades
    # every vertex on one thread). Conservative, so pixels are unchanged; off whenever shadows or reflections are
    # on, because an off-screen geom can cast into the view.
    frustum_culling: bool = True


@dataclass
class RenderedFrame:
    """One camera image. ``rgb`` (H, W, 3) uint8; ``depth_m`` (H, W) float32 metres;
    ``geom_ids`` (H, W) int32 MuJoCo geom id per pixel, -1 where no geom was hit."""

    rgb: np.ndarray | None = None
    depth_m: np.ndarray | None = None
    geom_ids: np.ndarray | None = None


class SceneRenderer:
    """Offscreen renderer bound to one :class:`MjSim` (create a new one whenever the sim is rebuilt)."""

    def __init__(self, sim: MjSim, settings: RenderSettings = RenderSettings(), max_width: int = 640,
                 max_height: int = 480):
        model = sim.model._model
        if not settings.anti_aliasing:
            model.vis.quality.offsamples = 0  # must be set before the GL context allocates its buffers
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, max_width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, max_height)
        self._sim = sim
        self._ctx = MjRenderContextOffscreen(sim, device_id=-1, max_width=max(640, max_width),
                                             max_height=max(480, max_height))
        flags = self._ctx.scn.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = int(settings.shadows)
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = int(settings.reflections)
        flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = int(settings.skybox)
        flags[mujoco.mjtRndFlag.mjRND_HAZE] = int(settings.skybox)
        if not settings.sites:
            self._ctx.vopt.sitegroup[:] = 0
        self._ctx.vopt.geomgroup[0] = 0  # collision meshes hidden, visual meshes shown (as robosuite)
        self._ctx.vopt.geomgroup[1] = 1
        self._ctx.vopt.geomgroup[2] = int(settings.ik_target_markers)
        self._ctx.vopt.geomgroup[_HIDDEN_GROUP] = 0
        self._model, self._data = model, sim.data._data
        self._cull = settings.frustum_culling and not (settings.shadows or settings.reflections)
        # Planes (floor, walls) are infinite: geom_rbound is 0 for them, so they are never culled.
        self._cullable = np.flatnonzero((model.geom_rbound > 0) & (model.geom_type != mujoco.mjtGeom.mjGEOM_PLANE)
                                        & (model.geom_type != mujoco.mjtGeom.mjGEOM_HFIELD))
        extent = model.stat.extent
        self._near_m = model.vis.map.znear * extent
        self._far_m = model.vis.map.zfar * extent
        self.settings = settings

    def render(self, camera_id: int, width: int, height: int, *, rgb: bool = True, depth: bool = False,
               segmentation: bool = False) -> RenderedFrame:
        """Render ``camera_id`` at (height, width). RGB and depth come from one pass; segmentation needs a second."""
        hidden = self._outside_view(camera_id, width, height) if self._cull else None
        if hidden is not None and len(hidden):
            saved_groups = self._model.geom_group[hidden].copy()
            self._model.geom_group[hidden] = _HIDDEN_GROUP  # mjv_updateScene skips groups the options hide
            try:
                return self._render(camera_id, width, height, rgb, depth, segmentation)
            finally:
                self._model.geom_group[hidden] = saved_groups
        return self._render(camera_id, width, height, rgb, depth, segmentation)

    def _outside_view(self, camera_id: int, width: int, height: int) -> np.ndarray:
        """Ids of cullable geoms whose bounding sphere is entirely outside the camera's view frustum."""
        model, data = self._model, self._data
        ids = self._cullable
        # camera frame (MuJoCo axes: x right, y up, looking along -z)
        rel = data.geom_xpos[ids] - data.cam_xpos[camera_id]
        cam = rel @ data.cam_xmat[camera_id].reshape(3, 3)
        forward = -cam[:, 2]
        radius = model.geom_rbound[ids]
        tan_y = np.tan(np.deg2rad(model.cam_fovy[camera_id]) / 2.0)
        tan_x = tan_y * width / height
        outside = forward < -radius
        for coord, tan in ((cam[:, 0], tan_x), (cam[:, 1], tan_y)):
            outside |= (np.abs(coord) - forward * tan) / np.sqrt(1.0 + tan * tan) > radius
        return ids[outside]

    def _render(self, camera_id: int, width: int, height: int, rgb: bool, depth: bool,
                segmentation: bool) -> RenderedFrame:
        frame = RenderedFrame()
        # Several envs in one process (vector envs, checkers) each own a GL context; robosuite renders into
        # whichever is current, so claim ours first or another env's buffers are read back.
        self._ctx.gl_ctx.make_current()
        viewport = mujoco.MjrRect(0, 0, width, height)
        con = self._ctx.con
        if rgb or depth:
            self._ctx.render(width, height, camera_id=camera_id)
            rgb_buf = np.empty((height, width, 3), dtype=np.uint8)
            depth_buf = np.empty((height, width), dtype=np.float32) if depth else None
            mujoco.mjr_readPixels(rgb=rgb_buf, depth=depth_buf, viewport=viewport, con=con)
            if rgb:
                frame.rgb = np.ascontiguousarray(rgb_buf[::-1])  # GL rows are bottom-up
            if depth:
                frame.depth_m = self._linear_depth(np.ascontiguousarray(depth_buf[::-1]))
        if segmentation:
            self._ctx.render(width, height, camera_id=camera_id, segmentation=True)
            seg_buf = np.empty((height, width, 3), dtype=np.uint8)
            mujoco.mjr_readPixels(rgb=seg_buf, depth=None, viewport=viewport, con=con)
            frame.geom_ids = self._segids_to_geoms(seg_buf[::-1])
        return frame

    def _linear_depth(self, buf: np.ndarray) -> np.ndarray:
        """Non-linear OpenGL depth buffer in [0, 1] -> metric z-depth in metres."""
        near, far = self._near_m, self._far_m
        return (near / (1.0 - buf * (1.0 - near / far))).astype(np.float32)

    def _segids_to_geoms(self, seg_rgb: np.ndarray) -> np.ndarray:
        """Decode MuJoCo's segmentation colours (scene-geom index + 1, 0 = nothing) into model geom ids."""
        seg = seg_rgb.astype(np.int32)
        segid = seg[..., 0] + (seg[..., 1] << 8) + (seg[..., 2] << 16)
        scn = self._ctx.scn
        lut = np.full(scn.ngeom + 1, -1, dtype=np.int32)
        for i in range(scn.ngeom):
            geom = scn.geoms[i]
            if geom.objtype == mujoco.mjtObj.mjOBJ_GEOM and geom.segid >= 0:
                lut[geom.segid + 1] = geom.objid
        segid[segid > scn.ngeom] = 0
        return lut[segid]
