"""μ0 training samples: (image, depth, instruction, query keypoints, their history and future) from TraceExtract.

One sample is one anchor frame ``t`` of one demo. Its query points are the sidecar's keypoints visible at ``t``
(at most ``max_keypoints``); for each, the current point and its past ``history`` and next ``horizon`` positions are
expressed in the anchor frame's camera as ``uvz``: u, v normalized to [-1, 1] and metric z-depth (REFERENCE.md §1).
Because the backbone is frozen, its features are computed once here and cached next to the dataset
(``<dataset>.mu0-samples.hdf5``); training then touches only the trace expert.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import mujoco
import numpy as np
import torch

from mu0sim.camera import CameraParams, normalize_uv, project_points
from mu0sim.datasets.hdf5 import demo_names, make_env_from_dataset, open_dataset, read_env_args

SAMPLES_FORMAT_VERSION = 1


@dataclass(frozen=True)
class SampleConfig:
    """How anchors and query points are drawn from a demo (stored in the cache and the checkpoint)."""

    camera: str = "agentview"
    image_size: int = 128
    stride: int = 4  # one anchor every ``stride`` frames
    history: int = 8
    horizon: int = 32
    max_keypoints: int = 64
    episodes: int | None = None  # first N demos of each file (None: all with traces)
    # training-data augmentation: the chance that a demo is rendered with the robot's visual geoms in random colours
    # (one uniform RGB per geom), so that μ0 may learn what a robot does apart from what it looks like; evaluation
    # always renders the true colours (``mu0sim eval-traces``)
    robot_colors: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.robot_colors <= 1.0:
            raise ValueError(f"samples.robot_colors is a chance, in [0, 1]; got {self.robot_colors}")

    def cache_key(self) -> str:
        settings = asdict(self)
        if not self.robot_colors:  # the settings before the option existed: their caches stay valid
            del settings["robot_colors"]
        return json.dumps({**settings, "format": SAMPLES_FORMAT_VERSION}, sort_keys=True)


@dataclass
class TraceSamples:
    """Arrays over N anchors, K (padded) keypoints; see the module docstring for coordinates.

    Frozen features are float16: ``rgb_map``/``depth_map`` (N, 112, h/16, w/16), ``rgb_tokens`` (N, 1280, h/32,
    w/32), ``depth_tokens`` (N, 1280) (pooled).
    """

    rgb_map: np.ndarray
    depth_map: np.ndarray
    rgb_tokens: np.ndarray
    depth_tokens: np.ndarray
    instruction: np.ndarray  # (N,) index into ``instructions``
    current: np.ndarray  # (N, K, 3) uvz of the query point at the anchor
    history: np.ndarray  # (N, K, Hh, 3) past uvz minus current, oldest first
    history_valid: np.ndarray  # (N, K, Hh) bool
    future: np.ndarray  # (N, K, H, 3) future uvz (absolute) at steps t+1..t+H
    future_valid: np.ndarray  # (N, K, H) bool (inside the episode)
    keypoint_mask: np.ndarray  # (N, K) bool, False = padding
    category: np.ndarray  # (N, K) int8, TraceExtract category index
    body: np.ndarray  # (N, K) int32, MuJoCo body the point is attached to (rigid groups)
    intrinsics: np.ndarray  # (N, 3, 3) of the anchor camera, pixels
    episode: np.ndarray  # (N,) demo index within its file
    frame: np.ndarray  # (N,) anchor frame
    robot: np.ndarray  # (N,) index into ``robots``
    task: np.ndarray  # (N,) index into ``tasks``
    instructions: list[str]
    robots: list[str]
    tasks: list[str]
    image_hw: tuple[int, int]

    ARRAY_FIELDS = ("rgb_map", "depth_map", "rgb_tokens", "depth_tokens", "instruction", "current", "history",
                    "history_valid", "future", "future_valid", "keypoint_mask", "category", "body", "intrinsics",
                    "episode", "frame", "robot", "task")

    def __len__(self) -> int:
        return len(self.current)

    def subset(self, index: np.ndarray) -> "TraceSamples":
        return TraceSamples(**{f: getattr(self, f)[index] for f in self.ARRAY_FIELDS},
                            instructions=self.instructions, robots=self.robots, tasks=self.tasks,
                            image_hw=self.image_hw)

    @staticmethod
    def concat(parts: list["TraceSamples"]) -> "TraceSamples":
        """Join sample sets (lookup tables merged, indices remapped, keypoint axis padded to the widest)."""
        if not parts:
            raise ValueError("no samples to concatenate")
        hw = parts[0].image_hw
        if any(p.image_hw != hw for p in parts):
            raise ValueError(f"sample sets have different image sizes: {sorted({p.image_hw for p in parts})}")
        tables = {name: sorted({x for p in parts for x in getattr(p, name)})
                  for name in ("instructions", "robots", "tasks")}
        width = max(p.current.shape[1] for p in parts)
        out: dict[str, list[np.ndarray]] = {f: [] for f in TraceSamples.ARRAY_FIELDS}
        for p in parts:
            remap = {"instruction": ("instructions", p.instructions), "robot": ("robots", p.robots),
                     "task": ("tasks", p.tasks)}
            for f in TraceSamples.ARRAY_FIELDS:
                a = getattr(p, f)
                if f in remap:
                    table, local = remap[f]
                    a = np.array([tables[table].index(x) for x in local], dtype=np.int32)[a]
                elif f in _KEYPOINT_FIELDS and a.shape[1] < width:
                    pad = [(0, 0)] * a.ndim
                    pad[1] = (0, width - a.shape[1])
                    a = np.pad(a, pad)
                out[f].append(a)
        return TraceSamples(**{f: np.concatenate(v) for f, v in out.items()}, **tables, image_hw=hw)


_KEYPOINT_FIELDS = ("current", "history", "history_valid", "future", "future_valid", "keypoint_mask", "category",
                    "body")


def sidecar_for(dataset: Path) -> Path:
    return dataset.with_name(f"{dataset.stem}.traces-sim.hdf5")


def cache_path_for(dataset: Path) -> Path:
    return dataset.with_name(f"{dataset.stem}.mu0-samples.hdf5")


def to_uvz(world: np.ndarray, params: CameraParams) -> np.ndarray:
    """World points (..., 3) -> (..., 3) uvz in ``params``' camera (u, v in [-1, 1], z metres)."""
    uv_px, depth = project_points(world, params)
    return np.concatenate([normalize_uv(uv_px, params.width_px, params.height_px), depth[..., None]], -1)


def anchor_keypoints(world: np.ndarray, visible: np.ndarray, t: int, params: CameraParams, config: SampleConfig,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Query points of anchor ``t``: keypoints visible at ``t`` (at most ``max_keypoints``, a random subset) with
    their uvz history and future in the anchor camera. ``world`` (T, K, 3) metres, ``visible`` (T, K)."""
    steps = len(world)
    chosen = np.flatnonzero(visible[t])
    if len(chosen) > config.max_keypoints:
        chosen = np.sort(rng.choice(chosen, config.max_keypoints, replace=False))
    past = np.arange(t - config.history, t)
    ahead = np.arange(t + 1, t + 1 + config.horizon)
    current = to_uvz(world[t, chosen], params)
    history = to_uvz(world[np.clip(past, 0, steps - 1)][:, chosen], params).transpose(1, 0, 2) - current[:, None]
    future = to_uvz(world[np.clip(ahead, 0, steps - 1)][:, chosen], params).transpose(1, 0, 2)
    return {"index": chosen, "current": current, "history": history,
            "history_valid": np.broadcast_to(past >= 0, history.shape[:2]),
            "future": future, "future_valid": np.broadcast_to(ahead < steps, future.shape[:2])}


ROBOT_COLORS_STREAM = 0xC0105  # the colour draw's own RNG stream: the keypoint draw stays that of plain samples


@contextlib.contextmanager
def robot_colors_randomized(base, rng: np.random.Generator) -> Iterator[None]:
    """While in the block, ``base`` (an unwrapped Mu0SimEnv) renders the robot's and gripper's visual geoms (MuJoCo
    geom group 1, names ``robot0_*`` / ``gripper0_*``) each in one random colour, RGB uniform in [0, 1]; a geom's
    rgba overrides its material's colour. The mount under the arm, which segmentation labels robot too, keeps its
    colours: the arm and gripper are what differ between embodiments. The model's colours are restored after."""
    model = base.robosuite_env.sim.model._model
    ids = [i for i in range(model.ngeom) if model.geom_group[i] == 1
           and (mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, i) or "").startswith(("robot0_", "gripper0_"))]
    saved = model.geom_rgba[ids].copy()
    model.geom_rgba[ids, :3] = rng.uniform(0.0, 1.0, (len(ids), 3))
    try:
        yield
    finally:
        model.geom_rgba[ids] = saved


def build_samples(dataset: str | os.PathLike, config: SampleConfig, encoder, progress: bool = True) -> TraceSamples:
    """Samples of one dataset (with its sim-mode TraceExtract sidecar); cached next to the dataset and reused while
    the sample settings and the sidecar are unchanged."""
    from tqdm import tqdm

    dataset = Path(dataset)
    sidecar = sidecar_for(dataset)
    if not sidecar.exists():
        raise FileNotFoundError(f"{sidecar} not found: run `mu0sim extract {dataset} --mode sim --camera "
                                f"{config.camera}` first (μ0 learns from TraceExtract's ground-truth traces)")
    cache = cache_path_for(dataset)
    stamp = json.dumps({"settings": config.cache_key(), "sidecar_mtime_ns": sidecar.stat().st_mtime_ns})
    if cache.exists():
        cached = _read_cache(cache, stamp)
        if cached is not None:
            return cached
    env_args = read_env_args(dataset)
    robot, task = env_args["mu0sim"]["kwargs"]["robot"], env_args["mu0sim"]["kwargs"]["task"]
    with h5py.File(sidecar, "r") as side:
        if side.attrs["camera"] != config.camera:
            raise ValueError(f"{sidecar} was extracted for camera {side.attrs['camera']!r}, samples want "
                             f"{config.camera!r}")
        names = [n for n in demo_names_of_sidecar(side)][:config.episodes]
    env = make_env_from_dataset(dataset, cameras=(config.camera,), depth=True, segmentation=False,
                                image_size=(config.image_size, config.image_size))
    base = env.unwrapped
    rows: list[dict[str, np.ndarray]] = []
    instructions: list[str] = []
    try:
        with open_dataset(dataset) as f, h5py.File(sidecar, "r") as side:
            for name in tqdm(names, desc=f"μ0 samples {dataset.name}", unit="demo", disable=not progress,
                             dynamic_ncols=True):
                g, s = f[f"data/{name}"], side[name]
                states = g["states"][()]
                world, visible = s["traces/world"][()], s["traces/visible"][()]
                rng = np.random.default_rng(int(name[5:]))
                instruction = str(g.attrs.get("instruction", ""))
                if instruction not in instructions:
                    instructions.append(instruction)
                base.reset_to_state(states[0], g.attrs["model_file"])
                color_rng = np.random.default_rng((int(name[5:]), ROBOT_COLORS_STREAM))
                paint = config.robot_colors > 0 and color_rng.random() < config.robot_colors
                colors = robot_colors_randomized(base, color_rng) if paint else contextlib.nullcontext()
                with colors:
                    for t in range(0, len(states) - 1, config.stride):
                        obs = base.observe_state(states[t])
                        params = base.camera_params(config.camera)
                        kp = anchor_keypoints(world, visible, t, params, config, rng)
                        if len(kp["index"]) == 0:
                            continue
                        rows.append({**kp, "rgb": obs[f"{config.camera}_image"],
                                     "depth": obs[f"{config.camera}_depth"][..., 0],
                                     "category": s["keypoints/category"][()][kp["index"]],
                                     "body": s["keypoints/body"][()][kp["index"]],
                                     "intrinsics": params.intrinsics, "episode": int(name[5:]), "frame": t,
                                     "instruction": instructions.index(instruction)})
    finally:
        env.close()
    if not rows:
        raise ValueError(f"{dataset}: no anchor frame has a visible keypoint")
    samples = _assemble(rows, encoder, config, instructions, robot, task)
    _write_cache(cache, stamp, samples)
    return samples


def demo_names_of_sidecar(side: h5py.File) -> list[str]:
    return sorted(side.keys(), key=lambda n: int(n[5:]))


def _assemble(rows, encoder, config: SampleConfig, instructions, robot: str, task: str) -> TraceSamples:
    n, width = len(rows), config.max_keypoints
    feats = {"rgb_map": [], "depth_map": [], "rgb_tokens": [], "depth_tokens": []}
    for start in range(0, n, 64):
        chunk = rows[start:start + 64]
        rgb = encoder.encode_rgb(np.stack([r["rgb"] for r in chunk]))
        depth = encoder.encode_depth(np.stack([r["depth"] for r in chunk]))
        feats["rgb_map"].append(rgb.sample_map.half().numpy())
        feats["depth_map"].append(depth.sample_map.half().numpy())
        feats["rgb_tokens"].append(rgb.tokens.half().numpy())
        feats["depth_tokens"].append(depth.tokens.mean((-2, -1)).half().numpy())
    padded = {}
    for key, shape, dtype in (("current", (3,), np.float32), ("history", (config.history, 3), np.float32),
                              ("history_valid", (config.history,), bool),
                              ("future", (config.horizon, 3), np.float32),
                              ("future_valid", (config.horizon,), bool), ("category", (), np.int8),
                              ("body", (), np.int32)):
        out = np.zeros((n, width, *shape), dtype)
        for i, r in enumerate(rows):
            out[i, :len(r["index"])] = r[key]
        padded[key] = out
    mask = np.zeros((n, width), bool)
    for i, r in enumerate(rows):
        mask[i, :len(r["index"])] = True
    return TraceSamples(**{k: np.concatenate(v) for k, v in feats.items()}, **padded, keypoint_mask=mask,
                        instruction=np.array([r["instruction"] for r in rows], np.int32),
                        intrinsics=np.stack([r["intrinsics"] for r in rows]).astype(np.float32),
                        episode=np.array([r["episode"] for r in rows], np.int32),
                        frame=np.array([r["frame"] for r in rows], np.int32),
                        robot=np.zeros(n, np.int32), task=np.zeros(n, np.int32),
                        instructions=list(instructions), robots=[robot], tasks=[task],
                        image_hw=(config.image_size, config.image_size))


def _write_cache(path: Path, stamp: str, samples: TraceSamples) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["stamp"] = stamp
            f.attrs["tables"] = json.dumps({"instructions": samples.instructions, "robots": samples.robots,
                                            "tasks": samples.tasks, "image_hw": list(samples.image_hw)})
            for name in TraceSamples.ARRAY_FIELDS:
                f.create_dataset(name, data=getattr(samples, name))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_cache(path: Path, stamp: str) -> TraceSamples | None:
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("stamp") != stamp:
                return None
            tables = json.loads(f.attrs["tables"])
            return TraceSamples(**{name: f[name][()] for name in TraceSamples.ARRAY_FIELDS},
                                instructions=tables["instructions"], robots=tables["robots"], tasks=tables["tasks"],
                                image_hw=tuple(tables["image_hw"]))
    except (OSError, KeyError):
        return None  # unreadable cache: rebuild it


def _is_cached(dataset: Path, config: SampleConfig) -> bool:
    sidecar, cache = sidecar_for(dataset), cache_path_for(dataset)
    if not (sidecar.exists() and cache.exists()):
        return False
    stamp = json.dumps({"settings": config.cache_key(), "sidecar_mtime_ns": sidecar.stat().st_mtime_ns})
    try:
        with h5py.File(cache, "r") as f:
            return f.attrs.get("stamp") == stamp
    except OSError:
        return False


def _build_in_worker(dataset: str, config: SampleConfig) -> list[str]:
    """Worker process: build one dataset's cache; returns its instructions."""
    from mu0sim.model.backbone import FrozenVisionEncoder

    torch.set_num_threads(1)
    with torch.inference_mode():
        return build_samples(dataset, config, FrozenVisionEncoder(), progress=False).instructions


def load_samples(datasets: list[str | os.PathLike], config: SampleConfig, encoder=None, instruction_cache=None,
                 progress: bool = True, workers: int = 1) -> TraceSamples:
    """Samples of several datasets, joined. Caches still to build are built by ``workers`` processes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from mu0sim.model.backbone import FrozenVisionEncoder, InstructionCache

    paths = [Path(d) for d in datasets]
    todo = [p for p in paths if not _is_cached(p, config)]
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn")) as pool:
            jobs = [pool.submit(_build_in_worker, str(p), config) for p in todo]
            for job in tqdm(jobs, desc="μ0 samples", unit="file", disable=not progress, dynamic_ncols=True):
                job.result()
    encoder = encoder or FrozenVisionEncoder()
    instruction_cache = instruction_cache if instruction_cache is not None else InstructionCache()
    with torch.inference_mode():
        parts = [build_samples(p, config, encoder, progress) for p in paths]
    instruction_cache.embed([t for part in parts for t in part.instructions])
    return TraceSamples.concat(parts)
