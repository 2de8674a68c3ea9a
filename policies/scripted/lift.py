"""Lift: hover above the cube, turn the gripper to the cube's yaw, descend, close, lift."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mu0sim.policies.scripted.common import CLOSE, OPEN, add_noise, move_action, quat_xyzw_to_mat, wrap_angle, \
    yaw_of_x_axis


@dataclass
class LiftExpert:
    """Scripted Lift expert (cube pose from the ``object`` observation).

    Args:
        hover_m: height above the cube centre to align at.
        close_steps: steps spent closing before lifting.
        noise_std: std of Gaussian action noise (action units), for diverse demonstrations.
        approach_jitter_m: std of a random xy offset of the hover point (randomized approach).
    """

    hover_m: float = 0.08
    close_steps: int = 12
    noise_std: float = 0.0
    approach_jitter_m: float = 0.0
    _rng: np.random.Generator = field(default_factory=np.random.default_rng, repr=False)

    def reset(self, env, seed: int | None = None) -> None:
        self._cube_pos, self._cube_quat = env.object_layout["cube_pos"], env.object_layout["cube_quat"]
        self._rng = np.random.default_rng(seed)
        self._phase, self._closing = "hover", 0
        self._hover_offset = np.append(self._rng.normal(0.0, self.approach_jitter_m, 2), self.hover_m)

    def resume(self, obs: dict[str, np.ndarray]) -> None:
        """Set the phase from the state, as far as the task has progressed (for continuing from a state this
        expert did not produce, e.g. the ground-truth oracle in a learned policy's episode): holding the cube ->
        lift; fingers at the cube -> close; below the hover height over the cube -> descend; else hover. A phase
        this expert reached by following the episode is kept while the state agrees with it (closing at the cube:
        its count of closing steps; descending over the cube), so that on a demo's own states the future is the
        demo's, closing pause included."""
        eef = obs["robot0_eef_pos"].astype(np.float64)
        cube = obs["object"][self._cube_pos].astype(np.float64)
        offset = cube - eef
        near_xy = np.linalg.norm(offset[:2]) < 0.02
        at_grasp = near_xy and abs(offset[2]) < 0.012
        closed = float(obs["robot0_gripper_width"][0]) < 0.07
        if at_grasp and self._phase == "close":
            return
        if at_grasp and closed:
            self._phase, self._closing = "lift", self.close_steps
        elif at_grasp:
            self._phase, self._closing = "close", 0
        elif near_xy and (self._phase == "descend" or eef[2] < cube[2] + self.hover_m - 0.01):
            self._phase = "descend"
        else:
            self._phase = "hover"
            self._hover_offset[:2] = 0.0

    def select_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        eef = obs["robot0_eef_pos"].astype(np.float64)
        cube = obs["object"][self._cube_pos].astype(np.float64)
        # a cube looks the same every quarter turn: turn by the smallest equivalent yaw
        yaw_error = wrap_angle(yaw_of_x_axis(quat_xyzw_to_mat(obs["object"][self._cube_quat]))
                               - yaw_of_x_axis(quat_xyzw_to_mat(obs["robot0_eef_quat"])), np.pi / 2)
        if self._phase == "hover":
            target = cube + self._hover_offset
            if np.linalg.norm(cube + [0, 0, self.hover_m] - eef) < 0.012 and abs(yaw_error) < 0.05:
                self._phase = "descend"
            elif np.linalg.norm(target - eef) < 0.01:
                self._hover_offset[:2] = 0.0  # jittered waypoint reached: now centre over the cube
        if self._phase == "descend":
            target = cube
            if abs(eef[2] - cube[2]) < 0.008 and np.linalg.norm((cube - eef)[:2]) < 0.01:
                self._phase = "close"
        if self._phase == "close":
            self._closing += 1
            if self._closing >= self.close_steps:
                self._phase = "lift"
            return add_noise(move_action(eef, cube, CLOSE), self._rng, 0.0)
        if self._phase == "lift":
            return add_noise(move_action(eef, eef + [0, 0, 0.05], CLOSE), self._rng, self.noise_std)
        return add_noise(move_action(eef, target, OPEN, yaw_error), self._rng, self.noise_std)
