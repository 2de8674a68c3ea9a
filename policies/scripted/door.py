"""Door: grasp the lever handle from the front, turn it until the latch clears, pull the door open round its hinge.

robosuite's Door has a spring latch: the lever handle (horizontal, in front of the panel) must be turned by about
1.25 rad about the door normal before the panel can swing; the door opens towards the robot, round a vertical
hinge, and counts as open at 0.3 rad. The gripper faces the door (approach axis horizontal, into the panel,
yawed per arm), closes on the lever with its fingers above and below it, rolls with the lever round the latch
axis, then carries the grasp round the hinge. The wrist's turns are planned, not left to OSC: big orientation
errors make the arms wander into joint limits and singularities. Fixed geometry (hinge and latch axes, where the
fingers close) is read once in ``reset``; a missed or lost grasp is retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mu0sim.envs.robosuite_env import ROTATION_SCALE_RAD
from mu0sim.policies.scripted.common import CLOSE, OPEN, add_noise, quat_xyzw_to_mat

# Per-arm choices that keep the wrist clear of joint limits, singularities and self-collision while it turns the
# lever: (approach yaw in rad, see ``DoorExpert.approach_yaw_rad``; roll sign, +1 turns the lever tip down, -1 up,
# the latch opens either way).
ROBOT_CHOICES: dict[str, tuple[float, float]] = {
    "Panda": (-0.4, -1.0),  # tip down would run the last joint into its limit
    "Sawyer": (-0.8, -1.0),
    "IIWA": (0.0, 1.0),
    "UR5e": (-0.8, 1.0),  # facing the door square on (yaw 0) puts the UR5e's wrist in its singularity
    "Kinova3": (0.0, 1.0),
    "XArm7": (0.0, 1.0),
}
DEFAULT_CHOICE = (-0.4, 1.0)


def axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix of ``angle`` (rad) about the unit vector ``axis`` (Rodrigues)."""
    x, y, z = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def rotation_vector(rot: np.ndarray) -> np.ndarray:
    """Axis-angle vector (rad) of a rotation matrix (matrix logarithm), robust near 0 and pi."""
    cos = np.clip((np.trace(rot) - 1) / 2, -1.0, 1.0)
    angle = np.arccos(cos)
    if angle < 1e-6:
        return np.zeros(3)
    if angle > np.pi - 1e-3:  # near a half turn: axis from the symmetric part
        sym = (rot + np.eye(3)) / 2
        axis = sym[np.argmax(np.diag(sym))]
        axis = axis / np.linalg.norm(axis)
        return axis * angle
    vec = np.array([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]])
    return vec / (2 * np.sin(angle)) * angle


def pose_action(eef_pos: np.ndarray, eef_rot: np.ndarray, target_pos: np.ndarray, target_rot: np.ndarray,
                grip: float, gain_per_m: float = 10.0, rot_gain: float = 1.0) -> np.ndarray:
    """Proportional step towards a full pose: position (metres, world) and orientation (rotation matrix, world)."""
    action = np.zeros(7)
    action[:3] = np.clip((np.asarray(target_pos) - np.asarray(eef_pos)) * gain_per_m, -1, 1)
    action[3:6] = np.clip(rot_gain * rotation_vector(target_rot @ eef_rot.T) / ROTATION_SCALE_RAD, -1, 1)
    action[6] = grip
    return action


def closing_axis_index(env) -> int:
    """Which grip-site axis (0: x, 1: y) the fingers close along, measured from the finger pads at reset."""
    rs = env.robosuite_env
    model, data = rs.sim.model, rs.sim.data
    if env.robot_spec.fingerpad_geoms is not None:
        left, right = env.robot_spec.fingerpad_geoms
    else:
        gripper = rs.robots[0].gripper["right"]
        left, right = gripper.important_geoms["left_fingerpad"], gripper.important_geoms["right_fingerpad"]
    pads = [np.mean([data.geom_xpos[model.geom_name2id(n)] for n in side], axis=0) for side in (left, right)]
    eef_rot = data.site_xmat[rs.robots[0].eef_site_id["right"]].reshape(3, 3)
    across = eef_rot.T @ (pads[0] - pads[1])
    return int(np.argmax(np.abs(across[:2])))


def grasp_frame(approach: np.ndarray, closing: np.ndarray, closing_index: int) -> np.ndarray:
    """Grip-site rotation whose z axis is ``approach`` and whose finger-closing axis (x or y) is ``closing``."""
    z = approach / np.linalg.norm(approach)
    c = closing - z * (closing @ z)
    c = c / np.linalg.norm(c)
    if closing_index == 0:
        x, y = c, np.cross(z, c)
    else:
        y = c
        x = np.cross(y, z)
    return np.stack([x, y, z], axis=1)


@dataclass
class DoorExpert:
    """Scripted Door expert (handle and hinge state from the ``object`` observation, door geometry at reset).

    Args:
        grasp_radius_m: distance along the lever from the latch axis to the grasp point (the lever is 0.15 m long).
        approach_yaw_rad: angle between the approach axis and the door normal (rad), positive turning the
            approach towards the lever's axis end; per-arm default (``ROBOT_CHOICES``) if None.
        roll_sign: +1 turns the lever tip down, -1 up; per-arm default (``ROBOT_CHOICES``) if None.
        standoff_m: distance back along the approach axis of the pre-grasp point.
        orient_rate_rad: largest per-step change (rad) of the commanded orientation while turning to the grasp.
        grasp_depth_m: how far past the lever's centre line the grip site is pushed (towards the door).
        close_steps: steps spent closing on the lever before turning it.
        turn_rad: lever angle (rad) commanded while turning and pulling; the latch clears at ~1.25 rad.
        turn_done_rad: measured lever angle (rad) at which pulling starts.
        turn_rate_rad: largest per-step increase of the commanded lever angle (rad).
        pull_lead_rad: how far ahead of the measured door angle the pull target runs (rad).
        miss_width_m: finger-pad distance (m) below which the closed gripper holds nothing (the lever is 0.04 m
            thick): the expert lets go and tries again.
        max_retries: how many times it starts over after missing or losing the lever.
        noise_std: std of Gaussian action noise (action units), for diverse demonstrations.
        approach_jitter_m: std of a random offset of the pre-grasp point (randomized approach), metres.
    """

    grasp_radius_m: float = 0.10
    approach_yaw_rad: float | None = None
    roll_sign: float | None = None
    standoff_m: float = 0.10
    orient_rate_rad: float = 0.1
    grasp_depth_m: float = 0.0
    close_steps: int = 12
    turn_rad: float = 1.8
    turn_done_rad: float = 1.25
    turn_rate_rad: float = 0.08
    pull_lead_rad: float = 0.12
    miss_width_m: float = 0.032
    max_retries: int = 2
    noise_std: float = 0.0
    approach_jitter_m: float = 0.0
    _rng: np.random.Generator = field(default_factory=np.random.default_rng, repr=False)

    def reset(self, env, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)
        layout = env.object_layout
        self._handle_qpos, self._hinge_qpos = layout["handle_qpos"], layout["hinge_qpos"]
        rs = env.robosuite_env
        model, data = rs.sim.model, rs.sim.data
        hinge = model.joint_name2id(rs.door.naming_prefix + "hinge")
        latch = model.joint_name2id(rs.door.naming_prefix + "latch_joint")
        self._hinge_pos, self._hinge_axis = data.xanchor[hinge].copy(), data.xaxis[hinge].copy()
        self._latch_pos, self._latch_axis = data.xanchor[latch].copy(), data.xaxis[latch].copy()
        handle = data.site_xpos[rs.door_handle_site_id].copy()
        lever = handle - self._latch_pos
        lever -= self._latch_axis * (lever @ self._latch_axis)
        # the lever lies in front of the panel: its offset along the latch axis is where the grasp point sits
        out = -self._latch_axis  # door normal, pointing out of the panel towards the robot
        centre = self._latch_pos + out * ((handle - self._latch_pos) @ out)
        self._grasp0 = centre + lever / np.linalg.norm(lever) * self.grasp_radius_m - out * self.grasp_depth_m
        yaw, self._roll_sign = ROBOT_CHOICES.get(env.robot_spec.name, DEFAULT_CHOICE)
        yaw = yaw if self.approach_yaw_rad is None else self.approach_yaw_rad
        self._roll_sign = self._roll_sign if self.roll_sign is None else float(np.sign(self.roll_sign))
        along = lever / np.linalg.norm(lever)
        self._approach = -out * np.cos(yaw) - along * np.sin(yaw)
        # fingers above and below the lever; of the two such grasps (half a turn apart about the approach axis)
        # take the one nearer the current gripper orientation: a pure swing, no twist of the wrist
        rot = grasp_frame(self._approach, np.array([0.0, 0.0, 1.0]), closing_axis_index(env))
        eef_rot = data.site_xmat[rs.robots[0].eef_site_id["right"]].reshape(3, 3)
        flipped = rot @ np.diag([-1.0, -1.0, 1.0])
        nearer = np.trace(flipped @ eef_rot.T) > np.trace(rot @ eef_rot.T)
        self._grasp_rot0 = flipped if nearer else rot
        self._phase, self._steps, self._retries = "hover", 0, 0
        self._rot_cmd = None
        self._turn_cmd = 0.0
        self._jitter = self._rng.normal(0.0, self.approach_jitter_m, 3)

    # ---------------------------------------------------------------- geometry of the moving grasp
    def _grasp_pose(self, lever_angle: float, door_angle: float) -> tuple[np.ndarray, np.ndarray]:
        """Where the grasp point and gripper are with the lever turned and the door swung by these angles."""
        turn = axis_angle_matrix(self._latch_axis, self._roll_sign * lever_angle)
        swing = axis_angle_matrix(self._hinge_axis, door_angle)
        pos = self._latch_pos + turn @ (self._grasp0 - self._latch_pos)
        pos = self._hinge_pos + swing @ (pos - self._hinge_pos)
        return pos, swing @ turn @ self._grasp_rot0

    def _orient_step(self, rot: np.ndarray) -> np.ndarray:
        """Commanded orientation moved towards the grasp orientation by at most ``orient_rate_rad``."""
        if self._rot_cmd is None:
            self._rot_cmd = rot
        step = rotation_vector(self._grasp_rot0 @ self._rot_cmd.T)
        angle = float(np.linalg.norm(step))
        if angle > 1e-9:
            self._rot_cmd = axis_angle_matrix(step, min(angle, self.orient_rate_rad)) @ self._rot_cmd
        return self._rot_cmd

    def _retry(self) -> None:
        """The lever slipped out (or was missed): let go, back off along the gripper's axis, start over."""
        self._phase, self._steps, self._turn_cmd, self._rot_cmd = "backoff", 0, 0.0, None
        self._retries += 1

    def select_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        eef = obs["robot0_eef_pos"].astype(np.float64)
        rot = quat_xyzw_to_mat(obs["robot0_eef_quat"])
        width = float(obs["robot0_gripper_width"][0])
        lever = float(obs["object"][self._handle_qpos][0]) * self._roll_sign
        door = float(obs["object"][self._hinge_qpos][0])
        self._steps += 1
        grip, noise = CLOSE, self.noise_std
        if self._phase == "backoff":
            target, target_rot, grip = eef - rot[:, 2] * 0.05, rot, OPEN
            if self._steps >= 8:
                self._phase, self._steps = "hover", 0
        elif self._phase == "hover":
            # turn towards the grasp orientation at a bounded rate: big sudden rotation errors make OSC wander
            target, target_rot = self._grasp0 - self._approach * self.standoff_m + self._jitter, self._orient_step(rot)
            grip = OPEN
            aligned = np.linalg.norm(rotation_vector(self._grasp_rot0 @ rot.T)) < 0.08
            if (np.linalg.norm(target - eef) < 0.015 and aligned) or self._steps > 80:
                if np.any(self._jitter) and self._steps <= 80:
                    self._jitter[:] = 0.0  # jittered waypoint reached: now line up with the lever
                else:
                    self._jitter[:] = 0.0
                    self._phase, self._steps = "reach", 0
        elif self._phase == "reach":
            target, target_rot, grip = self._grasp0, self._grasp_rot0, OPEN
            if np.linalg.norm(target - eef) < 0.006 or self._steps > 40:
                self._phase, self._steps = "close", 0
        elif self._phase == "close":
            target, target_rot, noise = self._grasp0, self._grasp_rot0, 0.0
            if self._steps >= self.close_steps:
                self._phase, self._steps = "turn", 0
                if width < self.miss_width_m and self._retries < self.max_retries:
                    self._retry()
        elif self._phase == "turn":
            self._turn_cmd = min(self._turn_cmd + self.turn_rate_rad, self.turn_rad)
            target, target_rot = self._grasp_pose(self._turn_cmd, 0.0)
            if lever > self.turn_done_rad:
                self._phase, self._steps = "pull", 0
            elif (width < self.miss_width_m or self._steps > 40) and self._retries < self.max_retries:
                self._retry()
        else:  # pull: keep the lever turned and carry the grasp round the hinge
            target, target_rot = self._grasp_pose(self.turn_rad, door + self.pull_lead_rad)
            if width < self.miss_width_m and door < 0.15 and self._retries < self.max_retries:
                self._retry()
        return add_noise(pose_action(eef, rot, target, target_rot, grip), self._rng, noise)
