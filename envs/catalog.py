"""What mu0sim supports: tasks, robots and cameras, with the per-robot facts that make actions mean the same thing.

Adding a task or robot means adding one entry here (plus a scripted expert in ``mu0sim.policies``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


# Cameras of robosuite's table-top arenas (the eye-in-hand camera moves with the gripper).
CAMERAS: dict[str, str] = {
    "agentview": "front of the table, looking down at the workspace",
    "frontview": "further back, whole robot and table",
    "birdview": "top-down",
    "sideview": "from the side",
    "robot0_robotview": "behind the robot, over its base",
    "robot0_eye_in_hand": "on the gripper, looking along the approach axis",
}


@dataclass(frozen=True)
class TaskSpec:
    """A robosuite task as mu0sim exposes it.

    Attributes:
        name: mu0sim task name (Gymnasium id ``mu0sim/<name>-v0``).
        robosuite_env: robosuite environment class name.
        instruction: natural-language instruction given to μ0 and written into datasets.
        max_episode_steps: episode limit at 20 Hz control, enforced by Gymnasium's TimeLimit (truncation).
        objects: maps the robosuite env to ``{object name: MujocoObject}`` for the objects that matter
            (segmentation labels, TraceExtract keypoints); order fixes the segmentation label ids.
        task_motion: TraceExtract's caption of the motion while the object is held ("{object}" = its name).
        cameras: cameras in the task's model (default: all of ``CAMERAS``).
        robosuite_kwargs: extra arguments for ``robosuite.make``.
    """

    name: str
    robosuite_env: str
    instruction: str
    max_episode_steps: int
    objects: Callable[[Any], dict[str, Any]]
    task_motion: str = "move the {object}"
    cameras: tuple[str, ...] = ()
    robosuite_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not self.cameras:
            object.__setattr__(self, "cameras", tuple(CAMERAS))


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        TaskSpec("Lift", "Lift", "lift the red cube", 150, lambda env: {"red_cube": env.cube},
                 task_motion="lift the {object}"),
        TaskSpec("Stack", "Stack", "stack the red cube on top of the green cube", 250,
                 lambda env: {"red_cube": env.cubeA, "green_cube": env.cubeB},
                 task_motion="put the {object} on the green cube"),
        TaskSpec("PickPlaceCan", "PickPlaceCan", "pick up the can and place it in its bin", 300,
                 lambda env: {"can": env.objects[env.object_id]}, task_motion="carry the {object} to its bin",
                 cameras=tuple(c for c in CAMERAS if c != "sideview")),  # the bins arena has no side camera
        TaskSpec("NutAssemblySquare", "NutAssemblySquare", "put the square nut on the square peg", 300,
                 lambda env: {"square_nut": env.nuts[env.nut_id]}, task_motion="put the {object} on the square peg"),
        TaskSpec("Door", "Door", "open the door", 200, lambda env: {"door": env.door},
                 task_motion="turn the handle and pull the {object} open"),
    ]
}


@dataclass(frozen=True)
class RobotSpec:
    """Per-robot corrections so that the 7-D action means the same on every arm.

    Attributes:
        name: robosuite robot name.
        gripper_sign: multiplies the gripper command so that +1 closes and -1 opens on every robot
            (robosuite's Jaco three-finger gripper is wired the other way round).
        fingerpad_geoms: (left, right) geom names used to measure the gripper opening, for grippers whose
            own ``important_geoms`` name geoms that are not in the model; None uses the gripper's list.
        contact_excludes: pairs of geom names whose bodies must not collide (written into the model XML,
            so datasets replay with the fix in robosuite too).
    """

    name: str
    gripper_sign: float = 1.0
    fingerpad_geoms: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    contact_excludes: tuple[tuple[str, str], ...] = ()


ROBOTS: dict[str, RobotSpec] = {
    spec.name: spec
    for spec in [
        RobotSpec("Panda"),
        # The base's collision cylinder touches link 0 at rest; the constant contact force spoils grasps.
        RobotSpec("Sawyer", contact_excludes=(("robot0_link0_collision", "robot0_base_col"),)),
        RobotSpec("IIWA"),
        RobotSpec("UR5e"),
        RobotSpec("Kinova3"),
        RobotSpec("XArm7", fingerpad_geoms=(("gripper0_right_left_finger_pad_1", "gripper0_right_left_finger_pad_2"),
                                            ("gripper0_right_right_finger_pad_1",
                                             "gripper0_right_right_finger_pad_2"))),
        RobotSpec("Jaco", gripper_sign=-1.0),
    ]
}

def check_choice(kind: str, value: str, valid: list[str] | dict) -> None:
    """Raise a ValueError naming the bad value and the valid choices."""
    if value not in valid:
        raise ValueError(f"unknown {kind} {value!r}; valid {kind}s: {', '.join(valid)}")
