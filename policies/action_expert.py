"""Trace-conditioned action experts: small per-embodiment policies behaviour-cloned on top of frozen μ0.

The expert reads one observation of :class:`~mu0sim.policies.trace_observation.Mu0TraceObservation` (proprioception,
μ0's query points and predicted traces, the backbone's pooled image feature) and outputs a chunk of ``chunk`` actions
of which ``execute`` are run before the next query. Variants (one option, same network):

    trace              frozen μ0's predicted 3D traces (world frame, through the camera calibration)
    trace-2d           the same traces as image-plane (u, v) motion only
    no-trace           the same network, trace inputs zeroed (query point positions are still seen)
    gt-trace           ground-truth future traces of the query points (meant as an upper bound: at or above trace on
                       Lift and Stack, not yet on PickPlaceCan, RESULTS.md; training data only)
    action-pretrained  no traces; initialised from a model pretrained on pooled multi-robot actions
    trace-pretrained   μ0's traces as ``trace``, initialised the same way (pretrained on the pooled robots' demos
                       with their traces): whether traces add anything once the other robots' data is used too

Each query point also carries what it lies on (background, robot, or which task object: a one-hot of its
segmentation label). Without it, farthest-point samples over two cubes are one unlabelled cloud, and the expert must
work out from geometry alone which cube to grasp (Stack).

With ``wrist_points`` the wrapper also samples points of the task objects in the wrist view (no traces: their
world position, position in the gripper's frame and label), which join the query points in the same pooling through
their own embedding. ``pooling="per-label"`` adds a pool per label slot; ``image_feature`` / ``wrist_features`` off
leave the expert geometry alone (points + proprioception), which on Stack stops a 50-demo expert from recalling
whole training demos by their look (RESULTS.md). ``wrist_moments`` adds each task object's orientation in the
gripper's frame, from its wrist-view points (:func:`object_moments`), to the trunk: the yaw to turn to before a
grasp, which the pooled per-point embeddings did not recover on Stack/Sawyer (RESULTS.md). ``grip_clock`` adds how many
steps in a row the expert's own gripper command has been "close" (:func:`grip_clock_steps`): its demos lift a fixed
count of steps after closing, while the fingers' width, the only trace of that in one observation, creeps for most
of the wait and stops elsewhere on a grasp held off-centre.

With ``point_tokens`` each μ0 query point also carries μ0's own token for it (its trace expert's encoder output, the
``mu0_point_tokens`` observation), added to the point's embedding through a tanh gate that starts closed: the
paper conditions its action experts on these per-keypoint features (pooled, through gated cross-attention) rather
than on decoded traces, and the tokens hold what the traces drop (the forecast's uncertainty, what μ0 reads in the
image around the point). ``point_token_gate=False`` adds them ungated, an input like any other from the first step
(at 10 demos the closed gate barely opens: the expert fits its demos without them). Trace-reading variants with
μ0's traces only.

``relative_inputs`` hides every absolute position: the query and wrist points' world and image positions read zero
(their positions relative to the gripper stay) and so does the eef position in the proprioception. A 10-demo expert
recalls its demos (RESULTS.md); where things are in the world is what tells ten demos apart, while what an action
needs is where they are relative to the fingers, which the traces (world-frame motion) speak to as well.

``traced_points`` keeps the forecasts of some query points only: the task objects' (``"objects"``) or the gripper's
(``"gripper"``); the other points keep their positions and read no motion, as in ``no-trace``. It says which
forecasts an expert's gain comes from (RESULTS.md, session 45: on Panda both kinds add on Stack and the can's is all
of it on PickPlaceCan; on Kinova3, which μ0 never saw, the gripper's alone do as well as all of them: 371 against
370 of 450 report-seed episodes over three training seeds).

``relative_motion`` gives each query point, beside its forecast motion, that motion minus the gripper's (the mean
forecast of the query points on the robot; world axes, m): where μ0 says the point will be relative to the fingers,
the quantity a grasp or a carry is about. The pooled per-point embeddings hold each point's own forecast only, so
without it the gripper's forecast meets an object's only after pooling, in the trunk. On ten demos it cost the
seen robots' cells (RESULTS.md, session 46, tuning seeds: 98 of 150 against the plain expert's 108).

``forecast_only`` makes the expert a forecast follower: its trunk reads the mean forecast motion of each label
slot's query points (the gripper's, each task object's), the proprioception and, with ``wrist_moments``, the objects'
yaw; no point position, image or wrist feature. Where the things are is then known only through where μ0 says they
will go, so ten demos cannot be told apart by their layout: what the expert can learn is how to turn a forecast
into actions, which is the same on every demo (the paper's division of labour: μ0 plans, the expert tracks).
``slot_offsets`` adds each slot's mean position in the gripper's frame (where the cube is relative to the fingers,
not where it is on the table); with it a trace-less variant has something to act on too, and may use the recipe.

Point features are pooled by attention (permutation-invariant, padding masked); with a wrist camera, the frozen
backbone's feature cells of that view are pooled the same way (the third-person view at 128 px shows a Lift cube
in a ~12 px box: too coarse for its yaw, which the grasp must match; the wrist view shows it). Proprioception and
the image feature join them in an MLP trunk; the head regresses the normalized chunk (``head="regression"``) or learns it by
flow matching (``head="flow"``). With ``trace_skip`` the gripper's mean forecast motion also enters the trunk and maps
linearly onto the chunk (trace-less variants read zeros there: the same network).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mu0sim.config import from_dict
from mu0sim.io import atomic_write_text

VARIANTS = ("trace", "trace-2d", "no-trace", "gt-trace", "action-pretrained", "trace-pretrained")
TRACE_3D_VARIANTS = ("trace", "gt-trace", "trace-pretrained")  # read 3D traces (trace-2d: image-plane only)
PRETRAINED_VARIANTS = ("action-pretrained", "trace-pretrained")  # pretrained on other robots' demos, then fine-tuned
MU0_FORECAST_VARIANTS = ("trace", "trace-2d", "trace-pretrained")  # act on μ0's forecast (and may read its tokens)
HEADS = ("regression", "flow")
POOLINGS = ("attention", "per-label")
MOMENT_SOURCES = ("points", "pixels")  # wrist_moments from the W wrist-view points, or from every object pixel
# whose forecasts a trace-reading expert reads: every query point's, the task objects' only, or the gripper's only
# (the others read no motion, the trace-less input; their positions stay)
TRACED_POINTS = ("all", "objects", "gripper")
GRIP_CLOCK_KEY = "expert_grip_clock"  # steps the expert's own gripper command has been "close" in a row (its state)
GRIP_CLOCK_CAP = 24  # steps; the clock reads min(steps, cap) / cap (the demos lift 12 steps after closing)
PROPRIO_KEYS = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_width")
TRACE_STEPS = (2, 4, 8, 12, 16, 24, 32)  # future steps of each trace the expert reads (of μ0's H = 32)
LABEL_SLOTS = 5  # one-hot of a query point's label: background, robot, first, second, any further task object
OBJECT_SLOTS = 3  # the last three label slots: the task's objects
# Version of the expert's inputs: checkpoints record it and one trained on other inputs is refused, not misread.
# 1: no query-point labels; 2: + the label one-hot; 3: the gripper's query points at the gripper's depth (they took
# the depth of whatever surface their pixel showed) and, for gt-trace, moving with the gripper.
EXPERT_INPUTS = 3


@dataclass
class ActionExpertConfig:
    variant: str = "trace"
    head: str = "regression"
    robot: str = "Panda"
    task: str = "Lift"
    chunk: int = 16
    execute: int = 8
    dim: int = 128
    action_dim: int = 7
    mu0_id: str = ""  # fingerprint of the μ0 checkpoint the traces came from
    inputs: int = EXPERT_INPUTS  # version of the input features (see EXPERT_INPUTS)
    flow_steps: int = 8
    wrist_camera: str | None = "robot0_eye_in_hand"  # None: no wrist view
    wrist_points: int = 0  # task-object points sampled in the wrist view (0: none; needs wrist_camera)
    pooling: str = "attention"  # "per-label": also one attention pool per label slot (see ActionExpertNet)
    image_feature: bool = True  # read the backbone's pooled agentview feature (a whole-scene summary)
    wrist_features: bool = True  # read the wrist view's feature cells (when there is a wrist_camera)
    world_offsets: bool = False  # also each point minus the gripper in world axes (the frame actions move in)
    trace_skip: bool = False  # the gripper's trace also maps linearly onto the action chunk (see ActionExpertNet)
    wrist_moments: bool = False  # the trunk also reads each object's yaw from its wrist-view points (object_moments)
    ensemble: int = 1  # networks whose action chunks are averaged, each trained with its own seed (see ActionExpert)
    moments_from: str = "points"  # wrist_moments of the sampled wrist points, or of every object pixel ("pixels")
    grip_clock: bool = False  # the trunk also reads how long its own gripper command has been "close" (see above)
    point_tokens: int = 0  # width of μ0's per-keypoint tokens each query point also reads (0: none; see above)
    point_token_gate: bool = True  # the tokens enter through a tanh gate that starts closed (False: ungated)
    relative_inputs: bool = False  # no absolute positions: points relative to the gripper only, no eef position
    forecast_only: bool = False  # the trunk reads per-label mean forecasts + proprio (+ moments) only (see above)
    slot_offsets: bool = False  # forecast_only: + each label slot's mean position in the gripper's frame (m)
    traced_points: str = "all"  # whose forecasts it reads: "all", "objects" or "gripper" (TRACED_POINTS; see above)
    relative_motion: bool = False  # each point also reads its forecast motion minus the gripper's (m; see above)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; valid variants: {', '.join(VARIANTS)}")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; valid heads: {', '.join(HEADS)}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; valid poolings: {', '.join(POOLINGS)}")
        if not 1 <= self.execute <= self.chunk:
            raise ValueError(f"execute must be in 1..chunk={self.chunk}, got {self.execute}")
        if self.wrist_points < 0 or (self.wrist_points and self.wrist_camera is None):
            raise ValueError(f"wrist_points must be >= 0 and needs a wrist_camera; got {self.wrist_points} with "
                             f"wrist_camera={self.wrist_camera!r}")
        if self.wrist_moments and not self.wrist_points:
            raise ValueError("wrist_moments describes the wrist-view points: it needs wrist_points > 0")
        if self.moments_from not in MOMENT_SOURCES:
            raise ValueError(f"unknown moments_from {self.moments_from!r}; valid sources: {', '.join(MOMENT_SOURCES)}")
        if self.moments_from != "points" and not self.wrist_moments:
            raise ValueError(f"moments_from={self.moments_from!r} says where wrist_moments come from: it needs "
                             "wrist_moments=true")
        if self.ensemble < 1:
            raise ValueError(f"ensemble must be >= 1 (networks averaged), got {self.ensemble}")
        if self.point_tokens < 0 or (self.point_tokens and self.variant not in MU0_FORECAST_VARIANTS):
            raise ValueError(f"point_tokens (μ0's per-keypoint tokens, width >= 0) are read by variants "
                             f"{', '.join(MU0_FORECAST_VARIANTS)}; got point_tokens={self.point_tokens} with variant "
                             f"{self.variant!r}")
        if not self.point_token_gate and not self.point_tokens:
            raise ValueError("point_token_gate=false says how μ0's point tokens enter: it needs point_tokens")
        if self.traced_points not in TRACED_POINTS:
            raise ValueError(f"unknown traced_points {self.traced_points!r}; valid choices: {', '.join(TRACED_POINTS)}")
        if self.traced_points != "all" and self.variant not in TRACE_3D_VARIANTS:
            raise ValueError(f"traced_points picks whose 3D traces an expert reads: variants "
                             f"{', '.join(TRACE_3D_VARIANTS)}; got variant {self.variant!r}")
        if self.relative_motion and (self.variant not in TRACE_3D_VARIANTS or self.forecast_only):
            raise ValueError(f"relative_motion adds to the 3D traces a query point reads: variants "
                             f"{', '.join(TRACE_3D_VARIANTS)}, without forecast_only; got variant {self.variant!r}"
                             f"{' with forecast_only' if self.forecast_only else ''}")
        if self.slot_offsets and not self.forecast_only:
            raise ValueError("slot_offsets adds to what a forecast_only expert reads: it needs forecast_only=true")
        if self.forecast_only:
            if self.variant not in TRACE_3D_VARIANTS and not (self.slot_offsets and self.variant != "trace-2d"):
                raise ValueError(f"forecast_only reads 3D traces, which variants {', '.join(TRACE_3D_VARIANTS)} "
                                 f"have (a trace-less one also with slot_offsets); got variant {self.variant!r}")
            extra = {"image_feature": self.image_feature,
                     "wrist_features": self.reads_wrist_tokens,
                     "trace_skip": self.trace_skip, "point_tokens": bool(self.point_tokens),
                     "pooling='per-label'": self.pooling == "per-label"}
            if any(extra.values()):
                raise ValueError(f"forecast_only reads forecasts, proprioception and moments only; turn off "
                                 f"{', '.join(k for k, on in extra.items() if on)}")

    @property
    def reads_wrist_tokens(self) -> bool:
        """The expert reads the wrist view's feature cells (``wrist_tokens``): a wrist camera with ``wrist_features``
        on. An expert with a wrist camera and these off reads only its points and moments, so its wrapper need not
        encode the view (a backbone pass a query: 5-14 ms in BENCHMARKS.md's Stack runs)."""
        return self.wrist_camera is not None and self.wrist_features

    @classmethod
    def from_dict(cls, data: dict) -> "ActionExpertConfig":
        return from_dict(cls, data, "action-expert config")


def point_features(obs: dict[str, np.ndarray], variant: str, world_offsets: bool = False,
                   relative: bool = False, traced_points: str = "all", relative_motion: bool = False) -> np.ndarray:
    """(K, F) per-query-point input of the expert for ``variant`` (F is the same for every variant): world position
    (m), image position and depth, the position in the gripper's frame (m; where the point is relative to the
    fingers, which is what grasping needs: a per-point feature the attention pooling cannot easily compute), what
    the point lies on (one-hot, :func:`label_one_hot`), and the trace; ``world_offsets`` appends the point minus
    the gripper in world axes (m): actions move the gripper in world axes, and the gripper's frame turns with its
    yaw, so reading an action off the in-gripper offset needs a rotation the expert must otherwise learn.
    ``relative``: the world and image positions read zero (same columns: one network shape). ``traced_points``
    (:data:`TRACED_POINTS`): only the task objects' (labels 2..) or only the gripper's (label 1) points keep their
    trace; every other point's trace reads zero, as in a trace-less variant. ``relative_motion`` appends each point's
    trace minus the gripper's (:func:`gripper_motion`, of the traces as read), after the world offsets."""
    world = obs["mu0_query_world"]
    lead = world.shape[:-1]  # (K,) or (N, K)
    in_gripper = in_gripper_frame(obs, world)
    if variant in TRACE_3D_VARIANTS:
        motion = trace_steps(obs["mu0_traces_world"]).reshape(*lead, -1)
    elif variant == "trace-2d":
        uv = trace_steps(obs["mu0_traces"])[..., :2]
        motion = np.concatenate([uv, np.zeros_like(uv[..., :1])], -1).reshape(*lead, -1)
    else:
        motion = np.zeros((*lead, 3 * len(TRACE_STEPS)), np.float32)
    if "mu0_query_label" not in obs:
        raise KeyError("observation lacks 'mu0_query_label' (query-point labels): features cached or recorded by an "
                       "older mu0sim; replay them (delete the stale .bc-*.npz cache)")
    if traced_points != "all":
        slot = label_slots(obs["mu0_query_label"])
        keep = slot >= LABEL_SLOTS - OBJECT_SLOTS if traced_points == "objects" else slot == ROBOT_SLOT
        motion = np.where(keep[..., None], motion, np.zeros_like(motion))
    labels = label_one_hot(obs["mu0_query_label"])
    extra = [world - np.asarray(obs["robot0_eef_pos"])[..., None, :]] if world_offsets else []
    if relative_motion:
        extra.append(motion - gripper_motion(motion, obs["mu0_query_label"], obs["mu0_query_mask"]))
    absolute = [world, obs["mu0_query_uvz"]]
    if relative:
        absolute = [np.zeros_like(a) for a in absolute]
    return np.concatenate([*absolute, in_gripper, labels, motion, *extra], -1).astype(np.float32)


def gripper_motion(motion: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(..., K, M) per-point traces -> (..., 1, M): their mean over the real query points on the robot (the
    gripper's forecast; zeros where no query point lies on it)."""
    on_robot = ((label_slots(labels) == ROBOT_SLOT) & (np.asarray(mask) > 0))[..., None]
    total = np.where(on_robot, motion, 0.0).sum(-2, keepdims=True)
    return (total / np.maximum(on_robot.sum(-2, keepdims=True), 1)).astype(np.float32)


def wrist_point_features(obs: dict[str, np.ndarray], world_offsets: bool = False,
                         relative: bool = False) -> np.ndarray:
    """(W, WRIST_POINT_DIM (+ 3)) per wrist-view point: world position (m; zero with ``relative``), position in the
    gripper's frame (m), what it lies on (one-hot) and, with ``world_offsets``, the point minus the gripper in world
    axes (m); padding rows are whatever the wrapper put there (masked)."""
    world = obs["wrist_query_world"]
    extra = [world - np.asarray(obs["robot0_eef_pos"])[..., None, :]] if world_offsets else []
    return np.concatenate([np.zeros_like(world) if relative else world, in_gripper_frame(obs, world),
                           label_one_hot(obs["wrist_query_label"]), *extra], -1).astype(np.float32)


def wrist_object_moments(obs: dict[str, np.ndarray]) -> np.ndarray:
    """(OBJECT_SLOTS * 4,) or (N, OBJECT_SLOTS * 4): :func:`object_moments` of the wrist-view points."""
    moments = object_moments(in_gripper_frame(obs, obs["wrist_query_world"]), obs["wrist_query_label"],
                             obs["wrist_query_mask"])
    return moments.reshape(*moments.shape[:-2], -1)


def object_moments(in_gripper: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(..., W, 3) points in the gripper's frame -> (..., OBJECT_SLOTS, 4): per task object (label slots 2..), the
    2- and 4-fold complex moments (real, imaginary) of its points in the gripper's xy plane about their centroid:
    m_n = sum z^n / sum |z|^n with z = x + iy, so |m_n| <= 1, arg(m_4) / 4 is a square's yaw relative to the fingers
    (mod 90 degrees) and arg(m_2) / 2 an elongated object's; zeros for an object without points.

    Why: the yaw to turn the gripper by before a grasp is a property of the point set, which per-point embeddings
    pooled by attention hardly recover from 50 demos (Stack/Sawyer closed on the red cube at a yaw unrelated to
    the needed one; Sawyer's fingers, 6.75 cm open, fail to square up a 4 cm cube held 20+ degrees off).

    What it reads (Stack/Sawyer demos, RESULTS.md session 28): with a whole square in view, arg(m_4) / 4 sits 45
    degrees off its faces (corners weigh most); once the square fills the view and is cut by the image's edges,
    it reads the faces' yaw itself. Either way the reading turns with the object."""
    labels, mask = np.asarray(labels), np.asarray(mask) > 0
    z = in_gripper[..., 0].astype(np.float64) + 1j * in_gripper[..., 1]
    out = np.zeros((*z.shape[:-1], OBJECT_SLOTS, 4), np.float32)
    for index, slot in enumerate(range(LABEL_SLOTS - OBJECT_SLOTS, LABEL_SLOTS)):
        member = mask & (label_slots(labels) == slot)
        centre = (z * member).sum(-1, keepdims=True) / np.maximum(member.sum(-1, keepdims=True), 1)
        dz = (z - centre) * member
        for col, n in ((0, 2), (2, 4)):
            norm = (np.abs(dz) ** n).sum(-1)
            m = (dz ** n).sum(-1) / np.where(norm > 0, norm, 1.0)
            out[..., index, col], out[..., index, col + 1] = m.real, m.imag
    return out


def in_gripper_frame(obs: dict[str, np.ndarray], world: np.ndarray) -> np.ndarray:
    """(..., K, 3) world points (m) -> the same points in the gripper's frame (m), from the eef pose in ``obs``."""
    eef_rot = quat_xyzw_to_matrix(np.asarray(obs["robot0_eef_quat"], np.float64))  # (3, 3) or (N, 3, 3)
    offset = world - np.asarray(obs["robot0_eef_pos"])[..., None, :]
    return np.einsum("...ji,...kj->...ki", eef_rot, offset)


def label_slots(labels: np.ndarray) -> np.ndarray:
    """(...,) segmentation labels -> (...,) int64 slot of :func:`label_one_hot` (unknown, -1, joins background)."""
    return np.clip(np.asarray(labels), 0, LABEL_SLOTS - 1).astype(np.int64)


def label_one_hot(labels: np.ndarray) -> np.ndarray:
    """(...,) segmentation labels -> (..., LABEL_SLOTS): background, robot, first, second, further task objects;
    -1 (unknown: no segmentation) is all zeros."""
    labels = np.asarray(labels)
    slots = np.minimum(labels, LABEL_SLOTS - 1).astype(int)
    out = (slots[..., None] == np.arange(LABEL_SLOTS)).astype(np.float32)
    return out * (labels >= 0)[..., None]


def quat_xyzw_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions (x, y, z, w) -> (..., 3, 3) rotation matrices."""
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.stack([np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
                     np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
                     np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], -2)


def trace_steps(traces: np.ndarray) -> np.ndarray:
    """(..., H, 3) -> (..., len(TRACE_STEPS), 3): the future steps the expert reads (already subsampled arrays of
    that length pass through)."""
    if traces.shape[-2] == len(TRACE_STEPS):
        return traces
    return traces[..., np.array(TRACE_STEPS) - 1, :]


def proprio_features(obs: dict[str, np.ndarray], relative: bool = False) -> np.ndarray:
    """(8,) or (N, 8): eef position (m; zero with ``relative``), quaternion (xyzw), gripper opening (m)."""
    parts = [np.asarray(obs[k], np.float32) for k in PROPRIO_KEYS]
    if relative:
        parts[PROPRIO_KEYS.index("robot0_eef_pos")] = np.zeros_like(parts[0])
    return np.concatenate(parts, -1)


def grip_clock_steps(grip_chunks: np.ndarray, episode: np.ndarray, step: np.ndarray) -> np.ndarray:
    """(N,) int: for each row, how many steps in a row before its ``step`` the gripper was commanded closed
    (command > 0). ``grip_chunks`` (N, L): the gripper commands executed from each row's step on (the cached action
    chunks' last column), so rows every few steps of an episode still give every step's command. What
    :class:`ActionExpert` counts of its own actions as it acts."""
    grip_chunks, episode, step = np.asarray(grip_chunks), np.asarray(episode), np.asarray(step)
    clock = np.zeros(len(step), np.int64)
    for e in np.unique(episode):
        rows = np.flatnonzero(episode == e)
        closed = np.zeros(int(step[rows].max()) + 1, bool)  # each step's command (steps no row covers: open)
        for r in rows[np.argsort(step[rows])[::-1]]:  # the nearest row's chunk wins
            s = int(step[r])
            span = min(grip_chunks.shape[1], len(closed) - s)
            closed[s:s + span] = grip_chunks[r, :span] > 0
        run = np.zeros(len(closed) + 1, np.int64)  # run[s]: closed commands in a row just before step s
        for s in range(len(closed)):
            run[s + 1] = run[s] + 1 if closed[s] else 0
        clock[rows] = run[step[rows]]
    return clock


def grip_clock_feature(steps: np.ndarray) -> np.ndarray:
    """(..., 1) the clock the expert reads: min(steps, GRIP_CLOCK_CAP) / GRIP_CLOCK_CAP, in [0, 1]."""
    return (np.minimum(np.asarray(steps, np.float32), GRIP_CLOCK_CAP) / GRIP_CLOCK_CAP)[..., None]


POINT_DIM = 3 + 3 + 3 + LABEL_SLOTS + 3 * len(TRACE_STEPS)
MOTION_DIM = 3 * len(TRACE_STEPS)
MOTION_SLICE = slice(POINT_DIM - MOTION_DIM, POINT_DIM)  # the trace's columns in point_features
POINT_LABEL_SLICE = slice(9, 9 + LABEL_SLOTS)  # the label one-hot's columns in point_features
IN_GRIPPER_SLICE = slice(6, 9)  # ... and the point's position in the gripper's frame
WRIST_LABEL_SLICE = slice(6, 6 + LABEL_SLOTS)  # ... and in wrist_point_features
ROBOT_SLOT = 1  # label slot of the robot's (the gripper's) query points
WRIST_POINT_DIM = 3 + 3 + LABEL_SLOTS
PROPRIO_DIM = 3 + 4 + 1
IMAGE_DIM = 1280
WRIST_CHANNELS, WRIST_CELLS = 112, 64  # stride-16 cells of a 128 px wrist image


class ActionExpertNet(nn.Module):
    def __init__(self, config: ActionExpertConfig) -> None:
        super().__init__()
        d = config.dim
        self.config = config
        offsets = 3 * config.world_offsets
        if config.forecast_only:  # one summary of every label slot's mean forecast motion, in place of the points
            width = LABEL_SLOTS * (MOTION_DIM + 3 * config.slot_offsets)
            self.forecast = nn.Sequential(nn.Linear(width, d), nn.GELU(), nn.Linear(d, d))
        else:
            self.forecast = None
            width = POINT_DIM + offsets + MOTION_DIM * config.relative_motion
            self.point = nn.Sequential(nn.Linear(width, d), nn.GELU(), nn.Linear(d, d))
            if config.wrist_points:  # own embedding: the pooling tells them from μ0's query points by it
                self.wrist_point = nn.Sequential(nn.Linear(WRIST_POINT_DIM + offsets, d), nn.GELU(),
                                                 nn.Linear(d, d))
            if config.point_tokens:
                self.point_token = nn.Linear(config.point_tokens, d)
                if config.point_token_gate:  # closed at first: the tokens add nothing until training opens it
                    self.point_token_gate = nn.Parameter(torch.zeros(1))
            self.pool_query = nn.Parameter(torch.randn(1, 1, d) * 0.02)
            self.pool = nn.MultiheadAttention(d, 4, batch_first=True)
        self.proprio = nn.Sequential(nn.Linear(PROPRIO_DIM + config.grip_clock, d), nn.GELU())
        # whole-image features identify a demo at a glance; without them the expert must act from geometry
        self.image = nn.Sequential(nn.Linear(IMAGE_DIM, d), nn.GELU()) if config.image_feature else None
        parts = 2 + config.image_feature
        # a summary per object, not per point: mixed into the point tokens, the same numbers cost Panda's
        # approach on Stack (RESULTS.md)
        self.moments = nn.Sequential(nn.Linear(4 * OBJECT_SLOTS, d), nn.GELU()) if config.wrist_moments else None
        parts += config.wrist_moments
        if config.pooling == "per-label":
            # one pool per label slot: a slot's summary (e.g. where the cube to pick is, relative to the fingers)
            # no longer shifts with how many points the other objects got, which the one shared softmax does
            self.slot_queries = nn.Parameter(torch.randn(1, LABEL_SLOTS, d) * 0.02)
            self.slot_pool = nn.MultiheadAttention(d, 4, batch_first=True)
            parts += LABEL_SLOTS
        if config.reads_wrist_tokens:
            self.wrist = nn.Sequential(nn.Linear(WRIST_CHANNELS, d), nn.GELU(), nn.Linear(d, d))
            self.wrist_position = nn.Parameter(torch.randn(1, WRIST_CELLS, d) * 0.02)  # where in the view
            self.wrist_query = nn.Parameter(torch.randn(1, 1, d) * 0.02)
            self.wrist_pool = nn.MultiheadAttention(d, 4, batch_first=True)
            parts += 1
        out = config.chunk * config.action_dim
        extra = out + d if config.head == "flow" else 0  # flow: noisy chunk + time embedding
        # trace_skip: the gripper's forecast motion (its query points' mean trace, MOTION_DIM numbers) joins the
        # trunk and maps linearly onto the chunk. Delta actions move the gripper in the world axes the trace is in,
        # so "go where the gripper is forecast to go" is close to linear: a map that ten demos can fit, which the
        # pooled 32 points x 35 features leave the expert to discover. Trace-less variants read zeros (a bias).
        # Probed at 10 demos it does not help, and on Lift it costs the grasp (RESULTS.md): off by default.
        self.trace_skip = nn.Linear(MOTION_DIM, out) if config.trace_skip else None
        extra += MOTION_DIM if config.trace_skip else 0
        self.time = nn.Linear(1, d) if config.head == "flow" else None
        self.trunk = nn.Sequential(nn.Linear(parts * d + extra, 4 * d), nn.GELU(), nn.Linear(4 * d, 4 * d),
                                   nn.GELU(), nn.Linear(4 * d, out))

    def context(self, points: torch.Tensor, mask: torch.Tensor, proprio: torch.Tensor,
                image: torch.Tensor, wrist: torch.Tensor | None = None,
                wrist_points: tuple[torch.Tensor, ...] | None = None,
                slots: torch.Tensor | None = None, moments: torch.Tensor | None = None,
                point_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """``wrist_points``: (features, mask, slots) of the wrist-view points; ``slots`` (B, K) int64 label slot of
        each query point (:func:`label_slots`; ``pooling="per-label"`` only); ``moments`` (B, 4 * OBJECT_SLOTS)
        :func:`wrist_object_moments` (``wrist_moments`` only); ``point_tokens`` (B, K, width) μ0's normalized
        per-keypoint tokens (``point_tokens`` only)."""
        if self.forecast is not None:
            if slots is None:
                raise ValueError("a forecast_only expert needs each query point's label slot (slots=)")
            summary = self._slot_mean(points, mask, slots, MOTION_SLICE)
            if self.config.slot_offsets:
                summary = torch.cat([summary, self._slot_mean(points, mask, slots, IN_GRIPPER_SLICE)], -1)
            parts = [self.forecast(summary.flatten(1)), self.proprio(proprio)]
            if self.moments is not None:
                if moments is None:
                    raise ValueError("this expert reads its wrist-view objects' moments (moments=)")
                parts.append(self.moments(moments))
            return torch.cat(parts, -1)
        tokens = self.point(points)
        if self.config.point_tokens:
            if point_tokens is None or point_tokens.shape[1:] != (points.shape[1], self.config.point_tokens):
                raise ValueError(f"this expert reads μ0's point tokens, ({points.shape[1]}, "
                                 f"{self.config.point_tokens}) per observation; got "
                                 f"{None if point_tokens is None else tuple(point_tokens.shape[1:])}")
            gate = torch.tanh(self.point_token_gate) if self.config.point_token_gate else 1.0
            tokens = tokens + gate * self.point_token(point_tokens)
        if self.config.wrist_points:
            if wrist_points is None:
                raise ValueError(f"this expert reads {self.config.wrist_points} wrist_query points")
            tokens = torch.cat([tokens, self.wrist_point(wrist_points[0])], 1)
            mask = torch.cat([mask, wrist_points[1]], 1)
            if slots is not None:
                slots = torch.cat([slots, wrist_points[2]], 1)
        q = self.pool_query.expand(len(points), -1, -1)
        pad = ~mask.bool()
        pooled, _ = self.pool(q, tokens, tokens, key_padding_mask=pad & ~pad.all(-1, keepdim=True))  # none: no NaN
        parts = [pooled[:, 0], self.proprio(proprio)] + ([self.image(image)] if self.image is not None else [])
        if self.moments is not None:
            if moments is None:
                raise ValueError("this expert reads its wrist-view objects' moments (moments=)")
            parts.append(self.moments(moments))
        if self.config.pooling == "per-label":
            if slots is None:
                raise ValueError("a per-label pooling expert needs each query point's label slot (slots=)")
            parts.append(self._pool_per_slot(tokens, pad, slots).flatten(1))
        if self.config.reads_wrist_tokens:
            if wrist is None or wrist.shape[1:] != (WRIST_CELLS, WRIST_CHANNELS):
                raise ValueError(f"this expert reads {WRIST_CELLS} x {WRIST_CHANNELS} wrist_tokens from "
                                 f"{self.config.wrist_camera!r} at 128 px; got "
                                 f"{None if wrist is None else tuple(wrist.shape[1:])}")
            cells = self.wrist(wrist) + self.wrist_position
            pooled_wrist, _ = self.wrist_pool(self.wrist_query.expand(len(cells), -1, -1), cells, cells)
            parts.append(pooled_wrist[:, 0])
        if self.trace_skip is not None:  # last, where forward finds it
            if slots is None:
                raise ValueError("a trace_skip expert needs each query point's label slot (slots=) to find the gripper")
            parts.append(self._gripper_motion(points, mask, slots))
        return torch.cat(parts, -1)

    @staticmethod
    def _gripper_motion(points: torch.Tensor, mask: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """(B, MOTION_DIM) mean normalized trace of the real query points on the robot (zero where there is none)."""
        return ActionExpertNet._slot_mean(points, mask, slots, MOTION_SLICE)[:, ROBOT_SLOT]

    @staticmethod
    def _slot_mean(points: torch.Tensor, mask: torch.Tensor, slots: torch.Tensor, columns: slice) -> torch.Tensor:
        """(B, LABEL_SLOTS, width) mean of the normalized feature ``columns`` (e.g. the trace) over each label
        slot's real query points (zero for a slot without one). A product then a sum over the points, not a matrix
        product: the gripper's mean comes out bit for bit as trace_skip experts were trained with."""
        weight = mask.float()[:, None, :] * (slots[:, None, :] == torch.arange(LABEL_SLOTS)[None, :, None]).float()
        total = (points[:, None, :, columns] * weight[..., None]).sum(2)  # (B, S, K, width) summed over K
        return total / weight.sum(-1, keepdim=True).clamp(min=1.0)

    def _pool_per_slot(self, tokens: torch.Tensor, pad: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """(B, LABEL_SLOTS, d): each slot's query attends to that slot's points only; a slot with none is zero."""
        outside = pad[:, None, :] | (slots[:, None, :] != torch.arange(LABEL_SLOTS)[None, :, None])  # (B, S, K)
        empty = outside.all(-1, keepdim=True)  # (B, S, 1)
        heads = self.slot_pool.num_heads
        blocked = (outside & ~empty).repeat_interleave(heads, 0)  # an empty slot attends anywhere (no NaN), then 0
        pooled, _ = self.slot_pool(self.slot_queries.expand(len(tokens), -1, -1), tokens, tokens,
                                   attn_mask=blocked)
        return pooled.masked_fill(empty, 0.0)

    def forward(self, ctx: torch.Tensor, x_t: torch.Tensor | None = None, t: torch.Tensor | None = None):
        if self.config.head == "regression":
            out = self.trunk(ctx)
        else:
            out = self.trunk(torch.cat([ctx, x_t, self.time(t[:, None])], -1))
        if self.trace_skip is not None:
            out = out + self.trace_skip(ctx[:, -MOTION_DIM:])
        return out


@dataclass
class Normalization:
    """Per-dimension mean/std of proprioception and image features; actions scaled to [-1, 1] already."""

    proprio_mean: np.ndarray
    proprio_std: np.ndarray
    image_mean: np.ndarray
    image_std: np.ndarray
    point_mean: np.ndarray
    point_std: np.ndarray
    wrist_mean: np.ndarray | None = None  # per channel
    wrist_std: np.ndarray | None = None
    wrist_point_mean: np.ndarray | None = None  # per feature of the wrist-view points (``wrist_points``)
    wrist_point_std: np.ndarray | None = None
    point_token_mean: np.ndarray | None = None  # per channel of μ0's point tokens, over real points (``point_tokens``)
    point_token_std: np.ndarray | None = None

    @classmethod
    def fit(cls, proprio: np.ndarray, image: np.ndarray, points: np.ndarray, mask: np.ndarray,
            wrist: np.ndarray | None = None,
            wrist_points: tuple[np.ndarray, np.ndarray] | None = None,
            point_tokens: np.ndarray | None = None) -> "Normalization":
        """``wrist_points``: (features (N, W, F), mask (N, W)) of the wrist-view points; ``point_tokens`` (N, K, width)
        μ0's tokens of the query points (``mask`` says which are real)."""
        valid = points[mask > 0]
        wrist_stats = (None, None) if wrist is None else (
            wrist.reshape(-1, wrist.shape[-1]).mean(0, dtype=np.float64).astype(np.float32),
            wrist.reshape(-1, wrist.shape[-1]).std(0, dtype=np.float64).astype(np.float32) + 1e-3)
        point_stats = (None, None)
        if wrist_points is not None:
            seen = wrist_points[0][wrist_points[1] > 0]
            if not len(seen):
                raise ValueError("no wrist-view point in the training data: the wrist camera never saw a task object")
            point_stats = (seen.mean(0, dtype=np.float64).astype(np.float32), seen.std(0).astype(np.float32) + 1e-3)
        token_stats = (None, None)
        if point_tokens is not None:
            real = point_tokens[mask > 0]
            token_stats = (real.mean(0, dtype=np.float64).astype(np.float32),
                           real.std(0, dtype=np.float64).astype(np.float32) + 1e-3)
        return cls(proprio.mean(0), proprio.std(0) + 1e-3, image.mean(0), image.std(0) + 1e-3,
                   valid.mean(0), valid.std(0) + 1e-3, *wrist_stats, *point_stats, *token_stats)

    def to_dict(self) -> dict:
        return {k: np.asarray(v).tolist() for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict) -> "Normalization":
        return cls(**{k: np.asarray(v, np.float32) for k, v in data.items()})


class ActionExpert:
    """Policy interface (LeRobot-style): ``reset()``, ``select_action(obs)``, ``predict_action_chunk(obs)``.

    ``nets``: one network, or the ``config.ensemble`` members of an ensemble (same inputs and normalization, each
    trained with its own seed), whose action chunks are averaged. One training seed moves a study cell by several
    episodes in 50 (RESULTS.md): part of a single expert's error is its own, which the mean of several averages out.
    """

    def __init__(self, nets: ActionExpertNet | list[ActionExpertNet], norm: Normalization, seed: int = 0) -> None:
        self.members = [n.eval() for n in ([nets] if isinstance(nets, ActionExpertNet) else nets)]
        self.config = self.members[0].config
        if len(self.members) != self.config.ensemble:
            raise ValueError(f"the config asks for an ensemble of {self.config.ensemble} networks, got "
                             f"{len(self.members)}")
        self.norm = norm
        self._queue: list[np.ndarray] = []
        self._closed_steps = 0  # grip_clock: steps in a row its executed gripper command has been "close"
        self._gen = torch.Generator().manual_seed(seed)

    @property
    def net(self) -> ActionExpertNet:
        """The network of a single expert (what PPO fine-tunes); an ensemble has no one network."""
        if len(self.members) > 1:
            raise ValueError(f"this expert is an ensemble of {len(self.members)} networks; only a single network "
                             "(ensemble 1) can be used here")
        return self.members[0]

    def reset(self, seed: int | None = None) -> None:
        """Start an episode: drop queued actions; ``seed`` reseeds the flow head's sampling (so an episode's
        outcome depends on its seed only, not on which episodes ran before it in this process)."""
        self._queue = []
        self._closed_steps = 0
        if seed is not None:
            self._gen.manual_seed(seed)

    def tensors(self, obs: dict[str, np.ndarray]) -> tuple[torch.Tensor | None, ...]:
        """The network's inputs for one observation (a batch of one); a ``grip_clock`` expert adds its own clock."""
        batch = {k: np.asarray(v)[None] for k, v in obs.items()}
        if self.config.grip_clock:
            batch[GRIP_CLOCK_KEY] = np.array([self._closed_steps])
        return expert_inputs(batch, self.config, self.norm)

    @torch.no_grad()
    def predict_action_chunk(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """(chunk, action_dim) actions in [-1, 1] for this observation (an ensemble's: the members' mean)."""
        inputs = self.tensors(obs)
        chunks = [self._member_chunk(net, net.context(*inputs)) for net in self.members]
        flat = torch.stack(chunks).mean(0)
        return flat.view(self.config.chunk, self.config.action_dim).clamp(-1, 1).numpy()

    def _member_chunk(self, net: ActionExpertNet, ctx: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.head == "regression":
            return net(ctx)
        flat = torch.randn(1, cfg.chunk * cfg.action_dim, generator=self._gen)
        for i in range(cfg.flow_steps):
            t = torch.full((1,), 1.0 - i / cfg.flow_steps)
            flat = flat - net(ctx, flat, t) / cfg.flow_steps
        return flat

    def select_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Next action; a new chunk is predicted when the last one's ``execute`` actions are used up (align this
        with the wrapper's ``query_every`` so each chunk starts on a fresh μ0 query)."""
        if not self._queue:
            self._queue = list(self.predict_action_chunk(obs)[:self.config.execute])
        action = self._queue.pop(0).astype(np.float32)
        self._closed_steps = self._closed_steps + 1 if action[-1] > 0 else 0
        return action

    # ----------------------------------------------------------------------------------------- checkpoints
    def save(self, directory: str | Path, extra: dict | None = None) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # config.json last: it marks a finished checkpoint (`mu0sim ablate` reuses a folder that has one)
        weights = directory / "model.safetensors"
        save_file({k: v.contiguous() for k, v in member_weights(self.members).items()},
                  str(weights.with_suffix(".tmp")))
        os.replace(weights.with_suffix(".tmp"), weights)
        atomic_write_text(directory / "normalization.json", json.dumps(self.norm.to_dict()))
        atomic_write_text(directory / "config.json", json.dumps({"policy": asdict(self.config), **(extra or {})},
                                                                indent=1))

    @classmethod
    def from_pretrained(cls, directory: str | Path, robot: str | None = None, mu0_id: str | None = None,
                        seed: int = 0) -> "ActionExpert":
        """Load; ``robot``/``mu0_id`` (when given) must match what it was trained for — a clear error otherwise."""
        from safetensors.torch import load_file

        directory = Path(directory)
        for name in ("config.json", "model.safetensors", "normalization.json"):
            if not (directory / name).exists():
                raise FileNotFoundError(f"{directory / name} not found: not an action-expert checkpoint")
        meta = json.loads((directory / "config.json").read_text())
        inputs = meta["policy"].get("inputs", 1)  # checkpoints before the version was recorded read version 1
        if inputs != EXPERT_INPUTS:
            raise ValueError(f"{directory} was trained on expert inputs version {inputs}; this mu0sim builds version "
                             f"{EXPERT_INPUTS} (see EXPERT_INPUTS in mu0sim.policies.action_expert): retrain it "
                             "with `mu0sim train-policy`")
        config = ActionExpertConfig.from_dict(meta["policy"])
        if robot is not None and robot != config.robot:
            raise ValueError(f"{directory} was trained for robot {config.robot!r}, not {robot!r}")
        if mu0_id is not None and config.mu0_id and mu0_id != config.mu0_id:
            raise ValueError(f"{directory} was trained on traces of μ0 {config.mu0_id}, this μ0 is {mu0_id}")
        members = [ActionExpertNet(config) for _ in range(config.ensemble)]
        load_member_weights(members, load_file(str(directory / "model.safetensors")))
        return cls(members, Normalization.from_dict(json.loads((directory / "normalization.json").read_text())), seed)


def member_weights(members: list[ActionExpertNet]) -> dict[str, torch.Tensor]:
    """One state dict for an expert's networks: a single network's keys as they are (every checkpoint before
    ensembles), an ensemble's prefixed by the member's index (``"0.trunk.0.weight"``, ...)."""
    if len(members) == 1:
        return members[0].state_dict()
    return nn.ModuleList(members).state_dict()


def load_member_weights(members: list[ActionExpertNet], weights: dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`member_weights`; a checkpoint with another number of members fails with torch's key error."""
    if len(members) == 1:
        members[0].load_state_dict(weights)
    else:
        nn.ModuleList(members).load_state_dict(weights)


def expert_env(policy_dir: str | Path, mu0_ckpt: str | Path, task: str, robot: str | None = None,
               max_episode_steps: int | None = None, mu0_runtime: str = "torchscript",
               query_history: bool | None = None):
    """The policy at ``policy_dir`` and the env it acts in: ``task`` on its robot, wrapped in
    :class:`~mu0sim.policies.trace_observation.Mu0TraceObservation` as it was trained (μ0, query points, trace
    source, wrist camera, μ0's query history; μ0 queried at every chunk start), without the wrist view's feature
    cells when the expert does not read them. ``robot`` (when given) must be the policy's. ``mu0_runtime``: how μ0
    runs (``Mu0.from_pretrained``'s ``runtime``); ``query_history``: give μ0 the query points' history or not,
    against how the policy was trained (None: as trained). Returns ``(env, ActionExpert)``."""
    from mu0sim.envs import make_env
    from mu0sim.model import Mu0
    from mu0sim.policies.trace_observation import Mu0TraceObservation
    from mu0sim.policies.train_bc import mu0_fingerprint, trace_source

    mu0 = Mu0.from_pretrained(mu0_ckpt, runtime=mu0_runtime)
    policy = ActionExpert.from_pretrained(policy_dir, robot=robot, mu0_id=mu0_fingerprint(mu0_ckpt))
    meta = json.loads((Path(policy_dir) / "config.json").read_text())
    train_config = meta["train_config"]
    limit = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    env = make_env(task, policy.config.robot, cameras=(mu0.config.camera,), image_size=mu0.image_size, depth=True,
                   segmentation=True, image_period=0, **limit)
    oracle = None
    if trace_source(policy.config.variant) == "oracle":  # the expert the demos were collected with, rolled forward
        from mu0sim.policies.oracle_traces import ExpertTraceOracle

        collection = meta.get("data_collection") or {}
        oracle = ExpertTraceOracle(task, policy.config.robot, collection.get("expert_options"))
    env = Mu0TraceObservation(env, mu0, query=train_config["query"], num_points=train_config["num_points"],
                              query_every=policy.config.execute, camera=mu0.config.camera,
                              traces=trace_source(policy.config.variant), wrist_camera=policy.config.wrist_camera,
                              wrist_features=policy.config.reads_wrist_tokens,
                              wrist_points=policy.config.wrist_points, oracle=oracle,
                              pixel_moments=policy.config.moments_from == "pixels",
                              point_tokens=bool(policy.config.point_tokens),
                              query_history=train_config.get("query_history", False) if query_history is None
                              else query_history)
    return env, policy


def expert_proprio(obs: dict[str, np.ndarray], config: ActionExpertConfig, norm: Normalization) -> np.ndarray:
    """(..., PROPRIO_DIM (+ 1)) float32 normalized proprioception, plus the expert's gripper clock (``grip_clock``:
    ``obs[GRIP_CLOCK_KEY]`` steps, counted by :meth:`ActionExpert.select_action` in closed loop and by
    :func:`grip_clock_steps` from the demos in training): the one place both build the trunk's proprio input."""
    proprio = (proprio_features(obs, config.relative_inputs) - norm.proprio_mean) / norm.proprio_std
    if config.grip_clock:
        if GRIP_CLOCK_KEY not in obs:
            raise ValueError(f"this expert reads its own gripper clock ({GRIP_CLOCK_KEY!r}), which "
                             "ActionExpert.select_action keeps as it acts; it is not an env observation")
        proprio = np.concatenate([proprio, grip_clock_feature(obs[GRIP_CLOCK_KEY])], -1)
    return proprio.astype(np.float32)


def expert_inputs(obs: dict[str, np.ndarray], config: ActionExpertConfig,
                  norm: Normalization) -> tuple:
    """(points, mask, proprio, image, wrist, wrist_points, slots, moments, point_tokens) normalized tensors for
    :meth:`ActionExpertNet.context` from a batch of observations (every array with a leading batch dimension);
    ``wrist`` is None unless the expert reads the wrist view's cells (``reads_wrist_tokens``), ``wrist_points``
    ((features, mask, slots) of the wrist-view points) None without ``wrist_points``; ``slots``: each query point's
    label slot; ``moments``: the wrist-view objects' :func:`object_moments` (already in [-1, 1]; None without
    ``wrist_moments``); ``point_tokens``: μ0's tokens of the query points (None without ``point_tokens``)."""
    points = (point_features(obs, config.variant, config.world_offsets, config.relative_inputs,
                             config.traced_points, config.relative_motion) - norm.point_mean) / norm.point_std
    wrist = None
    if config.reads_wrist_tokens:
        if "wrist_tokens" not in obs:
            raise ValueError(f"this expert needs wrist_tokens from {config.wrist_camera!r}: wrap the env with "
                             f"Mu0TraceObservation(..., wrist_camera={config.wrist_camera!r})")
        wrist = torch.as_tensor(((obs["wrist_tokens"] - norm.wrist_mean) / norm.wrist_std).astype(np.float32))
    wrist_points = None
    if config.wrist_points:
        if "wrist_query_world" not in obs:
            raise ValueError(f"this expert needs {config.wrist_points} wrist-view points: wrap the env with "
                             f"Mu0TraceObservation(..., wrist_points={config.wrist_points})")
        features = (wrist_point_features(obs, config.world_offsets, config.relative_inputs) - norm.wrist_point_mean
                    ) / norm.wrist_point_std
        wrist_points = (torch.as_tensor(features.astype(np.float32)),
                        torch.as_tensor(np.asarray(obs["wrist_query_mask"], np.float32)),
                        torch.as_tensor(label_slots(obs["wrist_query_label"])))
    point_tokens = None
    if config.point_tokens:
        if "mu0_point_tokens" not in obs:
            raise ValueError("this expert reads μ0's point tokens: wrap the env with "
                             "Mu0TraceObservation(..., point_tokens=True)")
        point_tokens = torch.as_tensor(((np.asarray(obs["mu0_point_tokens"], np.float32) - norm.point_token_mean)
                                        / norm.point_token_std).astype(np.float32))
    return (torch.as_tensor(points.astype(np.float32)), torch.as_tensor(np.asarray(obs["mu0_query_mask"])),
            torch.as_tensor(expert_proprio(obs, config, norm)),
            torch.as_tensor(((obs["mu0_image"] - norm.image_mean) / norm.image_std).astype(np.float32)), wrist,
            wrist_points, torch.as_tensor(label_slots(obs["mu0_query_label"])),
            torch.as_tensor(expert_moments(obs, config)) if config.wrist_moments else None, point_tokens)


def expert_moments(obs: dict[str, np.ndarray], config: ActionExpertConfig) -> np.ndarray:
    """The wrist-view objects' moments the expert reads (``config.moments_from``), for a batch of observations."""
    if config.moments_from == "pixels":
        if "wrist_object_moments" not in obs:
            raise ValueError("this expert reads its objects' moments from every wrist-view pixel: wrap the env with "
                             "Mu0TraceObservation(..., pixel_moments=True)")
        return np.asarray(obs["wrist_object_moments"], np.float32)
    return wrist_object_moments(obs)


def chunk_loss(net: ActionExpertNet, ctx: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """target (B, chunk * action_dim), valid (B, chunk * action_dim) 0/1 (steps past the demo's end are 0)."""
    if net.config.head == "regression":
        err = (net(ctx) - target) ** 2
    else:
        t = torch.distributions.Beta(1.5, 1.0).sample((len(target),))
        noise = torch.randn_like(target)
        x_t = t[:, None] * noise + (1 - t[:, None]) * target
        err = (net(ctx, x_t, t) - (noise - target)) ** 2
    return (err * valid).sum() / valid.sum().clamp(min=1)


__all__ = ["ActionExpert", "ActionExpertConfig", "ActionExpertNet", "HEADS", "Normalization", "PRETRAINED_VARIANTS",
           "VARIANTS", "chunk_loss", "expert_env", "expert_inputs", "object_moments", "point_features",
           "proprio_features", "wrist_object_moments",
           "label_one_hot", "label_slots",
           "POOLINGS",
           "wrist_point_features",
           "EXPERT_INPUTS", "LABEL_SLOTS", "MOMENT_SOURCES", "expert_moments", "load_member_weights",
           "member_weights", "GRIP_CLOCK_CAP", "GRIP_CLOCK_KEY", "expert_proprio", "grip_clock_feature",
           "grip_clock_steps", "POINT_LABEL_SLICE", "WRIST_LABEL_SLICE", "TRACE_3D_VARIANTS", "MU0_FORECAST_VARIANTS"]
