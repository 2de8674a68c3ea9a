"""NutAssemblySquare: grasp the square nut by its handle, carry it over the square peg, lower it on, let go.

The nut (a square ring, hole 0.0455 m across) has a handle sticking out along its own x axis; the square peg
(0.032 m across, top 0.1 m above its body origin) fits the hole with ~7 mm to spare on each side. robosuite counts
the nut as placed when its centre is within 0.03 m of the peg axis, below 0.05 m above the table, and the gripper
is more than ~0.042 m from the nut centre. The peg stands at the far edge of the table, so the nut is carried with
its handle pointing back towards the robot (or, where the last wrist joint has no room for that turn, to a side):
the gripper points straight down, its yaw planned once: fingers across the handle at the grasp, then turned with
the nut so that it arrives square to the peg, turning the wrist as little as possible. Carrying and lowering
servo the *nut's* observed position (not the gripper's) onto the peg, so sag is corrected; a missed or lost grasp
is retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mu0sim.policies.scripted.common import CLOSE, OPEN, add_noise, quat_xyzw_to_mat, wrap_angle, yaw_of_x_axis
from mu0sim.policies.scripted.door import closing_axis_index, grasp_frame, pose_action

UP = np.array([0.0, 0.0, 1.0])


def pad_reach_below_site(env) -> float:
    """How far (m) the finger pads reach past the grip site along the approach axis, measured at reset."""
    rs = env.robosuite_env
    model, data = rs.sim.model, rs.sim.data
    if env.robot_spec.fingerpad_geoms is not None:
        names = [n for side in env.robot_spec.fingerpad_geoms for n in side]
    else:
        gripper = rs.robots[0].gripper["right"]
        names = list(gripper.important_geoms["left_fingerpad"]) + list(gripper.important_geoms["right_fingerpad"])
    site = rs.robots[0].eef_site_id["right"]
    site_pos, site_rot = data.site_xpos[site], data.site_xmat[site].reshape(3, 3)
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    reach = 0.0
    for name in names:
        g = model.geom_name2id(name)
        centre, half = model.geom_aabb[g][:3], model.geom_aabb[g][3:]
        world = data.geom_xpos[g] + (centre + corners * half) @ data.geom_xmat[g].reshape(3, 3).T
        reach = max(reach, float(((world - site_pos) @ site_rot)[:, 2].max()))
    return reach


@dataclass
class NutAssemblySquareExpert:
    """Scripted NutAssemblySquare expert (nut pose from the ``object`` observation, peg pose at reset).

    Args:
        handle_offset_m: grasp point along the nut's x axis from its centre (the handle spans 0.044-0.079 m
            outside the ring): the outer part, so that wide-open fingers with wide pads (XArm7: 0.03 m) clear the
            ring, and the nut reaches further out for arms short of the far peg.
        hover_m: height above the handle at which the gripper lines up before descending.
        grasp_depth_m: how far below the handle's centre the grip site goes (negative: above); never so low
            that the finger pads would touch the table.
        close_steps: steps spent closing before lifting.
        carry_clearance_m: height of the nut's underside above the peg top while carrying it over.
        align_tol_m: horizontal nut-to-peg distance under which the nut is lowered.
        release_depth_m: how far below the peg top the nut's centre is lowered before the gripper opens.
        place_yaws_rad: nut headings allowed at the peg (handle direction relative to the peg's x axis, which
            points away from the robot), best first: handle towards the robot keeps the far peg within reach.
        heading_penalty_rad: extra wrist turn (rad) worth taking to use a heading one rank better.
        joint_margin_rad: margin kept from the last arm joint's limits when planning the wrist turns.
        yaw_rate_rad: largest per-step change of the commanded gripper yaw.
        integral_gain: per-step fraction of the remaining position error (once under 1.5 cm) added to a target
            offset (up to 2 cm)
            while descending onto the handle (3-D) and carrying and lowering the nut (horizontal), so that arms
            that sag still arrive.
        miss_width_m: finger-pad distance (m) below which the closed gripper holds nothing (the handle is 0.032 m
            wide): the expert lets go and tries again.
        max_retries: how many times it starts over after missing or dropping the nut.
        noise_std: std of Gaussian action noise (action units), for diverse demonstrations.
        approach_jitter_m: std of a random xy offset of the hover point (randomized approach).
    """

    handle_offset_m: float = 0.07
    hover_m: float = 0.08
    grasp_depth_m: float = 0.0
    close_steps: int = 12
    carry_clearance_m: float = 0.04
    align_tol_m: float = 0.004
    release_depth_m: float = 0.01
    place_yaws_rad: tuple[float, ...] = (np.pi, np.pi / 2, -np.pi / 2)
    heading_penalty_rad: float = 5.0
    joint_margin_rad: float = 0.12
    yaw_rate_rad: float = 0.15
    integral_gain: float = 0.2
    miss_width_m: float = 0.027
    max_retries: int = 2
    noise_std: float = 0.0
    approach_jitter_m: float = 0.0
    _rng: np.random.Generator = field(default_factory=np.random.default_rng, repr=False)

    def reset(self, env, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)
        layout = env.object_layout
        self._nut_pos, self._nut_quat = layout["SquareNut_pos"], layout["SquareNut_quat"]
        rs = env.robosuite_env
        model, data = rs.sim.model, rs.sim.data
        peg = model.body_name2id("peg1")
        self._peg_pos = data.body_xpos[peg].copy()
        self._peg_yaw = yaw_of_x_axis(data.body_xmat[peg].reshape(3, 3))
        peg_geoms = [g for g in range(model.ngeom) if model.geom_bodyid[g] == peg]
        self._peg_top = self._peg_pos[2] + max(model.geom_size[g][2] for g in peg_geoms)
        self._closing = closing_axis_index(env)
        # lowest grip-site height at which the finger pads stay clear of the table
        self._grasp_floor = rs.table_offset[2] + pad_reach_below_site(env) + 0.003
        # how far the gripper may turn about the vertical before its last joint (which does most of the turning
        # while the gripper points down) reaches a limit: (least, most) change of yaw from now, rad
        arm = rs.robots[0]
        last = model.joint_name2id(arm.robot_joints[-1])
        q, sign = data.qpos[model.jnt_qposadr[last]], np.sign(data.xaxis[last][2])
        room = 2 * np.pi
        if model.jnt_limited[last]:
            lo, hi = model.jnt_range[last] + [self.joint_margin_rad, -self.joint_margin_rad]
            room_lo, room_hi = sorted(((lo - q) * sign, (hi - q) * sign))
            self._yaw_room = (max(room_lo, -room), min(room_hi, room))
        else:
            self._yaw_room = (-room, room)
        self._phase, self._steps, self._retries = "plan", 0, 0
        self._bias = np.zeros(3)
        self._jitter = np.append(self._rng.normal(0.0, self.approach_jitter_m, 2), 0.0)

    # ---------------------------------------------------------------- helpers
    def _closing_yaw(self, rot: np.ndarray) -> float:
        return float(np.arctan2(rot[1, self._closing], rot[0, self._closing]))

    def _frame(self, yaw: float) -> np.ndarray:
        """Gripper pointing down with its fingers closing along heading ``yaw``."""
        return grasp_frame(-UP, np.array([np.cos(yaw), np.sin(yaw), 0.0]), self._closing)

    def _plan(self, nut_yaw: float, gripper_yaw: float) -> None:
        """Pick the grasp yaw (fingers across the handle: which of the two sides) and the nut's heading at the peg
        so that the wrist turns least within its last joint's room; yaws stay unwrapped from the current one."""
        lo, hi = self._yaw_room
        best = None
        for side in (1.0, -1.0):
            for grasp_turn in wrap_angle(nut_yaw + side * np.pi / 2 - gripper_yaw) + 2 * np.pi * np.arange(-1, 2):
                for rank, place in enumerate(self.place_yaws_rad):
                    for carry_turn in wrap_angle(self._peg_yaw + place - nut_yaw) + 2 * np.pi * np.arange(-1, 2):
                        feasible = lo <= grasp_turn <= hi and lo <= grasp_turn + carry_turn <= hi
                        cost = (abs(grasp_turn) + abs(carry_turn) + rank * self.heading_penalty_rad
                                + (0.0 if feasible else 100.0))
                        if best is None or cost < best[0]:
                            best = (cost, side, grasp_turn, rank, carry_turn)
        _, self._side, grasp_turn, _, self._carry_turn = best
        self._grasp_yaw = gripper_yaw + grasp_turn
        self._yaw_cmd = gripper_yaw

    def _track_grasp_yaw(self, nut_yaw: float) -> None:
        """Follow the handle if the nut turns before the grasp, staying on the planned side."""
        self._grasp_yaw += wrap_angle(nut_yaw + self._side * np.pi / 2 - self._grasp_yaw)

    def _turn_towards(self, yaw: float) -> float:
        self._yaw_cmd += float(np.clip(yaw - self._yaw_cmd, -self.yaw_rate_rad, self.yaw_rate_rad))
        return self._yaw_cmd

    def _retry(self) -> None:
        self._phase, self._steps = "backoff", 0
        self._retries += 1

    def select_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        eef = obs["robot0_eef_pos"].astype(np.float64)
        rot = quat_xyzw_to_mat(obs["robot0_eef_quat"])
        width = float(obs["robot0_gripper_width"][0])
        nut = obs["object"][self._nut_pos].astype(np.float64)
        nut_rot = quat_xyzw_to_mat(obs["object"][self._nut_quat])
        nut_yaw = yaw_of_x_axis(nut_rot)
        handle = nut + nut_rot[:, 0] * self.handle_offset_m - UP * self.grasp_depth_m
        grasp = np.append(handle[:2], max(handle[2], self._grasp_floor))
        gripper_yaw = self._closing_yaw(rot)
        self._steps += 1
        if self._phase == "plan":
            self._plan(nut_yaw, gripper_yaw)
            self._phase, self._steps = "hover", 0
        carry_z = self._peg_top + 0.01 + self.carry_clearance_m  # nut centre height while carrying
        peg_goal = np.array([self._peg_pos[0], self._peg_pos[1], carry_z])
        holding = np.linalg.norm(grasp - eef) < 0.03
        grip, noise, yaw = CLOSE, self.noise_std, self._yaw_cmd
        if self._phase == "backoff":  # let go and rise, then line up again
            grip, target = OPEN, eef + UP * 0.05
            if self._steps >= 8:
                self._phase, self._steps = "hover", 0
        elif self._phase in ("hover", "descend"):
            self._track_grasp_yaw(nut_yaw)
            yaw, grip = self._turn_towards(self._grasp_yaw), OPEN
            yaw_err = abs(wrap_angle(self._grasp_yaw - gripper_yaw))
            if self._phase == "hover":
                target = handle + UP * self.hover_m + self._jitter
                if (np.linalg.norm(target - eef) < 0.01 and yaw_err < 0.05) or self._steps > 80:
                    if np.any(self._jitter) and self._steps <= 80:
                        self._jitter[:] = 0.0  # jittered waypoint reached: now line up over the handle
                    else:
                        self._jitter[:] = 0.0
                        self._phase, self._steps = "descend", 0
            else:
                target = grasp
                if np.linalg.norm(grasp - eef) < 0.006 or self._steps > 40:
                    self._phase, self._steps = "close", 0
        elif self._phase == "close":
            target, noise = grasp, 0.0
            if self._steps >= self.close_steps:
                self._phase, self._steps = "lift", 0
                self._place_yaw = self._yaw_cmd + self._carry_turn
                if width < self.miss_width_m and self._retries < self.max_retries:
                    self._retry()
        elif self._phase == "lift":
            target = eef + UP * (carry_z - nut[2])
            if nut[2] > carry_z - 0.02 or self._steps > 40:
                self._phase, self._steps = "carry", 0
        elif self._phase == "carry":
            yaw = self._turn_towards(self._place_yaw)
            # aim the gripper where it will be once the nut has finished turning with it: the nut swings round the
            # grasp while the wrist turns, and must not be carried past the peg (to where the arm is stretched out)
            remaining = self._place_yaw - self._yaw_cmd + wrap_angle(self._yaw_cmd - gripper_yaw)
            c, s = np.cos(remaining), np.sin(remaining)
            offset = nut - eef
            target = peg_goal - [c * offset[0] - s * offset[1], s * offset[0] + c * offset[1], offset[2]]
            centred = np.linalg.norm((peg_goal - nut)[:2]) < self.align_tol_m
            turned = self._yaw_cmd == self._place_yaw and abs(wrap_angle(self._place_yaw - gripper_yaw)) < 0.05
            if (centred and turned) or self._steps > 100:
                self._phase, self._steps = "lower", 0
        elif self._phase == "lower":
            error = np.array([self._peg_pos[0], self._peg_pos[1], self._peg_top - 0.04]) - nut
            over_peg = np.linalg.norm(error[:2]) < 2 * self.align_tol_m
            error[2] = error[2] if over_peg else max(error[2], carry_z - 0.02 - nut[2])  # down only when over it
            target = eef + error
            # let go once the hole has gone over the peg top: the nut then drops down the peg by itself
            if (over_peg and nut[2] < self._peg_top - self.release_depth_m) or self._steps > 60:
                self._phase, self._steps = "release", 0
        elif self._phase == "release":
            target, grip = eef, OPEN
            if self._steps > 6:
                self._phase, self._steps = "retreat", 0
        else:  # retreat: straight up, clear of the nut
            target, grip = eef + UP * 0.05, OPEN
        if self._phase == "lower" and not holding:
            self._phase, self._steps = "release", 0  # slipped while going down over the peg: let it drop
        elif self._phase in ("lift", "carry") and not holding and self._retries < self.max_retries:
            self._retry()
        # integral action where position matters: arms that sag (XArm7) otherwise settle short of the target;
        # horizontal only once the nut is held, so that a nut resting on the peg top is not forced down
        # (held, not grown, while closing: closing fingers that touch the table must not be pressed into it)
        if self._phase in ("descend", "carry", "lower"):
            error = (target - eef) * ([1.0, 1.0, 0.0] if self._phase in ("carry", "lower") else 1.0)
            if np.linalg.norm(error) < 0.015:  # settling, not travelling: no wind-up on the way
                self._bias = np.clip(self._bias + self.integral_gain * error, -0.02, 0.02)
        elif self._phase != "close":
            self._bias = np.zeros(3)
        return add_noise(pose_action(eef, rot, target + self._bias, self._frame(yaw), grip), self._rng, noise)
