"""Gymnasium environment over a robosuite manipulation task: one action meaning and one observation layout on
every robot, calibrated cameras, exact seeding, and rendering only when images are asked for.

Action (``Box(-1, 1, (7,), float32)``), identical on every robot:
    ``[dx, dy, dz, ax, ay, az, grip]``. ``dx..dz``: end-effector translation per control step in the world frame,
    1.0 = 5 cm. ``ax..az``: end-effector rotation per step as an axis-angle vector in the world frame,
    1.0 = 0.5 rad. ``grip``: -1 opens, +1 closes. (robosuite OSC_POSE, delta mode, world reference frame.)
    The offsets are the controller's *target* relative to the current pose; the arm then follows with its own
    dynamics: a sustained 1.0 moves the gripper ~1.0-1.3 cm per step (0.2-0.25 m/s) on every supported arm.

Observation (flat ``Dict`` of float32 / uint8 ``Box``es):
    ``robot0_eef_pos`` (3,) grip-site position, metres, world frame.
    ``robot0_eef_quat`` (4,) grip-site orientation, quaternion (x, y, z, w), world frame.
    ``robot0_gripper_width`` (1,) distance between the finger pads, metres (on Jaco's three-finger hand the
        thumb-to-fingers pad distance, which does not shrink monotonically while closing in free air).
    ``robot0_joint_pos`` (n_joints,) arm joint angles, radians (6 on UR5e, 7 on the other arms).
    ``object`` (k,) task object state from robosuite (positions in metres, quaternions xyzw, relative vectors);
        ``env.unwrapped.object_layout`` names its parts, e.g. ``{"cube_pos": slice(0, 3), ...}``.
    ``<camera>_image`` (H, W, 3) uint8 upright RGB, per camera.
    ``<camera>_depth`` (H, W, 1) float32 metric z-depth in metres, per camera, if ``depth=True``.
    ``<camera>_segmentation`` (H, W, 1) uint8 label per pixel, if ``segmentation=True``:
        0 background, 1 robot, 2.. task objects in ``segmentation_labels`` order.
"""

from __future__ import annotations

import dataclasses
import logging
import xml.etree.ElementTree as ET
from typing import Any, Sequence

import gymnasium as gym
import mujoco
import numpy as np
import robosuite
from gymnasium import spaces
from robosuite.controllers import load_composite_controller_config

from mu0sim.camera import CameraParams, mujoco_cam_to_world, pinhole_intrinsics
from mu0sim.envs.catalog import ROBOTS, TASKS, RobotSpec, TaskSpec, check_choice
from mu0sim.envs.rendering import RenderedFrame, RenderSettings, SceneRenderer

# robosuite logs an INFO line for every env it builds ("Loading controller configuration ..."); keep warnings.
logging.getLogger("robosuite_logs").setLevel(logging.WARNING)

ACTION_DIM = 7
POSITION_SCALE_M = 0.05  # metres of end-effector motion per unit of action, per control step
ROTATION_SCALE_RAD = 0.5  # radians of end-effector rotation per unit of action, per control step
BACKGROUND_LABEL, ROBOT_LABEL = 0, 1
_INSTABILITY_WARNINGS = (mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADQVEL,
                         mujoco.mjtWarning.mjWARN_BADQACC)


def osc_pose_controller_config() -> dict[str, Any]:
    """robosuite's BASIC composite config reduced to the one arm, with world-frame deltas."""
    config = load_composite_controller_config(controller="BASIC")
    arm = dict(config["body_parts"]["right"])
    arm["input_ref_frame"] = "world"
    config["body_parts"] = {"right": arm}
    return config


def _exclude_contacts_processor(pairs: Sequence[tuple[str, str]]):
    """An XML processor adding ``<contact><exclude>`` for the bodies that own each pair of geoms."""

    def process(xml: str) -> str:
        root = ET.fromstring(xml)
        owner = {geom.get("name"): body.get("name") for body in root.iter("body") for geom in body.findall("geom")}
        contact = root.find("contact")
        if contact is None:
            contact = ET.SubElement(root, "contact")
        existing = {(e.get("body1"), e.get("body2")) for e in contact.findall("exclude")}
        for geom_a, geom_b in pairs:
            bodies = (owner.get(geom_a), owner.get(geom_b))
            if None not in bodies and bodies not in existing:
                ET.SubElement(contact, "exclude", body1=bodies[0], body2=bodies[1])
        return ET.tostring(root, encoding="unicode")

    return process


class Mu0SimEnv(gym.Env):
    """A robosuite task behind Gymnasium semantics. Create it with ``gym.make("mu0sim/<Task>-v0", ...)``.

    ``info`` of every reset and step: ``is_success`` (bool), ``grasping`` (bool: both finger pads touch the task's
    first object, e.g. the red cube of Stack; where an unsuccessful episode got to), ``sim_error`` after a
    simulation instability, ``images_fresh`` when the env renders cameras.

    Args:
        task: task name, one of ``mu0sim.envs.TASKS``.
        robot: robot name, one of ``mu0sim.envs.ROBOTS``.
        cameras: cameras to observe; ``()`` gives a state-only env that never renders.
        image_size: image side in pixels (int) or (height, width).
        depth: add ``<camera>_depth`` (metres) for every camera.
        segmentation: add ``<camera>_segmentation`` (robot / object labels) for every camera.
        control_freq: policy steps per second (Hz); physics runs at 500 Hz.
        image_period: render camera images on every ``image_period``-th step (and at reset). Between, image
            observations repeat the last rendered frame and ``info["images_fresh"]`` is False. 0 renders only
            at reset and on :meth:`refresh_images`.
        render_mode: ``"rgb_array"`` or None; ``render()`` then returns ``render_camera`` at ``render_size``.
        render_settings: renderer quality switches (fast defaults).
        terminate_on_success: end the episode (``terminated=True``) on the first successful step.
        reward_shaping: robosuite's dense reward instead of the sparse success reward.
        model_seed: seed for what robosuite randomises when it builds the model (e.g. object sizes); fixed per
            env so that ``reset(seed=s)`` means the same initial state in every process.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        task: str = "Lift",
        robot: str = "Panda",
        cameras: Sequence[str] = ("agentview",),
        image_size: int | tuple[int, int] = 128,
        depth: bool = False,
        segmentation: bool = False,
        control_freq: float = 20,
        image_period: int = 1,
        render_mode: str | None = None,
        render_camera: str = "frontview",
        render_size: int = 256,
        render_settings: RenderSettings | dict = RenderSettings(),
        terminate_on_success: bool = True,
        reward_shaping: bool = False,
        model_seed: int = 0,
    ):
        check_choice("task", task, TASKS)
        check_choice("robot", robot, ROBOTS)
        if isinstance(cameras, str):
            cameras = (cameras,)
        self.task_spec: TaskSpec = TASKS[task]
        self.robot_spec: RobotSpec = ROBOTS[robot]
        self.cameras: tuple[str, ...] = tuple(cameras)
        for camera in self.cameras:
            check_choice("camera", camera, self.available_cameras())
        if render_mode is not None:
            check_choice("render_mode", render_mode, self.metadata["render_modes"])
            check_choice("camera", render_camera, self.available_cameras())
        self.image_hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(self.image_hw) != 2 or min(self.image_hw) < 1:
            raise ValueError(f"image_size must be a positive int or (height, width), got {image_size!r}")
        if not control_freq > 0:
            raise ValueError(f"control_freq must be positive (Hz), got {control_freq!r}")
        if image_period < 0:
            raise ValueError(f"image_period must be >= 0 (0 = only at reset and on refresh_images), got {image_period}")
        self.depth, self.segmentation = bool(depth), bool(segmentation)
        self.control_freq = control_freq
        self.image_period = image_period
        self.render_mode, self.render_camera, self.render_size = render_mode, render_camera, render_size
        if isinstance(render_settings, dict):  # as stored in a dataset's env_args
            render_settings = RenderSettings(**render_settings)
        self.render_settings = render_settings
        self.terminate_on_success = terminate_on_success
        self.model_seed = model_seed
        self.instruction: str = self.task_spec.instruction

        # Everything needed to build this env again (datasets store it as env_args).
        self.init_kwargs: dict[str, Any] = dict(
            task=task, robot=robot, cameras=list(self.cameras), image_size=list(self.image_hw), depth=self.depth,
            segmentation=self.segmentation, control_freq=control_freq, image_period=image_period,
            render_mode=render_mode, render_camera=render_camera, render_size=render_size,
            render_settings=dataclasses.asdict(render_settings), terminate_on_success=terminate_on_success,
            reward_shaping=reward_shaping, model_seed=model_seed)
        # The robosuite.make arguments (robomimic's env_kwargs rebuild the same simulation).
        self.robosuite_kwargs: dict[str, Any] = dict(
            robots=robot,
            controller_configs=osc_pose_controller_config(),
            has_renderer=False,
            has_offscreen_renderer=False,  # we own the render context (fast settings, one pass for RGB + depth)
            use_camera_obs=False,
            use_object_obs=True,
            ignore_done=True,  # episode limits are Gymnasium's TimeLimit truncation, never termination
            hard_reset=False,  # keep the model and GL context across resets (rebuilding costs ~1 s per reset)
            horizon=10**9,
            control_freq=control_freq,
            reward_shaping=reward_shaping,
            seed=model_seed,
            **self.task_spec.robosuite_kwargs,
        )
        self._rs = robosuite.make(self.task_spec.robosuite_env, **self.robosuite_kwargs)
        if self.robot_spec.contact_excludes:
            self._rs.set_xml_processor(_exclude_contacts_processor(self.robot_spec.contact_excludes))
            self._rs.reset_from_xml_string(self._rs.sim.model.get_xml())
        self._renderer: SceneRenderer | None = None
        self._bind_model()

        self.action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), dtype=np.float32)
        self.observation_space = self._build_observation_space()
        self._steps = 0
        self._ended_by_sim_error = False
        self._image_obs: dict[str, np.ndarray] = {}
        self._geom_ids: dict[str, np.ndarray] = {}  # per camera, of the last render_images (with segmentation)
        self._rs_seeded = False

    # ------------------------------------------------------------------ model bookkeeping
    def available_cameras(self) -> tuple[str, ...]:
        """Cameras of this task's model (any of them can be rendered with :meth:`render_frame`)."""
        return self.task_spec.cameras

    def _bind_model(self) -> None:
        """(Re)build everything derived from the compiled model: ids, labels, renderer."""
        sim = self._rs.sim
        model = sim.model._model
        self._model, self._data = model, sim.data._data
        robot = self._rs.robots[0]
        self._eef_site_id = robot.eef_site_id["right"]
        self._arm_qpos_idx = np.asarray(robot._ref_joint_pos_indexes)
        gripper = robot.gripper["right"]
        if self.robot_spec.fingerpad_geoms is not None:
            left, right = self.robot_spec.fingerpad_geoms
        else:
            left, right = gripper.important_geoms["left_fingerpad"], gripper.important_geoms["right_fingerpad"]
        self._pad_geoms = ([model.geom(n).id for n in left], [model.geom(n).id for n in right])
        self._camera_ids = {name: model.camera(name).id for name in self.cameras}
        if self.render_mode is not None:
            self._camera_ids.setdefault(self.render_camera, model.camera(self.render_camera).id)
        objects = self.task_spec.objects(self._rs)
        self.segmentation_labels: dict[int, str] = {BACKGROUND_LABEL: "background", ROBOT_LABEL: "robot"}
        roots = {model.body(robot.robot_model.root_body).id: ROBOT_LABEL}
        for i, (name, obj) in enumerate(objects.items()):
            roots[model.body(obj.root_body).id] = ROBOT_LABEL + 1 + i
            self.segmentation_labels[ROBOT_LABEL + 1 + i] = name
        self.object_root_bodies: dict[str, str] = {name: obj.root_body for name, obj in objects.items()}
        body_label = np.zeros(model.nbody, dtype=np.uint8)
        for body in range(1, model.nbody):  # parents precede children in MuJoCo's body order
            body_label[body] = roots.get(body, body_label[model.body_parentid[body]])
        # index geom_id + 1 so that -1 (no geom) maps to background
        self._geom_label = np.concatenate([[BACKGROUND_LABEL], body_label[model.geom_bodyid]]).astype(np.uint8)
        # the geoms of the task's first object (the one picked up, pushed or pulled): info["grasping"]
        self._target_geoms = np.flatnonzero(body_label[model.geom_bodyid] == ROBOT_LABEL + 1)
        self._instability_count = 0
        if self.cameras or self.render_mode is not None:
            h, w = self.image_hw
            self._renderer = SceneRenderer(sim, self.render_settings, max_width=max(w, self.render_size),
                                           max_height=max(h, self.render_size))
        else:
            self._renderer = None

    def _build_observation_space(self) -> spaces.Dict:
        inf = np.inf
        n_joints = len(self._arm_qpos_idx)
        n_object = self._rs._get_observations(force_update=True)["object-state"].shape[0]
        # robosuite concatenates the active object observables in registration order
        self.object_layout: dict[str, slice] = {}
        offset = 0
        for name, observable in self._rs._observables.items():
            if observable.modality == "object" and observable.is_enabled() and observable.is_active():
                size = int(np.prod(np.shape(observable.obs)))
                self.object_layout[name] = slice(offset, offset + size)
                offset += size
        assert offset == n_object, f"object layout covers {offset} of {n_object} values"
        space: dict[str, spaces.Box] = {
            "robot0_eef_pos": spaces.Box(-inf, inf, (3,), np.float32),
            "robot0_eef_quat": spaces.Box(-1.0, 1.0, (4,), np.float32),
            "robot0_gripper_width": spaces.Box(0.0, inf, (1,), np.float32),
            "robot0_joint_pos": spaces.Box(-inf, inf, (n_joints,), np.float32),
            "object": spaces.Box(-inf, inf, (n_object,), np.float32),
        }
        h, w = self.image_hw
        for cam in self.cameras:
            space[f"{cam}_image"] = spaces.Box(0, 255, (h, w, 3), np.uint8)
            if self.depth:
                space[f"{cam}_depth"] = spaces.Box(0.0, inf, (h, w, 1), np.float32)
            if self.segmentation:
                space[f"{cam}_segmentation"] = spaces.Box(0, 255, (h, w, 1), np.uint8)
        return spaces.Dict(space)

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or not self._rs_seeded:
            # robosuite draws every initial-state sample (object placement, joint noise) from env.rng; the
            # placement samplers hold the same Generator object, so its state is overwritten in place.
            self._rs.rng.bit_generator.state = self.np_random.bit_generator.state
            self._rs_seeded = True
        rs_obs = self._rs.reset()
        self._steps = 0
        self._ended_by_sim_error = False
        self._instability_count = 0
        obs = self._observe(rs_obs, render=bool(self.cameras))
        info = {"is_success": self._success(), "grasping": self._grasping(), "instruction": self.instruction}
        if self.cameras:
            info["images_fresh"] = True
        return obs, info

    def step(self, action):
        if self._ended_by_sim_error:
            raise RuntimeError("the episode ended with a simulation error; call reset() before step()")
        action = self._validate_action(action)
        rs_action = action.astype(np.float64)
        rs_action[6] *= self.robot_spec.gripper_sign
        rs_obs, reward, _, _ = self._rs.step(rs_action)
        self._steps += 1
        sim_error = self._check_sim_error()
        fresh = bool(self.cameras) and self.image_period > 0 and self._steps % self.image_period == 0
        success = False if sim_error else self._success()
        obs = self._observe(rs_obs, render=fresh and not sim_error)
        info: dict[str, Any] = {"is_success": success, "grasping": False if sim_error else self._grasping()}
        if self.cameras:
            info["images_fresh"] = fresh and not sim_error
        terminated = bool(success and self.terminate_on_success)
        if sim_error:
            info["sim_error"] = sim_error
            self._ended_by_sim_error = True
            terminated, reward = True, 0.0
        return obs, float(reward), terminated, False, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self._renderer.render(self._camera_ids[self.render_camera], self.render_size, self.render_size).rgb

    def close(self):
        if getattr(self, "_rs", None) is not None:
            self._renderer = None
            self._rs.close()
            self._rs = None

    # ------------------------------------------------------------------ images on demand
    def refresh_images(self) -> dict[str, np.ndarray]:
        """Render every camera for the current state now; returns (and caches) the image observations."""
        self._render_images()
        return dict(self._image_obs)

    def _render_images(self) -> None:
        h, w = self.image_hw
        for cam in self.cameras:
            frame = self._renderer.render(self._camera_ids[cam], w, h, rgb=True, depth=self.depth,
                                          segmentation=self.segmentation)
            self._image_obs[f"{cam}_image"] = frame.rgb
            if self.depth:
                self._image_obs[f"{cam}_depth"] = frame.depth_m[..., None]
            if self.segmentation:
                self._geom_ids[cam] = frame.geom_ids
                self._image_obs[f"{cam}_segmentation"] = self.segmentation_label_of_geoms(frame.geom_ids)[..., None]

    def last_geom_ids(self, camera: str) -> np.ndarray | None:
        """Per-pixel MuJoCo geom ids (-1 = none) of ``camera``'s last image observation, or None where the env
        renders no segmentation (what lies under a pixel of the frame the policy saw, without rendering again)."""
        return self._geom_ids.get(camera)

    # ------------------------------------------------------------------ observations and checks
    def _observe(self, rs_obs: dict, render: bool) -> dict[str, np.ndarray]:
        data = self._data
        quat_wxyz = np.empty(4)
        mujoco.mju_mat2Quat(quat_wxyz, data.site_xmat[self._eef_site_id])
        obs = {
            "robot0_eef_pos": data.site_xpos[self._eef_site_id].astype(np.float32),
            "robot0_eef_quat": np.roll(quat_wxyz, -1).astype(np.float32),
            "robot0_gripper_width": np.array([self.gripper_width_m()], dtype=np.float32),
            "robot0_joint_pos": data.qpos[self._arm_qpos_idx].astype(np.float32),
            "object": np.asarray(rs_obs["object-state"], dtype=np.float32),
        }
        if render:
            self._render_images()
        # copies, so that a kept observation is never changed by a later step
        obs.update({key: value.copy() for key, value in self._image_obs.items()})
        return obs

    def gripper_width_m(self) -> float:
        """Distance between the centres of the left and right finger pads, metres."""
        left, right = self._pad_geoms
        xpos = self._data.geom_xpos
        return float(np.linalg.norm(xpos[left].mean(axis=0) - xpos[right].mean(axis=0)))

    def _validate_action(self, action) -> np.ndarray:
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"action must have shape ({ACTION_DIM},) = [dx, dy, dz, ax, ay, az, grip], "
                             f"got shape {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action contains NaN or inf: {action.tolist()}")
        return np.clip(action, -1.0, 1.0)

    def _grasping(self) -> bool:
        """Both finger pads touch the task's first object (the grasp check of robosuite's ``_check_grasp``, on the
        pads this env measures the opening with: robosuite's own are wrong for some grippers)."""
        n = self._data.ncon
        if n == 0:
            return False
        g1, g2 = self._data.contact.geom1[:n], self._data.contact.geom2[:n]
        on_target = np.isin(g1, self._target_geoms), np.isin(g2, self._target_geoms)
        touching = np.concatenate([g2[on_target[0]], g1[on_target[1]]])
        left, right = self._pad_geoms
        return bool(np.isin(left, touching).any() and np.isin(right, touching).any())

    def _success(self) -> bool:
        return bool(self._rs._check_success())

    def _check_sim_error(self) -> str | None:
        """MuJoCo resets a diverged simulation itself and counts a BADQPOS/BADQVEL/BADQACC warning; report that
        instead of letting the episode continue from a silently reset state."""
        warnings = self._data.warning
        count = sum(int(warnings[w].number) for w in _INSTABILITY_WARNINGS)
        if count > self._instability_count:
            self._instability_count = count
            return f"physics instability (MuJoCo warning) at step {self._steps}, time {self._data.time:.3f} s"
        if not (np.all(np.isfinite(self._data.qpos)) and np.all(np.isfinite(self._data.qvel))):
            return f"non-finite simulation state at step {self._steps}"
        return None

    # ------------------------------------------------------------------ cameras
    def camera_params(self, camera: str) -> CameraParams:
        """Intrinsics and current camera-to-world pose (OpenCV axes) of ``camera`` at the env's image size."""
        check_choice("camera", camera, self.available_cameras())
        model, data = self._model, self._data
        cam_id = model.camera(camera).id
        h, w = self.image_hw
        return CameraParams(
            name=camera,
            width_px=w,
            height_px=h,
            intrinsics=pinhole_intrinsics(float(model.cam_fovy[cam_id]), w, h),
            cam_to_world=mujoco_cam_to_world(data.cam_xpos[cam_id], data.cam_xmat[cam_id]),
        )

    # ------------------------------------------------------------------ state for exact replay
    def get_state(self) -> np.ndarray:
        """Flattened MuJoCo state ``[time, qpos, qvel]`` (robomimic's ``states`` layout), float64."""
        return np.asarray(self._rs.sim.get_state().flatten(), dtype=np.float64)

    def get_model_xml(self) -> str:
        """The compiled model as MJCF (robomimic's ``model_file``), including mu0sim's model fixes."""
        return self._rs.sim.model.get_xml()

    def get_control_state(self) -> dict[str, np.ndarray]:
        """Controller memory that the MuJoCo state lacks: the OSC null-space posture target (joint positions of
        the episode's start) and each gripper's ramped command. With :meth:`get_state` it pins down the future."""
        robot = self._rs.robots[0]
        out = {f"initial_joints/{name}": np.array(c.initial_joint, dtype=np.float64)
               for name, c in robot.part_controllers.items()}
        out.update({f"gripper_command/{arm}": np.array(g.current_action, dtype=np.float64)
                    for arm, g in robot.gripper.items() if hasattr(g, "current_action")})
        return out

    def reset_to_state(self, state: np.ndarray, model_xml: str | None = None,
                       control_state: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Load ``model_xml`` (if given and different) and set the flattened ``state``; returns the observation.

        Starts a new episode at that state (step counter and error flags reset). Replaying an episode's recorded
        actions from its first state reproduces it exactly. From a mid-episode state, also pass the
        :meth:`get_control_state` taken there to continue exactly; without it the controllers start fresh (null
        space anchored at ``state``, gripper command ramps from zero) and the continuation drifts by millimetres."""
        if model_xml is not None and model_xml != self.get_model_xml():
            self._renderer = None
            self._rs.reset_from_xml_string(model_xml)
            self._bind_model()
        state = np.asarray(state, dtype=np.float64)
        expected = 1 + self._model.nq + self._model.nv
        if state.shape != (expected,):
            raise ValueError(f"state must be a flat [time, qpos, qvel] vector of length {expected} for this model, "
                             f"got shape {state.shape}")
        # Start exactly as an episode starts (fresh controllers, gripper ramps, solver warm-start), without drawing
        # from the seeded RNG, then overwrite the state: replaying recorded actions from here is then exact.
        self._rs.deterministic_reset = True
        try:
            self._rs.reset()
        finally:
            self._rs.deterministic_reset = False
        self._rs.sim.set_state_from_flattened(state)
        self._rs.sim.forward()
        # robosuite's OSC pulls the null space towards the joints it was created at (the episode's first state)
        robot = self._rs.robots[0]
        for name, controller in robot.part_controllers.items():
            key = f"initial_joints/{name}"
            controller.update_initial_joints(control_state[key] if control_state and key in control_state
                                             else self._data.qpos[controller.qpos_index])
        for arm, gripper in robot.gripper.items():
            if control_state and f"gripper_command/{arm}" in control_state:
                gripper.current_action = np.array(control_state[f"gripper_command/{arm}"])
        self._steps, self._ended_by_sim_error, self._instability_count = 0, False, 0
        return self._observe(self._rs._get_observations(force_update=True), render=bool(self.cameras))

    def observe_state(self, state: np.ndarray, render: bool = True) -> dict[str, np.ndarray]:
        """Set the flattened state (same model) and return its observation, images freshly rendered unless
        ``render=False``. For re-rendering recorded episodes; unlike :meth:`reset_to_state` it leaves the
        controllers alone."""
        self._rs.sim.set_state_from_flattened(np.asarray(state, dtype=np.float64))
        self._rs.sim.forward()
        return self._observe(self._rs._get_observations(force_update=True), render=render and bool(self.cameras))

    def render_frame(self, camera: str, depth: bool = True, segmentation: bool = True) -> RenderedFrame:
        """Render ``camera`` at the env's image size: RGB, metric depth and per-pixel MuJoCo geom ids (-1 = none)."""
        check_choice("camera", camera, self.available_cameras())
        if self._renderer is None:
            raise ValueError("this env renders nothing (cameras=() and no render_mode); create it with a camera")
        cam_id = self._camera_ids.get(camera, self._model.camera(camera).id)
        h, w = self.image_hw
        return self._renderer.render(cam_id, w, h, rgb=True, depth=depth, segmentation=segmentation)

    def segmentation_label_of_geoms(self, geom_ids: np.ndarray) -> np.ndarray:
        """Segmentation labels (``segmentation_labels`` keys) of MuJoCo geom ids; -1 (no geom) is background."""
        return self._geom_label[np.asarray(geom_ids) + 1]

    @property
    def fingerpad_geoms(self) -> tuple[list[int], list[int]]:
        """(left, right) geom ids of the finger pads (what ``robot0_gripper_width`` measures between)."""
        return self._pad_geoms

    @property
    def eef_site_id(self) -> int:
        """MuJoCo site id of the grip site (``robot0_eef_pos``)."""
        return self._eef_site_id

    @property
    def mj_model(self) -> mujoco.MjModel:
        """The compiled MuJoCo model (read it; do not change it)."""
        return self._model

    @property
    def mj_data(self) -> mujoco.MjData:
        """The live MuJoCo data (body poses ``xpos``/``xmat``, contacts, ...)."""
        return self._data

    @property
    def robosuite_env(self):
        """The wrapped robosuite environment (for what mu0sim does not expose)."""
        return self._rs
