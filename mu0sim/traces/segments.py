"""Motion segments with hierarchical captions: the task instruction, subtasks, primitive motions.

Subtasks are cut at gripper events (the close and open commands) and at the start of motion after a grasp:
``reach -> grasp -> <task motion> -> release -> retreat``. Primitive motions split each subtask at minima of the
smoothed gripper speed and are captioned from the gripper's displacement, in the robot's frame (world +x is
forward, away from the robot base; +y is the robot's left; +z up), e.g. "move the gripper down 10 cm toward the red
cube", or from the held object's once it is grasped ("move the red cube up 12 cm").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TASK, SUBTASK, PRIMITIVE = 0, 1, 2
DIRECTIONS = (("forward", "backward"), ("left", "right"), ("up", "down"))


@dataclass
class Segment:
    """Frames ``[start, end)`` at one level of the hierarchy (0 task, 1 subtask, 2 primitive)."""

    start: int
    end: int
    level: int
    caption: str


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.pad(values, (window // 2, window - 1 - window // 2), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def speed_minima(eef_pos: np.ndarray, start: int, end: int, window: int = 5, relative: float = 0.35,
                 min_length: int = 4) -> list[int]:
    """Cut points inside ``[start, end)`` at local minima of the smoothed speed below ``relative`` x its peak."""
    if end - start < 2 * min_length:
        return []
    speed = _smooth(np.linalg.norm(np.diff(eef_pos[start:end + 1], axis=0), axis=1), window)
    peak = speed.max()
    cuts, last = [], start
    for i in range(1, len(speed) - 1):
        t = start + i
        if (speed[i] <= speed[i - 1] and speed[i] < speed[i + 1] and speed[i] < relative * peak
                and t - last >= min_length and end - t >= min_length):
            cuts.append(t)
            last = t
    return cuts


def describe_motion(displacement: np.ndarray, subject: str, target: str | None = None,
                    closer: bool | None = None) -> str:
    """'move the gripper down 10 cm toward the cube' from a displacement in metres."""
    size = float(np.linalg.norm(displacement))
    words = [DIRECTIONS[axis][0 if displacement[axis] > 0 else 1] for axis in range(3)
             if abs(displacement[axis]) >= 0.4 * size]
    caption = f"move {subject} {' and '.join(words)} {max(1, round(size * 100))} cm"
    if target is not None and closer is not None:
        caption += f" {'toward' if closer else 'away from'} the {target}"
    return caption


def segment_episode(eef_pos: np.ndarray, grip_command: np.ndarray, object_pos: dict[str, np.ndarray],
                    instruction: str, task_motion: str, still_m: float = 0.01) -> list[Segment]:
    """Segments of one episode.

    Args:
        eef_pos: (T, 3) grip-site positions, metres (one per frame).
        grip_command: (T,) gripper command per frame (+1 close, -1 open; the action taken at that frame).
        object_pos: object name -> (T, 3) positions; the grasped object is the nearest at the close command.
        instruction: the task instruction (level 0).
        task_motion: caption of the motion while the object is held, with ``{object}`` (e.g. "lift the {object}").
    """
    frames = len(eef_pos)
    segments = [Segment(0, frames, TASK, instruction)]
    closing = np.flatnonzero((grip_command[1:] > 0) & (grip_command[:-1] <= 0)) + 1
    t_close = int(closing[0]) if len(closing) else (0 if grip_command[0] > 0 else frames)
    opening = np.flatnonzero((grip_command[1:] <= 0) & (grip_command[:-1] > 0)) + 1
    opening = opening[opening > t_close]
    t_open = int(opening[0]) if len(opening) else frames
    names = list(object_pos)
    ref = min(t_close, frames - 1)
    target = min(names, key=lambda n: np.linalg.norm(object_pos[n][ref] - eef_pos[ref])) if names else None
    phrase = target.replace("_", " ") if target else "object"

    speed = np.linalg.norm(np.diff(eef_pos, axis=0, append=eef_pos[-1:]), axis=1)
    # the grasp ends when the gripper starts moving again after the close command
    moving = np.flatnonzero(speed[t_close:t_open] > 0.003)
    t_move = t_close + int(moving[0]) if len(moving) else t_open
    settle = np.flatnonzero(speed[t_open:] > 0.003)
    t_retreat = t_open + int(settle[0]) if len(settle) else frames
    subtasks = [(0, t_close, f"reach the {phrase}", "the gripper", False),
                (t_close, t_move, f"grasp the {phrase}", "the gripper", False),
                (t_move, t_open, task_motion.format(object=phrase), f"the {phrase}", True),
                (t_open, t_retreat, f"release the {phrase}", "the gripper", False),
                (t_retreat, frames, "move the gripper away", "the gripper", False)]
    for start, end, caption, subject, holding in subtasks:
        if end - start < 1:
            continue
        segments.append(Segment(start, end, SUBTASK, caption))
        bounds = [start, *speed_minima(eef_pos, start, end), end]
        for a, b in zip(bounds[:-1], bounds[1:]):
            last = min(b, frames - 1)
            displacement = eef_pos[last] - eef_pos[a]
            if np.linalg.norm(displacement) < still_m:
                text = {f"grasp the {phrase}": f"close the gripper on the {phrase}",
                        f"release the {phrase}": "open the gripper"}.get(caption, "hold the gripper still")
            else:
                closer = None
                if target is not None and not holding:
                    before = np.linalg.norm(object_pos[target][a] - eef_pos[a])
                    after = np.linalg.norm(object_pos[target][last] - eef_pos[last])
                    if abs(after - before) >= max(0.01, 0.3 * before):
                        closer = after < before
                text = describe_motion(displacement, subject, None if holding else phrase, closer)
            segments.append(Segment(a, b, PRIMITIVE, text))
    return segments
