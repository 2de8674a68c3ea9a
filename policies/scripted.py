"""Scripted experts: privileged-state controllers that solve a task through mu0sim's shared 7-D action space.

They read only the observation dict (end-effector pose, gripper width, ``object`` state), so one script serves
every robot. Units: positions in metres, angles in radians; actions follow ``mu0sim.envs`` (1.0 = 5 cm / 0.5 rad).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mu0sim.envs.robosuite_env import POSITION_SCALE_M, ROTATION_SCALE_RAD

OPEN, CLOSE = -1.0, 1.0


def _quat_xyzw_to_mat(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _yaw_of_x_axis(rot: np.ndarray) -> float:
    return float(np.arctan2(rot[1, 0], rot[0, 0]))


def _wrap_quarter_turn(angle: float) -> float:
    """Angle folded into [-pi/4, pi/4): a cube looks the same every quarter turn about z."""
    return (angle + np.pi / 4) % (np.pi / 2) - np.pi / 4


@dataclass
class LiftExpert:
    """Hover above the cube, turn the gripper to the cube's yaw, descend, close, lift.

    Args:
        hover_m: height above the cube centre to align at.
        grasp_depth_m: how far below the cube centre the grip site goes before closing.
        close_steps: steps spent closing before lifting.
        gain: proportional gain from position error (metres) to action units.
        noise_std: std of Gaussian action noise (action units), for diverse demonstrations.
        seed: seed of the noise generator.
    """

    hover_m: float = 0.08
    grasp_depth_m: float = 0.0
    close_steps: int = 12
    gain: float = 1.0 / POSITION_SCALE_M * 0.5
    noise_std: float = 0.0
    seed: int | None = None

    def __post_init__(self):
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        self._phase, self._closing = "hover", 0
        self._rng = np.random.default_rng(self.seed if seed is None else seed)

    def select_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        eef = obs["robot0_eef_pos"].astype(np.float64)
        cube = obs["object"][:3].astype(np.float64)
        cube_rot = _quat_xyzw_to_mat(obs["object"][3:7].astype(np.float64))
        eef_rot = _quat_xyzw_to_mat(obs["robot0_eef_quat"].astype(np.float64))
        yaw_error = _wrap_quarter_turn(_yaw_of_x_axis(cube_rot) - _yaw_of_x_axis(eef_rot))

        grip, turn = OPEN, yaw_error
        if self._phase == "hover":
            target = cube + [0, 0, self.hover_m]
            if np.linalg.norm(target - eef) < 0.01 and abs(yaw_error) < 0.05:
                self._phase = "descend"
        if self._phase == "descend":
            target = cube + [0, 0, -self.grasp_depth_m]
            if abs(eef[2] - target[2]) < 0.008 and np.linalg.norm((target - eef)[:2]) < 0.01:
                self._phase = "close"
        if self._phase == "close":
            target, grip = cube + [0, 0, -self.grasp_depth_m], CLOSE
            self._closing += 1
            if self._closing >= self.close_steps:
                self._phase = "lift"
        if self._phase == "lift":
            target, grip, turn = eef + [0, 0, 0.05], CLOSE, 0.0
            target[:2] = eef[:2]

        action = np.zeros(7)
        action[:3] = np.clip((target - eef) * self.gain, -1, 1)
        action[5] = np.clip(turn / ROTATION_SCALE_RAD, -1, 1)
        if self.noise_std > 0:
            action[:6] += self._rng.normal(0.0, self.noise_std, 6)
        action[6] = grip
        return np.clip(action, -1, 1).astype(np.float32)
