"""Shared pieces of the scripted experts: pose helpers and the expert interface.

Experts are privileged-state controllers: ``reset(env)`` may read fixed task geometry from the unwrapped
``Mu0SimEnv`` (bin or peg positions), ``select_action(obs)`` uses the observation dict. Units: metres, radians;
actions follow ``mu0sim.envs`` (1.0 = 5 cm / 0.5 rad target offset per step, grip -1 open / +1 close).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from mu0sim.envs.robosuite_env import POSITION_SCALE_M, ROTATION_SCALE_RAD

OPEN, CLOSE = -1.0, 1.0


class ScriptedExpert(Protocol):
    """What the collector needs from an expert."""

    def reset(self, env, seed: int | None = None) -> None:
        """Start an episode; ``env`` is the unwrapped ``Mu0SimEnv`` right after ``reset``."""

    def select_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """(7,) float32 action in [-1, 1]."""


def quat_xyzw_to_mat(q: np.ndarray) -> np.ndarray:
    x, y, z, w = np.asarray(q, dtype=np.float64)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def yaw_of_x_axis(rot: np.ndarray) -> float:
    """Heading (rad) of a frame's x axis projected on the world xy plane."""
    return float(np.arctan2(rot[1, 0], rot[0, 0]))


def wrap_angle(angle: float, period: float = 2 * np.pi) -> float:
    """Angle folded into [-period/2, period/2)."""
    return (angle + period / 2) % period - period / 2


def move_action(eef_pos: np.ndarray, target_pos: np.ndarray, grip: float, yaw_rate_rad: float = 0.0,
                gain_per_m: float = 10.0) -> np.ndarray:
    """Proportional step towards ``target_pos`` (metres, world), optional yaw turn (rad this step), gripper command."""
    action = np.zeros(7)
    action[:3] = np.clip((np.asarray(target_pos) - np.asarray(eef_pos)) * gain_per_m, -1, 1)
    action[5] = np.clip(yaw_rate_rad / ROTATION_SCALE_RAD, -1, 1)
    action[6] = grip
    return action


def grasp_progress(eef_pos: np.ndarray, obj_pos: np.ndarray, gripper_width_m: float,
                   xy_tol_m: float = 0.02, z_tol_m: float = 0.015) -> tuple[bool, bool, bool]:
    """How far a grasp of the object at ``obj_pos`` has got, from the state alone (metres):
    ``(over, at_grasp, holding)``: the gripper is within ``xy_tol_m`` of the object in xy; also within ``z_tol_m``
    of its centre height; its fingers are closed on something object-sized near it. Widths measured on the
    two-finger grippers here: open >= 0.077 m, closed on a cube or a can 0.041-0.057 m, closed on nothing
    <= 0.01 m."""
    offset = np.asarray(obj_pos, dtype=np.float64) - np.asarray(eef_pos, dtype=np.float64)
    over = bool(np.linalg.norm(offset[:2]) < xy_tol_m)
    at_grasp = over and abs(offset[2]) < z_tol_m
    holding = 0.02 < gripper_width_m < 0.07 and bool(np.linalg.norm(offset) < 0.03)
    return over, at_grasp, holding


def resumed_pick_phase(phase: str, eef_pos: np.ndarray, obj_pos: np.ndarray, gripper_width_m: float, hover_m: float,
                       grasp_phases: tuple[str, ...] = ("close",), z_tol_m: float = 0.015, lifted: bool = False,
                       over_place: bool = False, down: bool = True) -> str:
    """The phase a pick-and-place expert (phases hover, descend, grasp_phases..., lift, carry, lower, release,
    retreat) takes over in when it ``resume``s from a state it did not produce, given the phase it tracked
    (``phase``; a tracking expert whose own transitions never fired is still in hover while a policy carries the
    object, so what the task has got to is read from the state): releasing or backing off: kept once the fingers
    let go or the object is ``down`` at its release height (a tracker whose lowering timed out behind a policy
    that held the object up is in release, though the object is still high); holding the
    object: lower once it is ``over_place`` (over where it goes, above it), carry once it is ``lifted`` (clear to
    move sideways), else lift (or the tracked closing, its count kept); fingers open around it: the tracked grasp
    phase (its count kept), else the first of ``grasp_phases``; over it below the hover height (or already
    descending): descend; else hover."""
    over, at_grasp, holding = grasp_progress(eef_pos, obj_pos, gripper_width_m, z_tol_m=z_tol_m)
    if phase in ("release", "retreat") and (down or not holding):
        return phase
    if holding:
        if over_place:
            return "lower"
        if lifted:
            return "carry"
        return phase if phase in ("close", "lift") else "lift"
    if at_grasp:
        return phase if phase in grasp_phases else grasp_phases[0]
    if over and (phase == "descend" or eef_pos[2] < obj_pos[2] + hover_m - 0.01):
        return "descend"
    return "hover"


def add_noise(action: np.ndarray, rng: np.random.Generator, noise_std: float) -> np.ndarray:
    """Gaussian noise on the arm part (action units); the gripper command stays binary."""
    out = np.array(action, dtype=np.float64)
    if noise_std > 0:
        out[:6] += rng.normal(0.0, noise_std, 6)
    return np.clip(out, -1, 1).astype(np.float32)


__all__ = ["CLOSE", "OPEN", "POSITION_SCALE_M", "ScriptedExpert", "add_noise", "grasp_progress", "move_action",
           "quat_xyzw_to_mat", "resumed_pick_phase", "wrap_angle", "yaw_of_x_axis"]
