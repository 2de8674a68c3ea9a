"""Stack: pick up the red cube (as in Lift), carry it over the green cube, lower it onto it, release, back off."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mu0sim.envs.robosuite_env import ROTATION_SCALE_RAD
from mu0sim.policies.scripted.common import CLOSE, OPEN, add_noise, move_action, quat_xyzw_to_mat, resumed_pick_phase, \
    wrap_angle, yaw_of_x_axis


def closing_axis_in_eef(env) -> np.ndarray | None:
    """Unit vector (eef frame) along which the fingers close, measured from the finger pads at reset.

    The grippers differ (x axis of the grip site on most arms, y on XArm7); None where it cannot be measured.
    """
    try:
        left, right = env._pad_geoms
        data = env.robosuite_env.sim.data
        site = env.robosuite_env.robots[0].eef_site_id["right"]
        diff = data.geom_xpos[left].mean(axis=0) - data.geom_xpos[right].mean(axis=0)
        axis = np.asarray(data.site_xmat[site]).reshape(3, 3).T @ diff
    except (AttributeError, KeyError, TypeError, IndexError):
        return None
    norm = np.linalg.norm(axis[:2])
    return axis / np.linalg.norm(axis) if norm > 1e-6 else None


def level_action(eef_quat: np.ndarray, gain: float = 0.5, deadband_rad: float = 0.1) -> np.ndarray:
    """World-frame (ax, ay) rotation action that turns the gripper's approach axis (grip-site z) back towards
    straight down when it tilts more than ``deadband_rad``, by ``gain`` of the excess per step. Used while
    approaching an object: with zero rotation actions the orientation drifts (Panda starts ~8 degrees off,
    action noise random-walks it). The deadband keeps the wrists out of the singular exactly-vertical pose
    (Kinova3 tracks positions sluggishly there)."""
    approach = quat_xyzw_to_mat(eef_quat)[:, 2]
    axis = np.cross(approach, [0.0, 0.0, -1.0])  # (-ay, ax, 0): rotating about it takes the approach axis down
    sin = np.linalg.norm(axis)
    excess = np.arctan2(sin, -approach[2]) - deadband_rad
    if sin < 1e-9 or excess <= 0:
        return np.zeros(2)
    return np.clip(gain * excess * axis[:2] / sin / ROTATION_SCALE_RAD, -1, 1)


class Servo:
    """Proportional step towards a target plus a small integral term that removes the steady-state offset of
    arms that sag under gravity (XArm7). Call ``reset`` whenever the target jumps (phase change).

    Args:
        ki: integral gain (fraction of the position error added per step).
        limit_m: bound of the integral term per axis (metres).
        window_m: the integral only accumulates within this distance of the target (metres; no wind-up).
    """

    def __init__(self, ki: float = 0.1, limit_m: float = 0.03, window_m: float = 0.03):
        self.ki, self.limit_m, self.window_m = ki, limit_m, window_m
        self.integral = np.zeros(3)

    def reset(self) -> None:
        self.integral[:] = 0.0

    def __call__(self, eef: np.ndarray, target: np.ndarray, grip: float, yaw_rate_rad: float = 0.0) -> np.ndarray:
        error = np.asarray(target) - eef
        if np.linalg.norm(error) < self.window_m:
            self.integral = np.clip(self.integral + self.ki * error, -self.limit_m, self.limit_m)
        return move_action(eef, np.asarray(target) + self.integral, grip, yaw_rate_rad)


@dataclass
class StackExpert:
    """Scripted Stack expert (cube poses from the ``object`` observation).

    Phases: hover over the red cube and turn the gripper to the cube's yaw (choosing, of the two finger
    directions that fit the cube, the one that keeps the fingers off a nearby green cube), descend, settle (open,
    holding the grasp pose), close, lift
    straight up, carry the cube (as measured in the hand, so an off-centre grasp is compensated) over the green
    cube, lower it until it nearly touches, open, and move up out of the way. Every phase ends on a position
    threshold or a step timeout; a cube that slips out of the hand is grasped again.

    Args:
        hover_m: height above the red cube's centre to align at (metres).
        settle_steps: steps spent still and open at the grasp pose before closing. A pause makes "close now" a
            function of the state (at the cube, not moving) rather than of the time since the descent began, which a
            cloned policy that descends a little slower than its demos gets wrong (it closes above the cube).
        close_steps: steps spent closing before lifting.
        carry_clearance_m: gap between the carried cube's bottom and the green cube's top while carrying (metres).
        release_gap_m: gap between the cubes at which the gripper opens (metres).
        open_steps: steps spent opening before backing off.
        retreat_m: height above the stacked cube's centre to back off to (metres).
        noise_std: std of Gaussian action noise on the arm part (action units), for diverse demonstrations.
        approach_jitter_m: std of a random xy offset (metres) of the first hover point and of the first carry
            waypoint (randomized approach paths).
    """

    hover_m: float = 0.08
    settle_steps: int = 0
    close_steps: int = 12
    carry_clearance_m: float = 0.03
    release_gap_m: float = 0.006
    open_steps: int = 6
    retreat_m: float = 0.12
    noise_std: float = 0.0
    approach_jitter_m: float = 0.0
    _rng: np.random.Generator = field(default_factory=np.random.default_rng, repr=False)

    def reset(self, env, seed: int | None = None) -> None:
        layout = env.object_layout
        self._a_pos, self._a_quat, self._b_pos = layout["cubeA_pos"], layout["cubeA_quat"], layout["cubeB_pos"]
        rs = env.robosuite_env
        # half sizes (metres) of the red (A) and green (B) cubes, from the model
        self._a_half = float(np.max(rs.cubeA.size))
        self._b_half = float(np.max(rs.cubeB.size))
        axis = closing_axis_in_eef(env)
        self._closing_yaw_in_eef = 0.0 if axis is None else float(np.arctan2(axis[1], axis[0]))
        self._rng = np.random.default_rng(seed)
        self._servo = Servo()
        self._phase, self._count, self._phase_steps = "hover", 0, 0
        self._hover_offset = np.append(self._rng.normal(0.0, self.approach_jitter_m, 2), self.hover_m)
        self._carry_offset = self._rng.normal(0.0, self.approach_jitter_m, 2)

    def resume(self, obs: dict[str, np.ndarray]) -> None:
        """Take over from a state this expert did not produce (the ground-truth oracle in a learned policy's
        episode): the phase follows from the state, as far as the task has got, and the servo starts fresh (its
        integral came from motions this expert did not command). Releasing or backing off: kept. Holding the red
        cube: lower once it is over the green one, carry once it is lifted to about the carrying height, else
        lift. Fingers open around it: settle or close (the tracked count kept). Over it below the hover height (or
        already descending): descend. Else: hover, straight over the cube."""
        eef = obs["robot0_eef_pos"].astype(np.float64)
        cube_a = obs["object"][self._a_pos].astype(np.float64)
        cube_b = obs["object"][self._b_pos].astype(np.float64)
        stack_z = cube_b[2] + self._b_half + self._a_half  # red cube centre when resting on the green one
        grasp_phases = ("settle", "close") if self.settle_steps > 0 else ("close",)
        phase = resumed_pick_phase(self._phase, eef, cube_a, float(obs["robot0_gripper_width"][0]), self.hover_m,
                                   grasp_phases, z_tol_m=0.012,
                                   lifted=bool(cube_a[2] > stack_z + self.carry_clearance_m - 0.02),
                                   over_place=bool(np.linalg.norm((cube_a - cube_b)[:2]) < 0.01
                                                   and cube_a[2] > stack_z))
        if phase != self._phase:
            self._to(phase)
        self._servo.reset()
        if phase == "hover":
            self._hover_offset[:2] = 0.0

    def _to(self, phase: str) -> None:
        self._phase, self._phase_steps, self._count = phase, 0, 0
        self._servo.reset()

    def _grasp_yaw_error(self, obs, cube_a: np.ndarray, cube_b: np.ndarray) -> float:
        """Yaw (rad) to turn the gripper by so that the fingers close across two faces of the red cube."""
        closing_yaw = yaw_of_x_axis(quat_xyzw_to_mat(obs["robot0_eef_quat"])) + self._closing_yaw_in_eef
        cube_yaw = yaw_of_x_axis(quat_xyzw_to_mat(obs["object"][self._a_quat]))
        nearest = wrap_angle(cube_yaw - closing_yaw, np.pi / 2)
        to_b = cube_b[:2] - cube_a[:2]
        if np.linalg.norm(to_b) > 0.12:
            return nearest
        # green cube close by: the open fingers must not land on it, so close across the axis most
        # perpendicular to the direction of the green cube (fingers are symmetric every half turn)
        b_yaw = np.arctan2(to_b[1], to_b[0])
        options = [wrap_angle(cube_yaw + k * np.pi / 2 - closing_yaw, np.pi) for k in (0, 1)]
        clash = [abs(np.cos(closing_yaw + e - b_yaw)) for e in options]
        return options[int(np.argmin(clash))] if abs(clash[0] - clash[1]) > 0.15 else nearest

    def select_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        eef = obs["robot0_eef_pos"].astype(np.float64)
        cube_a = obs["object"][self._a_pos].astype(np.float64)
        cube_b = obs["object"][self._b_pos].astype(np.float64)
        self._phase_steps += 1
        yaw_error = 0.0
        stack_z = cube_b[2] + self._b_half + self._a_half  # red cube centre when resting on the green one
        carry_z = stack_z + self.carry_clearance_m
        if self._phase in ("lift", "carry", "lower") and np.linalg.norm(eef - cube_a) > 0.05:
            self._to("regrasp")  # the cube slipped out: open, back off upwards and start over
        if self._phase == "regrasp":
            if eef[2] > cube_a[2] + self.hover_m or self._phase_steps > 20:
                self._to("hover")
                self._hover_offset[:2] = 0.0
            else:
                return add_noise(move_action(eef, eef + [0, 0, 0.05], OPEN), self._rng, self.noise_std)
        if self._phase in ("hover", "descend"):
            yaw_error = self._grasp_yaw_error(obs, cube_a, cube_b)
        if self._phase == "hover":
            target = cube_a + self._hover_offset
            if np.linalg.norm(cube_a + [0, 0, self.hover_m] - eef) < 0.012 and abs(yaw_error) < 0.05:
                self._to("descend")
            elif np.linalg.norm(target - eef) < 0.01 or self._phase_steps > 60:
                self._hover_offset[:2] = 0.0  # jittered waypoint reached: now centre over the cube
        if self._phase == "descend":
            target = cube_a
            if abs(eef[2] - cube_a[2]) < 0.008 and np.linalg.norm((cube_a - eef)[:2]) < 0.01:
                self._to("settle" if self.settle_steps > 0 else "close")
            elif self._phase_steps > 50:
                self._to("hover")  # blocked: realign from above
                self._hover_offset[:2] = 0.0
                yaw_error = 0.0
        if self._phase == "settle":
            self._count += 1
            if self._count >= self.settle_steps:
                self._to("close")
            return add_noise(move_action(eef, cube_a, OPEN), self._rng, 0.0)
        if self._phase == "close":
            self._count += 1
            if self._count >= self.close_steps:
                self._to("lift")
            return add_noise(move_action(eef, cube_a, CLOSE), self._rng, 0.0)
        if self._phase == "lift":
            target = eef + [0, 0, carry_z - cube_a[2]]
            if cube_a[2] > carry_z - 0.01 or self._phase_steps > 40:
                self._to("carry")
        if self._phase == "carry":
            # move the cube (not the gripper) over the green cube; first via a jittered waypoint
            cube_target = np.array([*(cube_b[:2] + self._carry_offset), carry_z])
            target = eef + (cube_target - cube_a)
            if np.linalg.norm(cube_target - cube_a) < 0.01 or self._phase_steps > 60:
                if np.any(self._carry_offset):
                    self._carry_offset[:] = 0.0
                    self._phase_steps = 0
                elif np.linalg.norm((cube_target - cube_a)[:2]) < 0.005 or self._phase_steps > 60:
                    self._to("lower")
        if self._phase == "lower":
            cube_target = np.array([*cube_b[:2], stack_z + self.release_gap_m])
            target = eef + (cube_target - cube_a)
            if cube_a[2] < stack_z + self.release_gap_m + 0.003 or self._phase_steps > 40:
                self._to("release")
        if self._phase == "release":
            self._count += 1
            if self._count >= self.open_steps:
                self._to("retreat")
            return add_noise(move_action(eef, eef, OPEN), self._rng, 0.0)
        if self._phase == "retreat":
            target = np.array([eef[0], eef[1], max(eef[2], stack_z + self.retreat_m)])
        grip = OPEN if self._phase in ("hover", "descend", "retreat") else CLOSE
        action = self._servo(eef, target, grip, yaw_error)
        if self._phase in ("hover", "descend"):
            action[3:5] = level_action(obs["robot0_eef_quat"])  # grasp with the fingers vertical
        return add_noise(action, self._rng, self.noise_std)
