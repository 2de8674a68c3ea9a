"""TraceExtract over a dataset: keypoints, 3D traces, visibility and captioned motion segments per episode.

``sim`` mode follows each keypoint's MuJoCo body through the recorded states (ground truth). ``video`` mode sees
only the episode's RGB-D frames and camera parameters (tracked with Lucas–Kanade, lifted by depth) and is scored
against sim mode on the same keypoints. Both write the same schema to a sidecar file next to the dataset
(``<dataset>.traces-<mode>.hdf5``; documented in docs/traces.md), atomically, skipping demos already extracted.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mu0sim.bspline import evaluate_bspline, fit_bspline
from mu0sim.datasets.hdf5 import demo_names, make_env_from_dataset, open_dataset, read_env_args
from mu0sim.traces.keypoints import CATEGORIES, Keypoints, contact_keypoints, gripper_keypoints, \
    select_surface_keypoints
from mu0sim.traces.segments import Segment, segment_episode
from mu0sim.traces.tracking import Tracks, project_tracks, track_video

MODES = ("sim", "video")
CONTACT_SEARCH_STEPS = 20  # a grasp closes within ~12 steps of the close command
FORMAT_VERSION = 1


@dataclass
class ExtractConfig:
    """Options of ``mu0sim extract`` (see its ``--help``)."""

    dataset: Path
    mode: str = "sim"
    camera: str | None = None
    points_per_object: int = 16
    grid: int = 0
    min_motion_m: float = 0.01
    horizon: int = 32
    out: Path | None = None
    commit_s: float = 30.0
    episodes: int | None = None  # extract only the first N demos (a later run with a larger N extends the sidecar)

    def output_path(self) -> Path:
        return self.out or self.dataset.with_name(f"{self.dataset.stem}.traces-{self.mode}.hdf5")

    def settings(self) -> dict[str, Any]:
        """What changes the output (a sidecar extracted with other settings is not appended to)."""
        return {k: v for k, v in asdict(self).items() if k not in ("dataset", "out", "commit_s", "episodes")}


@dataclass
class EpisodeTraces:
    """Everything extracted from one demo; arrays over T frames and K keypoints."""

    keypoints: Keypoints
    tracks: Tracks
    segments: list[Segment]
    gt_error_m: np.ndarray | None = None  # video mode: (T, K) 3D error vs sim, NaN where not comparable
    fit_error_mm: dict[int, np.ndarray] = field(default_factory=dict)  # sim mode: per-window ADE of spline fits


def _camera_for(env_args: dict, requested: str | None) -> str:
    cameras = env_args.get("mu0sim", {}).get("kwargs", {}).get("cameras") or []
    return requested or (cameras[0] if cameras else "agentview")


def spline_fit_errors(world: np.ndarray, horizon: int, stride: int = 4) -> dict[int, np.ndarray]:
    """ADE (mm) of D = 4/7/10 fits to every ``horizon``-step future window (every ``stride`` frames, all points)."""
    starts = np.arange(0, world.shape[0] - horizon, stride)
    if len(starts) == 0:
        return {d: np.zeros(0) for d in (4, 7, 10)}
    windows = np.stack([world[s + 1:s + 1 + horizon] - world[s] for s in starts])  # (W, H, K, 3)
    windows = windows.transpose(0, 2, 1, 3).reshape(-1, horizon, 3).astype(np.float64)  # (W*K, H, 3)
    errors = {}
    for d in (4, 7, 10):
        control, _ = fit_bspline(windows, num_control=d)
        errors[d] = np.linalg.norm(evaluate_bspline(control, horizon) - windows, axis=-1).mean(-1) * 1000
    return errors


def extract_episode(base, episode: dict, camera: str, config: ExtractConfig, rng: np.random.Generator,
                    recorded: dict[str, np.ndarray] | None = None) -> EpisodeTraces:
    """TraceExtract on one demo. ``base``: unwrapped Mu0SimEnv from the dataset rendering ``camera`` with depth.
    ``recorded``: the demo's own RGB, depth and camera poses, used by video mode when the dataset has them."""
    states, actions = episode["states"], episode["actions"]
    base.reset_to_state(states[0], episode["model_file"])
    keypoints = select_surface_keypoints(base, camera, base.camera_params(camera), config.points_per_object,
                                         config.grid, rng)
    keypoints = keypoints.concat(gripper_keypoints(base))
    # contact points: where the fingers touch the object in the first frames after the close command
    closing = np.flatnonzero(actions[:, 6] > 0)
    if len(closing):
        for t in range(int(closing[0]), min(int(closing[0]) + CONTACT_SEARCH_STEPS, len(states))):
            base.observe_state(states[t], render=False)
            contacts = contact_keypoints(base)
            if len(contacts):
                keypoints = keypoints.concat(contacts)
                break

    object_bodies = {name: base.mj_model.body(body).id for name, body in base.object_root_bodies.items()}
    world, params, rgb, depth, eef, objects = [], [], [], [], [], {n: [] for n in object_bodies}
    for state in states:
        obs = base.observe_state(state)
        world.append(keypoints.world_positions(base.mj_data))
        params.append(base.camera_params(camera))
        rgb.append(obs[f"{camera}_image"])
        depth.append(obs[f"{camera}_depth"][..., 0])
        eef.append(obs["robot0_eef_pos"])
        for name, body in object_bodies.items():
            objects[name].append(base.mj_data.xpos[body].copy())
    world, depth = np.array(world), np.array(depth)
    sim = project_tracks(world, params, depth)
    moving = np.max(np.linalg.norm(world - world[:1], axis=-1), axis=0) >= config.min_motion_m
    keep = moving & (sim.visible[0] if config.mode == "video" else True)
    keypoints = keypoints.subset(keep)
    sim = Tracks(*(getattr(sim, f)[:, keep] for f in ("world", "uv_px", "depth_m", "visible", "valid")))
    task = base.task_spec
    segments = segment_episode(np.array(eef), actions[:, 6], {n: np.array(p) for n, p in objects.items()},
                               base.instruction, task.task_motion)
    if config.mode == "sim":
        return EpisodeTraces(keypoints, sim, segments, fit_error_mm=spline_fit_errors(sim.world, config.horizon))
    if recorded is not None:  # the demonstration's own frames and camera parameters
        rgb, depth, params = recorded["rgb"], recorded["depth"], recorded["params"]
    video = track_video(np.array(rgb), np.asarray(depth), params, sim.uv_px[0], sim.visible[0])
    comparable = video.visible & sim.visible
    error = np.where(comparable, np.linalg.norm(video.world - sim.world, axis=-1), np.nan)
    return EpisodeTraces(keypoints, video, segments, gt_error_m=error)


# ------------------------------------------------------------------------------------------------- sidecar file
def _write_episode(group: h5py.Group, traces: EpisodeTraces) -> None:
    kp, tr = traces.keypoints, traces.tracks
    k = group.create_group("keypoints")
    k.create_dataset("uv_px_t0", data=tr.uv_px[0])
    k.create_dataset("world_t0", data=tr.world[0])
    k.create_dataset("category", data=kp.category)
    k.create_dataset("owner", data=np.array(kp.owner, dtype="S"))
    k.create_dataset("body", data=kp.body)
    k.create_dataset("body_offset", data=kp.offset)
    t = group.create_group("traces")
    for name in ("world", "uv_px", "depth_m", "visible", "valid"):
        t.create_dataset(name, data=getattr(tr, name), compression="lzf")
    if traces.gt_error_m is not None:
        t.create_dataset("gt_error_m", data=traces.gt_error_m.astype(np.float32), compression="lzf")
    s = group.create_group("segments")
    s.create_dataset("start", data=np.array([x.start for x in traces.segments], dtype=np.int32))
    s.create_dataset("end", data=np.array([x.end for x in traces.segments], dtype=np.int32))
    s.create_dataset("level", data=np.array([x.level for x in traces.segments], dtype=np.int8))
    s.create_dataset("caption", data=np.array([x.caption for x in traces.segments], dtype="S"))
    for d, errors in traces.fit_error_mm.items():
        group.create_dataset(f"spline_fit_ade_mm/D{d}", data=errors.astype(np.float32))


def _commit(out: Path, attrs: dict[str, Any], done: dict[str, EpisodeTraces]) -> None:
    """Rewrite the sidecar with the demos already in it plus ``done``, atomically."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            for key, value in attrs.items():
                f.attrs[key] = value
            if out.exists():
                with h5py.File(out, "r") as old:
                    for name in old:
                        if name not in done:
                            old.copy(old[name], f, name=name)
            for name, traces in done.items():
                _write_episode(f.create_group(name), traces)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_traces(path: str | os.PathLike, demo: str) -> dict[str, Any]:
    """One demo of a sidecar as plain arrays (``keypoints/*``, ``traces/*``, ``segments``)."""
    with h5py.File(path, "r") as f:
        if demo not in f:
            raise ValueError(f"{path}: no traces for {demo}; extracted: {', '.join(sorted(f))[:200]}")
        g = f[demo]
        out = {f"keypoints/{k}": g["keypoints"][k][()] for k in g["keypoints"]}
        out.update({f"traces/{k}": g["traces"][k][()] for k in g["traces"]})
        seg = g["segments"]
        out["segments"] = [Segment(int(a), int(b), int(c), d.decode()) for a, b, c, d in
                           zip(seg["start"][()], seg["end"][()], seg["level"][()], seg["caption"][()])]
        out["attrs"] = dict(f.attrs)
    return out


# ------------------------------------------------------------------------------------------------- whole dataset
def extract_dataset(config: ExtractConfig, progress: bool = True) -> dict[str, Any]:
    """Run TraceExtract on every demo not yet in the sidecar; return the one-line summary."""
    from tqdm import tqdm

    if config.mode not in MODES:
        raise ValueError(f"unknown mode {config.mode!r}; valid modes: {', '.join(MODES)}")
    env_args = read_env_args(config.dataset)
    camera = _camera_for(env_args, config.camera)
    out = config.output_path()
    attrs = {"mode": config.mode, "camera": camera, "dataset": config.dataset.name,
             "settings": json.dumps(config.settings()), "categories": json.dumps(CATEGORIES),
             "format_version": FORMAT_VERSION}
    existing: set[str] = set()
    if out.exists():
        with h5py.File(out, "r") as f:
            if f.attrs.get("settings") != attrs["settings"]:
                raise ValueError(f"{out} was extracted with other settings ({f.attrs.get('settings')}); "
                                 "remove it or pass another --out")
            existing = set(f)
    with open_dataset(config.dataset) as f:
        if config.episodes is not None and config.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {config.episodes}")
        names = [n for n in demo_names(f)[:config.episodes] if n not in existing]
        has_video = f"{camera}_image" in f[f"data/{demo_names(f)[0]}/obs"] and \
            f"{camera}_depth" in f[f"data/{demo_names(f)[0]}/obs"]
    env = make_env_from_dataset(config.dataset, cameras=(camera,), depth=True, segmentation=False)
    base = env.unwrapped
    done: dict[str, EpisodeTraces] = {}
    start, last_commit, frames = time.perf_counter(), time.monotonic(), 0
    try:
        with open_dataset(config.dataset) as f:
            for name in tqdm(names, desc=f"extract ({config.mode})", unit="demo", disable=not progress,
                             dynamic_ncols=True):
                g = f[f"data/{name}"]
                episode = {"states": g["states"][()], "actions": g["actions"][()],
                           "model_file": g.attrs["model_file"]}
                recorded = None
                if config.mode == "video" and has_video:
                    recorded = {"rgb": g[f"obs/{camera}_image"][()], "depth": g[f"obs/{camera}_depth"][()][..., 0],
                                "params": _recorded_params(g, camera, base)}
                rng = np.random.default_rng(int(g.attrs.get("seed", 0)))
                done[name] = extract_episode(base, episode, camera, config, rng, recorded)
                frames += len(episode["states"])
                if time.monotonic() - last_commit > config.commit_s:
                    _commit(out, attrs, done)
                    existing |= set(done)
                    done, last_commit = {}, time.monotonic()
    finally:
        if done:
            _commit(out, attrs, done)
        env.close()
    wall = time.perf_counter() - start
    return _summary(out, config, frames, wall)


def _recorded_params(group: h5py.Group, camera: str, base):
    from mu0sim.camera import CameraParams

    k = group[f"camera/{camera}/intrinsics"][()]
    h, w = base.image_hw
    return [CameraParams(camera, w, h, k, pose) for pose in group[f"camera/{camera}/cam_to_world"][()]]


def _summary(out: Path, config: ExtractConfig, frames: int, wall: float) -> dict[str, Any]:
    """Summary over the whole sidecar (all demos, also those of earlier runs)."""
    summary: dict[str, Any] = {"mode": config.mode, "out": str(out), "frames_this_run": frames,
                               "wall_s": round(wall, 2), "frames_per_s": round(frames / wall, 1) if wall else None}
    with h5py.File(out, "r") as f:
        names = list(f)
        summary["episodes"] = len(names)
        summary["keypoints_per_episode"] = round(float(np.mean([len(f[n]["keypoints/body"]) for n in names])), 1)
        if config.mode == "video":
            errors = np.concatenate([f[n]["traces/gt_error_m"][()].ravel() for n in names])
            errors = errors[np.isfinite(errors)]
            valid = [f[n]["traces/valid"][()] for n in names]
            summary["median_err_m"] = round(float(np.median(errors)), 4) if len(errors) else None
            summary["p90_err_m"] = round(float(np.quantile(errors, 0.9)), 4) if len(errors) else None
            summary["survival"] = round(float(np.mean(np.concatenate([v[-1] for v in valid]))), 3)
        else:
            for d in (4, 7, 10):
                ade = np.concatenate([f[n][f"spline_fit_ade_mm/D{d}"][()] for n in names])
                summary[f"spline_fit_ade_mm_D{d}"] = {"mean": round(float(ade.mean()), 3),
                                                      "p90": round(float(np.quantile(ade, 0.9)), 3)}
    return summary
