"""PickPlaceCan: grasp the can around its middle, lift it clear of the bin walls, carry it over its target in
bin 2, lower it, release, move up."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mu0sim.policies.scripted.common import CLOSE, OPEN, add_noise, move_action, quat_xyzw_to_mat, resumed_pick_phase, \
    wrap_angle, yaw_of_x_axis
from mu0sim.policies.scripted.stack import Servo, closing_axis_in_eef, level_action


# resume(): a held can this close (xy, metres) to the placing point is lowered; it is not part of the expert's
# options, which describe the demonstrations, and resume() never runs while collecting them
RESUME_PLACE_TOL_M = 0.03


@dataclass
class PickPlaceCanExpert:
    """Scripted PickPlaceCan expert (can position from the ``object`` observation, bins from the task geometry).

    Phases: hover over the can (turning the gripper so that the open fingers stay off nearby bin walls; a can is
    round, so no other yaw matters), centre over it, descend to its middle, close, lift until the can clears the
    bin walls, carry it over its target placement in bin 2, lower it until it almost touches the floor, open,
    move up. Every phase ends on a position threshold or a step timeout; a can that slips out of the hand is
    grasped again. An arm that stalls at the edge of its reach while carrying or lowering (XArm7 over bin 2's far
    corner) places the can a little closer to itself, still inside the target region.

    Args:
        hover_m: height above the can's centre to align at (metres).
        close_steps: steps spent closing before lifting.
        carry_z_m: height (world z, metres) of the gripper while carrying the can between the bins.
        release_height_m: height of the can's bottom above the bin floor at which the gripper opens (metres).
        open_steps: steps spent opening before moving up.
        wall_margin_m: bin walls closer to the can's centre than this (metres) make the gripper turn its fingers
            parallel to them.
        align_tol_m: xy misalignment (metres) above which the gripper stops descending over the can's top
            (Sawyer's open fingers clear the can by ~5 mm a side).
        place_shift_m: distance (metres) from the target towards the robot's base at which to place the can.
        max_reach_shift_m: how far (metres) the placing point may move from the target towards the robot's base in
            all, when the arm stalls; it never leaves the target region.
        reach_step_m: how far (metres) the placing point moves towards the robot's base per stall.
        max_carry_tilt_rad: gripper tilt from vertical (rad) beyond which it is levelled while carrying (with zero
            rotation actions the arms drift; XArm7 tilts by ~50 degrees and may then wedge the can between its
            open fingers).
        noise_std: std of Gaussian action noise on the arm part (action units), for diverse demonstrations.
        approach_jitter_m: std of a random xy offset (metres) of the first hover point and of the first waypoint
            over the target (randomized approach paths).
    """

    hover_m: float = 0.1
    close_steps: int = 12
    carry_z_m: float = 1.02
    release_height_m: float = 0.015
    open_steps: int = 6
    wall_margin_m: float = 0.11
    align_tol_m: float = 0.005
    place_shift_m: float = 0.0
    max_reach_shift_m: float = 0.06
    reach_step_m: float = 0.02
    max_carry_tilt_rad: float = 0.35
    noise_std: float = 0.0
    approach_jitter_m: float = 0.0
    _rng: np.random.Generator = field(default_factory=np.random.default_rng, repr=False)

    def reset(self, env, seed: int | None = None) -> None:
        layout = env.object_layout
        self._can_pos = layout["Can_pos"]
        rs = env.robosuite_env
        self._target = np.array(rs.target_bin_placements[rs.object_id], dtype=np.float64)
        self._bin1, self._bin_size = np.asarray(rs.bin1_pos, dtype=np.float64), np.asarray(rs.bin_size, np.float64)
        self._floor_z = float(rs.bin2_pos[2])
        # where the can may rest and count as placed (robosuite's not_in_bin), less a margin for the can's radius
        # and the bin's walls
        low = np.array(rs.bin2_pos[:2], dtype=np.float64)
        low -= np.where(self._target[:2] < low, self._bin_size[:2] / 2, 0.0)
        margin = 0.04
        self._place_box = (low + margin, low + self._bin_size[:2] / 2 - margin)
        to_base = np.asarray(rs.robots[0].base_pos, dtype=np.float64)[:2] - self._target[:2]
        self._to_base = to_base / np.linalg.norm(to_base)
        self._reach_shift = self.place_shift_m
        axis = closing_axis_in_eef(env)
        self._closing_yaw_in_eef = 0.0 if axis is None else float(np.arctan2(axis[1], axis[0]))
        self._rng = np.random.default_rng(seed)
        self._servo = Servo()
        self._to("hover")
        self._can_half_h: float | None = None
        self._grasp_yaw: float | None = None
        self._hover_offset = np.append(self._rng.normal(0.0, self.approach_jitter_m, 2), self.hover_m)
        self._place_offset = self._rng.normal(0.0, self.approach_jitter_m, 2)

    def resume(self, obs: dict[str, np.ndarray]) -> None:
        """Take over from a state this expert did not produce (the ground-truth oracle in a learned policy's
        episode): the phase follows from the state, as far as the task has got, and the servo, the stall windows
        and the placing point start fresh (what they integrated came from motions this expert did not command: a
        tracker "stalls" whenever the policy does not follow it, and each stall moved the point 2 cm closer).
        Releasing or backing off: kept once the can is down or let go. Holding the can: lower once it is within
        ``RESUME_PLACE_TOL_M`` of the placing point, carry once the gripper is at about the carrying height, else
        lift. Fingers open around the can: close (the tracked count of closing steps kept). Over the can below the
        hover height (or already descending): descend. Else: hover, straight over the can. A genuine stall (an
        arm at the edge of its reach) shows again within the forecast's own steps."""
        eef = obs["robot0_eef_pos"].astype(np.float64)
        can = obs["object"][self._can_pos].astype(np.float64)
        self._reach_shift = self.place_shift_m  # its stalls were a policy's, not the arm's reach
        release_z = self._release_z(can)
        # within a few cm: lowering also closes the last of the gap in xy, and a policy lowering the can near the
        # point must not be told to lift it back to the carrying height first
        over_place = np.linalg.norm(self._place_point() - can[:2]) < RESUME_PLACE_TOL_M and can[2] > release_z
        phase = resumed_pick_phase(self._phase, eef, can, float(obs["robot0_gripper_width"][0]), self.hover_m,
                                   lifted=bool(eef[2] > self.carry_z_m - 0.02), over_place=bool(over_place),
                                   down=bool(can[2] < release_z + 0.01))
        if phase != self._phase:
            self._to(phase)
        self._servo.reset()
        self._errors.clear()
        if phase == "hover":
            self._hover_offset[:2] = 0.0
            self._grasp_yaw = None  # for the can where it is now

    def _to(self, phase: str) -> None:
        self._phase, self._phase_steps, self._count, self._centred = phase, 0, 0, False
        self._errors: list[float] = []
        self._servo.reset()

    def _release_z(self, can: np.ndarray) -> float:
        """Height (world z, metres) of the can's centre when the gripper lets go; the can's half height is measured
        the first time the expert sees it (resting: its centre above the bin floor)."""
        if self._can_half_h is None:
            self._can_half_h = float(can[2] - self._floor_z - 0.02)
        return self._floor_z + 0.02 + self._can_half_h + self.release_height_m

    def _place_point(self) -> np.ndarray:
        """Where to put the can down (xy): the target, moved towards the robot if it proved out of reach."""
        return np.clip(self._target[:2] + self._reach_shift * self._to_base, *self._place_box)

    def _move_place_closer(self) -> bool:
        """The arm stalls at the edge of its reach: place the can ``reach_step_m`` closer to the robot, still inside
        the target region. False once ``max_reach_shift_m`` is used up."""
        if self._reach_shift >= self.max_reach_shift_m:
            return False
        self._reach_shift += self.reach_step_m
        return True

    def _stalled(self, error: float) -> bool:
        """True when ``error`` (metres) shrank by less than 2 mm over the last 8 steps (the window then restarts)."""
        self._errors.append(error)
        if len(self._errors) > 8 and self._errors[-9] - error < 0.002:
            self._errors.clear()
            return True
        return False

    def _wall_push(self, can: np.ndarray) -> np.ndarray:
        """Sum of inward normals (xy) of bin-1 walls nearer than ``wall_margin_m``, weighted by closeness."""
        half = self._bin_size[:2] / 2
        push = np.zeros(2)
        for k in (0, 1):
            low, high = self._bin1[k] - half[k], self._bin1[k] + half[k]
            push[k] += max(0.0, self.wall_margin_m - (can[k] - low)) - max(0.0, self.wall_margin_m - (high - can[k]))
        return push

    def _yaw_error(self, obs, can: np.ndarray) -> float:
        closing_yaw = yaw_of_x_axis(quat_xyzw_to_mat(obs["robot0_eef_quat"])) + self._closing_yaw_in_eef
        if self._grasp_yaw is None:
            push = self._wall_push(can)
            if np.linalg.norm(push) > 1e-6:  # fingers across the push direction, i.e. parallel to the walls
                self._grasp_yaw = float(np.arctan2(push[1], push[0]) + np.pi / 2)
            else:
                self._grasp_yaw = closing_yaw
        return wrap_angle(self._grasp_yaw - closing_yaw, np.pi)  # two fingers: symmetric every half turn

    def select_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        eef = obs["robot0_eef_pos"].astype(np.float64)
        can = obs["object"][self._can_pos].astype(np.float64)
        self._phase_steps += 1
        yaw_error = 0.0
        release_z = self._release_z(can)
        if self._phase in ("lift", "carry", "lower") and np.linalg.norm(eef - can) > 0.06:
            self._to("regrasp")  # the can slipped out: open, back off upwards and start over
        if self._phase == "retreat" and can[2] > release_z + 0.03 and np.linalg.norm(eef - can) < 0.05:
            self._to("lower")  # the can came up with the open fingers (wedged): put it down again
        if self._phase == "regrasp":
            if eef[2] > can[2] + self.hover_m or self._phase_steps > 20:
                self._to("hover")
                self._hover_offset[:2] = 0.0
                self._grasp_yaw = None
            else:
                return add_noise(move_action(eef, eef + [0, 0, 0.05], OPEN), self._rng, self.noise_std)
        if self._phase in ("hover", "descend"):
            yaw_error = self._yaw_error(obs, can)
        if self._phase == "hover":
            target = can + self._hover_offset
            if np.linalg.norm(can + [0, 0, self.hover_m] - eef) < 0.015 and abs(yaw_error) < 0.08:
                self._to("descend")
            elif np.linalg.norm(target - eef) < 0.015 or self._phase_steps > 60:
                self._hover_offset[:2] = 0.0  # jittered waypoint reached: now centre over the can
        if self._phase == "descend":
            target = can.copy()
            if not self._centred and eef[2] > can[2] + self._can_half_h:
                if np.linalg.norm((can - eef)[:2]) > self.align_tol_m:
                    target[2] = eef[2]  # above the can top: centre first (the fingers open little wider than it)
                else:
                    self._centred = True
            if abs(eef[2] - can[2]) < 0.01 and np.linalg.norm((can - eef)[:2]) < 0.01:
                self._to("close")
            elif self._phase_steps > 50:
                self._to("hover")  # blocked: realign from above
                self._hover_offset[:2] = 0.0
        if self._phase == "close":
            self._count += 1
            if self._count >= self.close_steps:
                self._to("lift")
            return add_noise(move_action(eef, can, CLOSE), self._rng, 0.0)
        if self._phase == "lift":
            target = np.array([eef[0], eef[1], self.carry_z_m])
            if eef[2] > self.carry_z_m - 0.02 or self._phase_steps > 50:
                self._to("carry")
        if self._phase == "carry":
            # move the can (not the gripper) over the placing point; first via a jittered waypoint
            can_target = self._place_point() + self._place_offset
            target = np.append((eef[:2] + can_target - can[:2]), self.carry_z_m)
            error = float(np.linalg.norm(can_target - can[:2]))
            if error < 0.015 and np.any(self._place_offset):
                self._place_offset[:] = 0.0
            elif error < 0.01 or self._phase_steps > 100:
                self._to("lower")
            elif self._stalled(error):
                if np.any(self._place_offset):
                    self._place_offset[:] = 0.0
                elif not self._move_place_closer():
                    self._to("lower")
        if self._phase == "lower":
            target = eef + (np.append(self._place_point(), release_z) - can)
            if can[2] < release_z + 0.005 or self._phase_steps > 60:
                self._to("release")
            elif self._stalled(can[2] - release_z) and (can[2] < release_z + 0.008 or not self._move_place_closer()):
                self._to("release")
        if self._phase == "release":
            self._count += 1
            if self._count >= self.open_steps:
                self._to("retreat")
            return add_noise(move_action(eef, eef, OPEN), self._rng, 0.0)
        if self._phase == "retreat":
            target = np.array([eef[0], eef[1], max(eef[2], self.carry_z_m)])
        grip = OPEN if self._phase in ("hover", "descend", "retreat") else CLOSE
        action = self._servo(eef, target, grip, yaw_error)
        if self._phase in ("hover", "descend"):
            action[3:5] = level_action(obs["robot0_eef_quat"])  # grasp with the fingers vertical
        elif self._phase in ("lift", "carry", "lower"):
            action[3:5] = level_action(obs["robot0_eef_quat"], deadband_rad=self.max_carry_tilt_rad)
        return add_noise(action, self._rng, self.noise_std)
