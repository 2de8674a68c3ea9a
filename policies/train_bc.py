"""``mu0sim train-policy``: behaviour cloning of an action expert on frozen μ0's traces.

μ0's predictions over the training demos are computed once: every demo is replayed (its seed's reset, then its
recorded actions) through :class:`Mu0TraceObservation` with a query at every step, and the observation features are
cached next to the dataset (``<dataset>.bc-<μ0 id>-<query>.npz``). Training then only touches the small expert.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from mu0sim.io import checkpoint_fingerprint
from mu0sim.policies.action_expert import (EXPERT_INPUTS, MOTION_SLICE, MU0_FORECAST_VARIANTS, POINT_LABEL_SLICE,
                                           PRETRAINED_VARIANTS,
                                           TRACE_3D_VARIANTS, TRACE_STEPS, WRIST_LABEL_SLICE, ActionExpert,
                                           ActionExpertConfig,
                                           ActionExpertNet, Normalization,
                                           GRIP_CLOCK_KEY, chunk_loss, expert_proprio, grip_clock_steps, label_slots,
                                           point_features, proprio_features,
                                           expert_moments, wrist_point_features)
from mu0sim.policies.trace_observation import POINT_TOKENS_KEY, optional_keys

# the expert's continuous inputs (what ``input_noise`` may perturb), each with its label one-hot's columns
CONTINUOUS_INPUTS = {"points": POINT_LABEL_SLICE, "proprio": None, "image": None, "wrist": None,
                     "wrist_points": WRIST_LABEL_SLICE, "moments": None, "point_tokens": None}
MAX_CHUNK = 32  # actions cached per row: the longest chunk an expert can be trained to predict
FEATURE_KEYS = ("mu0_query_world", "mu0_query_uvz", "mu0_traces", "mu0_traces_world", "mu0_query_mask",
                "mu0_query_label", "mu0_image",
                "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_width")


def mu0_fingerprint(ckpt: str | Path) -> str:
    """Short hash of μ0's weights: a policy trained on one μ0's traces refuses another's."""
    return checkpoint_fingerprint(ckpt)


@dataclass
class TrainPolicyConfig:
    data: list[str]
    mu0: str
    out: str
    variant: str = "trace"
    head: str = "regression"
    query: str = "keypoints"
    num_points: int = 32
    episodes: int | None = None  # first N demos of each file (after the first ``skip_demos``)
    skip_demos: int = 0  # leave out each data file's first demos (e.g. those the μ0 checkpoint was trained on)
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    chunk: int = 16
    execute: int = 8
    seed: int = 0
    wrist_camera: str | None = "robot0_eye_in_hand"  # None: the expert sees no wrist view
    wrist_points: int = 0  # task-object points sampled in the wrist view each query (0: none)
    pooling: str = "attention"  # query points pooled by one attention ("attention") or also per label ("per-label")
    image_feature: bool = True  # the expert reads the backbone's pooled agentview feature
    wrist_features: bool = True  # the expert reads the wrist view's feature cells (with a wrist_camera)
    world_offsets: bool = False  # point features also hold the point minus the gripper in world axes
    trace_skip: bool = False  # the gripper's mean trace also maps linearly onto the action chunk
    wrist_moments: bool = False  # the expert also reads each object's yaw from its wrist-view points
    trace_dropout: float = 0.0  # training only: the chance that a sample reads no traces (no-trace's input)
    input_noise: float = 0.0  # training only: std of Gaussian noise on each varying continuous input (normalized)
    noise_traces: bool = True  # input_noise on the trace columns too (False: on the scene's measurements only)
    # where the training rows' traces come from: None, the variant's own source (trace: μ0's forecasts over the
    # demos); "oracle": the demos' recorded futures, for a variant that still acts on μ0's forecast in closed loop
    train_traces: str | None = None
    feature_every: int = 1  # query μ0 on every k-th demo step only (k x faster feature replay, 1/k the samples)
    ensemble: int = 1  # train this many networks (seeds seed, seed + 1, ...) and average their action chunks
    moments_from: str = "points"  # wrist_moments of the sampled wrist points or of every object pixel ("pixels")
    grip_clock: bool = False  # the expert also reads how many steps its gripper command has been "close" in a row
    point_tokens: bool = False  # each query point also reads μ0's token for it (ActionExpertConfig.point_tokens)
    point_token_gate: bool = True  # ... through a gate that starts closed (False: ungated)
    relative_inputs: bool = False  # the expert reads no absolute position (ActionExpertConfig.relative_inputs)
    forecast_only: bool = False  # the expert reads forecasts, proprio and moments only (ActionExpertConfig)
    slot_offsets: bool = False  # forecast_only: + each label slot's mean position in the gripper's frame
    traced_points: str = "all"  # whose forecasts the expert reads: all, objects, gripper (ActionExpertConfig)
    relative_motion: bool = False  # each point also reads its forecast minus the gripper's (ActionExpertConfig)
    # μ0 also gets the query points' past positions, in training replays and in closed loop alike
    # (Mu0TraceObservation's query_history; without it μ0 forecasts from the frame alone)
    query_history: bool = False
    # action-pretrained and trace-pretrained only: demos of other robots, pooled with ``data`` for ``pretrain_steps``
    # before the ``steps`` of fine-tuning on ``data`` alone (the π0 recipe at this project's scale)
    pretrain_data: list[str] = field(default_factory=list)
    pretrain_steps: int = 3000
    pretrain_episodes: int | None = None  # first N demos of each pretraining file (None: as many as ``episodes``)

    def expert_config(self, robot: str, task: str, mu0_id: str, point_token_width: int = 1) -> ActionExpertConfig:
        """The expert these settings train for ``robot`` on ``task`` (both read from the data) with μ0 ``mu0_id``,
        whose per-keypoint tokens are ``point_token_width`` wide (read with ``point_tokens``)."""
        return ActionExpertConfig(variant=self.variant, head=self.head, robot=robot, task=task, chunk=self.chunk,
                                  execute=self.execute, mu0_id=mu0_id, wrist_camera=self.wrist_camera,
                                  wrist_points=self.wrist_points, pooling=self.pooling,
                                  image_feature=self.image_feature, wrist_features=self.wrist_features,
                                  world_offsets=self.world_offsets, trace_skip=self.trace_skip,
                                  wrist_moments=self.wrist_moments, ensemble=self.ensemble,
                                  moments_from=self.moments_from, grip_clock=self.grip_clock,
                                  point_tokens=point_token_width if self.point_tokens else 0,
                                  point_token_gate=self.point_token_gate, relative_inputs=self.relative_inputs,
                                  forecast_only=self.forecast_only, slot_offsets=self.slot_offsets,
                                  traced_points=self.traced_points, relative_motion=self.relative_motion)

    def check(self) -> None:
        """Refuse settings that cannot train, before any data is read or replayed (minutes of μ0 features, or
        hours into an ablation): the expert's own checks (:class:`ActionExpertConfig`) and the training's."""
        self.expert_config(robot="", task="", mu0_id="")
        if not 0.0 <= self.trace_dropout < 1.0:
            raise ValueError(f"trace_dropout must be in [0, 1), got {self.trace_dropout}")
        if self.relative_motion and (self.trace_dropout or (self.input_noise and not self.noise_traces)):
            # both know the trace columns only: a dropped or exact trace would still be read in the relative motion
            raise ValueError("trace_dropout and noise_traces=false treat the trace columns only: they cannot be used "
                             "with relative_motion")
        if self.train_traces is not None:
            from mu0sim.policies.trace_observation import TRACE_SOURCES

            if self.train_traces not in TRACE_SOURCES:
                raise ValueError(f"unknown train_traces {self.train_traces!r}; valid sources: "
                                 f"{', '.join(TRACE_SOURCES)} (or none: the variant's own)")
            mu0_traced = [v for v in TRACE_3D_VARIANTS if trace_source(v) == "mu0"]
            if self.variant not in mu0_traced:
                raise ValueError(f"train_traces replaces the μ0 traces a variant trains on: variants "
                                 f"{', '.join(mu0_traced)}; got variant {self.variant!r}")
        if self.skip_demos < 0:
            raise ValueError(f"skip_demos counts demos to leave out: must be >= 0, got {self.skip_demos}")
        if self.input_noise < 0:
            raise ValueError(f"input_noise is a standard deviation (normalized units): must be >= 0, got "
                             f"{self.input_noise}")
        if (self.variant in PRETRAINED_VARIANTS) != bool(self.pretrain_data):
            raise ValueError(f"pretrain_data (other robots' demos) is required by variants "
                             f"{', '.join(PRETRAINED_VARIANTS)} and only used by them; got variant {self.variant!r} "
                             f"with {len(self.pretrain_data)} pretrain files")
        if self.chunk > MAX_CHUNK:
            raise ValueError(f"chunk must be <= {MAX_CHUNK} (the cached action horizon), got {self.chunk}")
        if self.query_history and (self.variant not in MU0_FORECAST_VARIANTS or self.query != "keypoints"):
            raise ValueError(f"query_history changes μ0's forecast, which variants {', '.join(MU0_FORECAST_VARIANTS)} "
                             f"act on, and tracks keypoint queries; got variant {self.variant!r} with query "
                             f"{self.query!r}")


def same_train_config(saved: dict, config: TrainPolicyConfig) -> bool:
    """Whether a training configuration saved as JSON (a checkpoint's, an ablation's cell record) is ``config``. A
    setting the saved one lacks was added to mu0sim after it was written and counts at its default, so adding an
    option (at a default that changes nothing) keeps every finished expert and cell."""
    defaults = {f.name: f.default if f.default_factory is MISSING else f.default_factory()
                for f in fields(TrainPolicyConfig) if f.default is not MISSING or f.default_factory is not MISSING}
    return {**json.loads(json.dumps(defaults)), **saved} == json.loads(json.dumps(asdict(config)))


def trace_source(variant: str) -> str:
    """Where a variant's traces come from: frozen μ0, or the ground-truth oracle for ``gt-trace``."""
    return "oracle" if variant == "gt-trace" else "mu0"


def oracle_version(variant: str, task: str) -> int | None:
    """The closed-loop oracle's version for ``task``
    (:data:`~mu0sim.policies.oracle_traces.ORACLE_VERSIONS`) if ``variant``'s traces come from it, else None: part
    of what plays such a policy's episodes besides its weights."""
    if trace_source(variant) != "oracle":
        return None
    from mu0sim.policies.oracle_traces import oracle_version as task_oracle_version

    return task_oracle_version(task)


def feature_cache_path(dataset: str | Path, mu0_id: str, query: str, num_points: int, traces: str = "mu0",
                       wrist_camera: str | None = None, every: int = 1, wrist_points: int = 0,
                       pixel_moments: bool = False, point_tokens: bool = False, query_history: bool = False) -> Path:
    """Where :func:`replay_features` caches a dataset's features for these settings (next to the dataset)."""
    dataset = Path(dataset)
    suffix = (("" if traces == "mu0" else f"-{traces}") + ("" if wrist_camera is None else f"-{wrist_camera}")
              + ("" if not wrist_points else f"-wp{wrist_points}") + ("-pm" if pixel_moments else "")
              + ("-tok" if point_tokens else "") + ("-hist" if query_history else "")
              + ("" if every == 1 else f"-every{every}"))
    return dataset.with_name(f"{dataset.stem}.bc-{mu0_id}-{query}{num_points}{suffix}.npz")


class RecordedDemo(NamedTuple):
    """One demo as feature replay needs it: ``executed`` actions replay ``states`` from the seed's reset;
    ``labels`` are what behaviour cloning imitates (the expert's own commands where the demo was collected with
    DART noise, ``expert_actions``; else the executed actions)."""

    index: int
    seed: int
    executed: np.ndarray
    labels: np.ndarray
    states: np.ndarray


def _read_demos(dataset: Path, episodes: int | None, only: list[int] | None = None,
                skip: int = 0) -> list[RecordedDemo]:
    """The first ``episodes`` demos after the first ``skip`` (of those, only the indices ``only``)."""
    from mu0sim.datasets.hdf5 import demo_names, open_dataset

    with open_dataset(dataset) as f:
        names = [n for n in _demo_range(demo_names(f), episodes, skip, dataset) if only is None or int(n[5:]) in only]
        demos = []
        for name in names:
            group = f[f"data/{name}"]
            if group.attrs.get("start_step", 0):
                raise ValueError(f"{dataset}: {name} starts {int(group.attrs['start_step'])} steps into its episode "
                                 f"(a --takeover-policy file); behaviour cloning replays demos from their seed's "
                                 f"first state: train μ0 on such files (mu0sim pretrain), experts on whole demos")
            executed = group["actions"][()]
            labels = group["expert_actions"][()] if "expert_actions" in group else executed
            demos.append(RecordedDemo(int(name[5:]), int(group.attrs["seed"]), executed, labels, group["states"][()]))
        return demos


def _demo_ids(dataset: Path, episodes: int | None, skip: int = 0) -> list[int]:
    from mu0sim.datasets.hdf5 import demo_names, open_dataset

    with open_dataset(dataset) as f:
        return [int(n[5:]) for n in _demo_range(demo_names(f), episodes, skip, dataset)]


def _demo_range(names: list[str], episodes: int | None, skip: int, dataset: Path) -> list[str]:
    """``names[skip:skip + episodes]``; a file too short for it is refused (not silently cut: an expert trained on
    fewer demos than asked would be reported under the wrong demo count)."""
    if len(names) < skip + (episodes or 1):
        asked = f"{episodes} demos" if episodes else "any demo"
        raise ValueError(f"{dataset} holds {len(names)} demos, too few for {asked}"
                         + (f" after skipping {skip} (collect more, or lower skip_demos)" if skip else
                            f" (collect more with `mu0sim collect`, or ask for at most {len(names)})"))
    return names[skip:None if episodes is None else skip + episodes]


def _cache_covers(cache: Path, demo_ids: set[int], extra: tuple[str, ...] = ()) -> bool:
    """Whether ``cache`` holds every feature of this mu0sim's inputs (``EXPERT_INPUTS``) for each of ``demo_ids``
    (reads only the keys and two columns; an older mu0sim's cache is replayed)."""
    return _cached_demo_ids(cache, extra) >= set(demo_ids)


def _cached_demo_ids(cache: Path, extra: tuple[str, ...] = ()) -> set[int]:
    """The demos ``cache`` holds features of this mu0sim's inputs for (none: no cache, or an older mu0sim's)."""
    if not cache.exists():
        return set()
    keys = {"action_chunk", "inputs", *FEATURE_KEYS, *extra}
    with np.load(cache) as data:
        if not keys <= set(data.files) or int(data["inputs"]) != EXPERT_INPUTS:
            return set()
        return {int(i) for i in np.unique(data["episode"])}


def _extend_cache(cache: Path, new: dict[str, np.ndarray], extra: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Write ``cache`` with the rows it already holds (of this mu0sim's inputs) and ``new`` demos' rows, in demo
    order; returns everything it now holds. A dataset grown from 50 to 100 demos replays only the 50 new ones."""
    held = _cached_demo_ids(cache, extra) - {int(i) for i in np.unique(new["episode"])}
    if held:
        old = _from_cache(cache, held, extra)
        if set(old) != set(new):  # the file name fixes the settings, EXPERT_INPUTS the keys: not expected
            raise ValueError(f"{cache}: cached features {sorted(old)} differ from the new rows' {sorted(new)}; "
                             "delete the cache to replay every demo")
        new = {k: np.concatenate([old[k], new[k]]) for k in new}
        order = np.argsort(new["episode"], kind="stable")  # steps stay in order within each demo
        new = {k: v[order] for k, v in new.items()}
    _write_cache(cache, new)
    return new


def _from_cache(cache: Path, demo_ids: set[int], extra: tuple[str, ...] = ()) -> dict[str, np.ndarray] | None:
    """The cached rows of ``demo_ids``, or None when the cache does not cover them (see :func:`_cache_covers`)."""
    if not _cache_covers(cache, demo_ids, extra):
        return None
    data = dict(np.load(cache))
    del data["inputs"]
    # the wrapper's optional keys this job did not ask for: caches written before pixel moments had a cache of
    # their own (commit 5a2bcd8) hold them too, and pooling such a file with others would misalign the keys
    every_optional_key = optional_keys(wrist_points=1, pixel_moments=True, point_tokens=True)
    for key in set(every_optional_key) - set(extra):
        data.pop(key, None)
    keep = np.isin(data["episode"], sorted(demo_ids))
    return {k: v[keep] for k, v in data.items()}


def replay_features(dataset: str | Path, mu0, mu0_id: str, query: str, num_points: int,
                    episodes: int | None = None, progress: bool = True, traces: str = "mu0",
                    wrist_camera: str | None = None, every: int = 1, wrist_points: int = 0,
                    pixel_moments: bool = False, skip: int = 0, point_tokens: bool = False,
                    query_history: bool = False) -> dict[str, np.ndarray]:
    """Per-step μ0 observation features and actions of every demo (cached) after the first ``skip``. Returns
    arrays over all steps plus ``episode`` (N,) and ``step`` (N,). ``traces="oracle"`` stores ground-truth future
    traces instead of μ0's; ``wrist_camera`` adds ``wrist_tokens`` (stored as float16: they are most of the
    cache), ``wrist_points`` the wrist-view points, ``pixel_moments`` their objects' moments from every pixel,
    ``point_tokens`` μ0's per-keypoint tokens (float16 too); ``query_history`` gives μ0 the query points' past.
    ``every``: rows for every k-th step only (μ0 runs and the cameras render only there)."""
    dataset = Path(dataset)
    cache = feature_cache_path(dataset, mu0_id, query, num_points, traces, wrist_camera, every, wrist_points,
                               pixel_moments, point_tokens, query_history)
    extra = optional_keys(wrist_points, pixel_moments, point_tokens)
    demos = _read_demos(dataset, episodes, skip=skip)
    wanted = {d[0] for d in demos}
    cached = _from_cache(cache, wanted, extra)
    if cached is not None:
        return cached
    held = _cached_demo_ids(cache, extra)
    new = _replay_rows(dataset, [d for d in demos if d[0] not in held], mu0, query, num_points, traces,
                       wrist_camera, every, progress, wrist_points=wrist_points, pixel_moments=pixel_moments,
                       point_tokens=point_tokens, query_history=query_history)
    data = _extend_cache(cache, new, extra)  # every cached demo: keep the asked ones (no second read)
    keep = np.isin(data["episode"], sorted(wanted))
    return {k: v[keep] for k, v in data.items()}


def _write_cache(cache: Path, data: dict[str, np.ndarray]) -> None:
    fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=cache.name, suffix=".tmp.npz")
    os.close(fd)
    np.savez(tmp, **data, inputs=np.array(EXPERT_INPUTS))  # what these features are (see _cache_covers)
    os.replace(tmp, cache)


def _replay_rows(dataset: Path, demos: list[RecordedDemo], mu0, query: str,
                 num_points: int, traces: str, wrist_camera: str | None, every: int, progress: bool = False,
                 on_demo: Callable[[], None] | None = None, wrist_points: int = 0,
                 pixel_moments: bool = False, point_tokens: bool = False,
                 query_history: bool = False) -> dict[str, np.ndarray]:
    """The feature rows of ``demos`` (see :func:`replay_features`); a demo's rows depend on that demo only (the
    wrapper's query-point sampling is reseeded with its seed), so demos can be replayed in any split.
    ``on_demo()`` is called after each demo (progress from worker processes)."""
    from tqdm import tqdm

    from mu0sim.datasets.hdf5 import make_env_from_dataset
    from mu0sim.policies.oracle_traces import RecordedFutureOracle
    from mu0sim.policies.trace_observation import Mu0TraceObservation

    env = make_env_from_dataset(dataset, cameras=(mu0.config.camera,), depth=True, segmentation=True,
                                image_size=(mu0.image_size, mu0.image_size), image_period=0)
    # ground truth for a demo is its own recorded future (what the expert oracle reproduces in closed loop)
    oracle = RecordedFutureOracle() if traces == "oracle" else None
    env = Mu0TraceObservation(env, mu0, query=query, num_points=num_points, query_every=every,
                              camera=mu0.config.camera,
                              traces=traces, oracle=oracle, wrist_camera=wrist_camera, wrist_points=wrist_points,
                              pixel_moments=pixel_moments, point_tokens=point_tokens,
                              query_history=query_history)
    keys = (*FEATURE_KEYS, *(("wrist_tokens",) if wrist_camera else ()),
            *optional_keys(wrist_points, pixel_moments, point_tokens))
    half = ("wrist_tokens", POINT_TOKENS_KEY)  # most of the cache: float16
    rows: dict[str, list] = {k: [] for k in (*keys, "action_chunk", "episode", "step", "episode_length")}
    worst = 0.0
    try:
        for index, seed, executed, labels, states in tqdm(demos, desc=f"μ0 features {dataset.name}", unit="demo",
                                                          disable=not progress, dynamic_ncols=True):
            if oracle is not None:
                oracle.load(states)
            obs, _ = env.reset(seed=seed)
            for t, action in enumerate(executed):
                worst = max(worst, float(np.abs(env.unwrapped.get_state() - states[t]).max()))
                if t % every:
                    obs, *_ = env.step(action)
                    continue
                for k in keys:
                    value = obs[k].astype(np.float16) if k in half else obs[k]
                    rows[k].append(value[:, np.array(TRACE_STEPS) - 1] if k in ("mu0_traces", "mu0_traces_world")
                                   else value)
                rows["action_chunk"].append(next_actions(labels, t, MAX_CHUNK))
                rows["episode"].append(index)
                rows["step"].append(t)
                rows["episode_length"].append(len(labels))
                obs, *_ = env.step(action)
            if on_demo is not None:
                on_demo()
    finally:
        env.close()
    if worst > 1e-3:
        raise ValueError(f"{dataset}: replaying the demos diverged from their recorded states by {worst:.3g}; the "
                         "features would not match the actions")
    return {k: np.asarray(v) for k, v in rows.items()}


@dataclass(frozen=True)
class FeatureJob:
    """One dataset's feature replay, as :func:`replay_features` takes it."""

    dataset: str
    episodes: int | None
    query: str
    num_points: int
    traces: str
    wrist_camera: str | None
    every: int
    wrist_points: int = 0
    pixel_moments: bool = False
    skip: int = 0  # demos left out at the file's start
    point_tokens: bool = False
    query_history: bool = False

    @property
    def extra_keys(self) -> tuple[str, ...]:
        return optional_keys(self.wrist_points, self.pixel_moments, self.point_tokens)


def feature_jobs(config: TrainPolicyConfig) -> list[FeatureJob]:
    """The feature replays :func:`train_policy` runs for ``config`` (its data, then its pretraining data)."""
    pretrain_episodes = config.pretrain_episodes or config.episodes
    traces = config.train_traces or trace_source(config.variant)
    return [FeatureJob(str(d), config.episodes if i < len(config.data) else pretrain_episodes, config.query,
                       config.num_points, traces, config.wrist_camera, config.feature_every,
                       config.wrist_points, config.moments_from == "pixels",
                       config.skip_demos if i < len(config.data) else 0, config.point_tokens,
                       config.query_history)
            for i, d in enumerate([*config.data, *config.pretrain_data])]


_worker_state: dict = {}


def _feature_worker_init(mu0_ckpt: str, done_queue) -> None:
    from mu0sim.io import exit_with_parent

    exit_with_parent()  # a stopped study's workers must not replay on (finished shards are in the cache already)
    os.environ.setdefault("LP_NUM_THREADS", "1")  # one core per worker (Mesa's rasterizer threads too)
    from mu0sim.model import Mu0

    torch.set_num_threads(1)
    _worker_state.update(mu0=Mu0.from_pretrained(mu0_ckpt), done=done_queue)


def _feature_worker_run(job: FeatureJob, demo_ids: list[int]) -> dict[str, np.ndarray]:
    state = _worker_state
    dataset = Path(job.dataset)
    return _replay_rows(dataset, _read_demos(dataset, job.episodes, only=demo_ids, skip=job.skip), state["mu0"],
                        job.query, job.num_points, job.traces, job.wrist_camera, job.every,
                        on_demo=lambda: state["done"].put(1),
                        wrist_points=job.wrist_points, pixel_moments=job.pixel_moments,
                        point_tokens=job.point_tokens, query_history=job.query_history)


def _job_cache(job: FeatureJob, mu0_id: str) -> Path:
    return feature_cache_path(job.dataset, mu0_id, job.query, job.num_points, job.traces, job.wrist_camera,
                              job.every, job.wrist_points, job.pixel_moments, job.point_tokens, job.query_history)


def _one_job_per_cache(jobs) -> list[FeatureJob]:
    """One job per cache file, for the demos from the file's start to the furthest any of ``jobs`` asks of it:
    experts on the first 10 and the first 50 demos of a dataset share one cache (two jobs would replay the 10 twice
    and write the file twice); demos already cached are not replayed again."""
    merged: dict[tuple, FeatureJob] = {}
    for job in jobs:
        key = (job.dataset, job.query, job.num_points, job.traces, job.wrist_camera, job.every, job.wrist_points,
               job.pixel_moments, job.point_tokens, job.query_history)
        end = None if job.episodes is None else job.skip + job.episodes
        other = merged.get(key)
        if other is None or other.episodes is not None and (end is None or end > other.episodes):
            merged[key] = replace(job, episodes=end, skip=0)
    return list(merged.values())


def prepare_features(configs: list[TrainPolicyConfig], workers: int = 2, progress: bool = True) -> int:
    """Replay, over ``workers`` processes, every feature cache that training ``configs`` will need and that is not
    cached yet, so that :func:`train_policy` then only trains. Datasets are cut into shards of a few demos, handed
    to whichever process is free (one dataset is spread over all of them); each finished shard joins its cache.
    Returns the number of caches written. All configs must use one μ0."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from tqdm import tqdm

    if not configs:
        return 0
    mu0_ckpts = {c.mu0 for c in configs}
    if len(mu0_ckpts) != 1:
        raise ValueError(f"prepare_features takes configs of one μ0, got {sorted(mu0_ckpts)}")
    mu0_ckpt = mu0_ckpts.pop()
    mu0_id = mu0_fingerprint(mu0_ckpt)
    wanted = {j: _demo_ids(Path(j.dataset), j.episodes, j.skip)
              for j in _one_job_per_cache(j for c in configs for j in feature_jobs(c))}
    demo_ids = {}  # per job, the demos its cache lacks (a grown dataset replays only its new demos)
    for j, ids in wanted.items():
        held = _cached_demo_ids(_job_cache(j, mu0_id), j.extra_keys)
        if missing := [i for i in ids if i not in held]:
            demo_ids[j] = missing
    jobs = list(demo_ids)
    if not jobs:
        return 0
    total = sum(len(ids) for ids in demo_ids.values())
    size = max(1, -(-total // (4 * workers)))  # about 4 shards per worker: the last ones finish together
    ctx = mp.get_context("spawn")  # forked GL contexts deadlock
    done_queue = ctx.Queue()
    bar = tqdm(total=total, desc=f"μ0 features ({len(jobs)} datasets, {workers} workers)", unit="demo",
               disable=not progress, dynamic_ncols=True)
    with ProcessPoolExecutor(min(workers, -(-total // size)), mp_context=ctx, initializer=_feature_worker_init,
                             initargs=(mu0_ckpt, done_queue)) as pool:
        pending = {pool.submit(_feature_worker_run, j, ids[i:i + size]): (j, i)
                   for j, ids in demo_ids.items() for i in range(0, len(ids), size)}
        while pending:
            finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in finished:
                job, _ = pending.pop(future)
                # each shard joins its cache as it comes in (in demo order): an interrupted replay keeps every
                # finished shard, and the rerun replays only the rest. A worker's error surfaces here.
                _extend_cache(_job_cache(job, mu0_id), future.result(), job.extra_keys)
            while True:
                try:
                    bar.update(done_queue.get_nowait())
                except queue.Empty:
                    break
    bar.close()
    return len(jobs)


def next_actions(actions: np.ndarray, t: int, length: int) -> np.ndarray:
    """(length, A) the actions from step ``t`` on; past the episode's end the last action repeats (and the
    validity, :func:`chunk_validity`, is 0 there)."""
    idx = np.minimum(np.arange(t, t + length), len(actions) - 1)
    return actions[idx]


def chunk_validity(steps: np.ndarray, episode_lengths: np.ndarray, length: int) -> np.ndarray:
    """(N, length) 1 where step ``steps + i`` is still inside its episode of ``episode_lengths`` steps."""
    return (steps[:, None] + np.arange(length)[None] < episode_lengths[:, None]).astype(np.float32)


def train_policy(config: TrainPolicyConfig, progress: bool = True) -> dict:
    from mu0sim.datasets.hdf5 import read_collection, read_env_args
    from mu0sim.model import Mu0

    config.check()
    robots = {read_env_args(d)["mu0sim"]["kwargs"]["robot"] for d in config.data}
    tasks = {read_env_args(d)["mu0sim"]["kwargs"]["task"] for d in config.data}
    if len(robots) != 1:
        raise ValueError(f"an action expert is per embodiment; the data holds robots {sorted(robots)}")
    mu0 = Mu0.from_pretrained(config.mu0)
    mu0_id = mu0_fingerprint(config.mu0)
    parts = [replay_features(j.dataset, mu0, mu0_id, j.query, j.num_points, j.episodes, progress, j.traces,
                             j.wrist_camera, j.every, j.wrist_points, j.pixel_moments, j.skip, j.point_tokens,
                             j.query_history)
             for j in feature_jobs(config)]
    for i, p in enumerate(parts):
        p["episode"] = p["episode"] + 100000 * i  # distinct episodes across files
        p["target"] = np.full(len(p["episode"]), i < len(config.data))
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    # validation: the last demos of the target robot's files
    episodes = np.unique(data["episode"][data["target"]])
    n_val = max(1, round(len(episodes) * config.val_fraction)) if len(episodes) > 1 else 0
    is_val = np.isin(data["episode"], episodes[len(episodes) - n_val:])
    points = point_features(data, config.variant, config.world_offsets, config.relative_inputs, config.traced_points,
                            config.relative_motion)
    proprio = proprio_features(data, config.relative_inputs)
    if config.grip_clock:  # from the demos' own gripper commands, as the expert counts its own when it acts
        data[GRIP_CLOCK_KEY] = grip_clock_steps(data["action_chunk"][..., -1], data["episode"], data["step"])
    image = data["mu0_image"].astype(np.float32)
    mask = data["mu0_query_mask"]
    wrist = data.get("wrist_tokens")
    wrist_points = None
    if config.wrist_points:
        wrist_points = (wrist_point_features(data, config.world_offsets, config.relative_inputs),
                        data["wrist_query_mask"].astype(np.float32),
                        label_slots(data["wrist_query_label"]))
    point_tokens = data[POINT_TOKENS_KEY].astype(np.float32) if config.point_tokens else None
    target = data["action_chunk"][:, :config.chunk].astype(np.float32)
    valid = chunk_validity(data["step"], data["episode_length"], config.chunk)
    train = ~is_val
    norm = Normalization.fit(proprio[train], image[train], points[train], mask[train],
                             None if wrist is None else wrist[train],
                             None if wrist_points is None else (wrist_points[0][train], wrist_points[1][train]),
                             None if point_tokens is None else point_tokens[train])
    pc = config.expert_config(robot=robots.pop(), task=",".join(sorted(tasks)), mu0_id=mu0_id,
                              point_token_width=mu0.config.dim)
    tens = {"points": torch.as_tensor((points - norm.point_mean) / norm.point_std, dtype=torch.float32),
            "mask": torch.as_tensor(mask),
            "proprio": torch.as_tensor(expert_proprio(data, pc, norm)),
            "image": torch.as_tensor((image - norm.image_mean) / norm.image_std, dtype=torch.float32),
            "target": torch.as_tensor(target.reshape(len(target), -1)),
            "valid": torch.as_tensor(np.repeat(valid, pc.action_dim, axis=1).astype(np.float32))}
    if wrist is not None:
        tens["wrist"] = torch.as_tensor(((wrist - norm.wrist_mean) / norm.wrist_std).astype(np.float32))
    if wrist_points is not None:
        tens["wrist_points"] = torch.as_tensor(((wrist_points[0] - norm.wrist_point_mean)
                                                / norm.wrist_point_std).astype(np.float32))
        tens["wrist_point_mask"] = torch.as_tensor(wrist_points[1])
        tens["wrist_point_slots"] = torch.as_tensor(wrist_points[2])
    tens["slots"] = torch.as_tensor(label_slots(data["mu0_query_label"]))
    if config.wrist_moments:
        tens["moments"] = torch.as_tensor(expert_moments(data, pc))
    if point_tokens is not None:
        tens["point_tokens"] = torch.as_tensor((point_tokens - norm.point_token_mean) / norm.point_token_std)
        del point_tokens
    val_rows = np.flatnonzero(is_val)

    # what a trace-less sample reads in the trace columns: raw zeros, normalized
    no_motion = torch.as_tensor(-norm.point_mean[MOTION_SLICE] / norm.point_std[MOTION_SLICE], dtype=torch.float32)

    noisy = noise_columns(tens, np.flatnonzero(train), config.noise_traces) if config.input_noise else {}

    def context_of(net: ActionExpertNet, rows) -> torch.Tensor:
        x = {k: tens[k][rows] for k in CONTINUOUS_INPUTS if k in tens}
        if config.trace_dropout and net.training:
            # a sample without traces must be acted on from the scene alone: the expert cannot lean on the traces
            # to tell ten demos apart, only on what they say about the motion
            drop = torch.rand(len(rows)) < config.trace_dropout  # global RNG: a resumed run saves it
            x["points"] = x["points"].clone()
            x["points"][drop, :, MOTION_SLICE] = no_motion
            if "point_tokens" in x:  # they carry the forecast too: a dropped sample reads their mean
                x["point_tokens"] = x["point_tokens"].masked_fill(drop[:, None, None], 0.0)
        if noisy and net.training:
            # a 10-demo expert recalls its demos from exact inputs (BC loss 0.0002 on them vs 0.02 held out):
            # noise makes nearby inputs ask for nearby actions (global RNG: a resumed run saves it)
            x = {k: v + config.input_noise * torch.randn_like(v) * noisy[k] if k in noisy else v
                 for k, v in x.items()}
        return net.context(x["points"], tens["mask"][rows], x["proprio"], x["image"], x.get("wrist"),
                           (x["wrist_points"], tens["wrist_point_mask"][rows],
                            tens["wrist_point_slots"][rows]) if "wrist_points" in x else None,
                           tens["slots"][rows], x.get("moments"), x.get("point_tokens"))

    def loss_of(net: ActionExpertNet, rows) -> torch.Tensor:
        return chunk_loss(net, context_of(net, rows), tens["target"][rows], tens["valid"][rows])

    stages = [("fine-tune" if config.pretrain_data else "train", np.flatnonzero(train & data["target"]),
               config.steps)]
    if config.pretrain_data:
        stages.insert(0, ("pretrain", np.flatnonzero(train), config.pretrain_steps))  # pooled robots
    resume = TrainingResume(Path(config.out) / ".resume" / "state.pt", asdict(config))
    state = resume.load()
    history: list[dict] = state["history"] if state else []
    start = time.perf_counter() - (state["elapsed_s"] if state else 0.0)
    finished = state.get("finished", []) if state else []  # weights of ensemble members trained before a Ctrl-C
    members: list[ActionExpertNet] = []
    for member in range(config.ensemble):
        # member 0 is exactly the single expert of this seed; each further one differs in init and batch order only
        torch.manual_seed(config.seed + member)
        net = ActionExpertNet(pc)
        members.append(net)
        if member < len(finished):
            net.load_state_dict(finished[member])
            continue
        rng = np.random.default_rng(config.seed + member)
        resumed = state if state and state.get("member", 0) == member else None
        for index, (stage, rows, steps) in enumerate(stages):
            if resumed and index < resumed["stage_index"]:
                continue  # finished before the interruption
            _optimize(net, functools.partial(loss_of, net), rows, val_rows, steps, config, rng, history,
                      stage if config.ensemble == 1 else f"{stage}, member {member}", progress, resume=resume,
                      stage_index=index, state=resumed if resumed and index == resumed["stage_index"] else None,
                      start=start, member=member, finished=[m.state_dict() for m in members[:member]])
    wall = time.perf_counter() - start
    policy = ActionExpert(members, norm)
    total_steps = sum(s for _, _, s in stages)
    summary = {"out": config.out, "variant": config.variant, "robot": pc.robot,
               "samples": int((train & data["target"]).sum()), "pretrain_samples": int((train & ~data["target"]).sum()),
               "val_samples": int(is_val.sum()), "steps": total_steps, "wall_s": round(wall, 1),
               "samples_per_s": round(config.ensemble * total_steps * config.batch_size / wall, 1),
               "val_loss": ensemble_val_loss(members, context_of, tens, val_rows, history)}
    policy.save(config.out, {"training": {**summary, "history": history}, "train_config": asdict(config),
                             "data_collection": read_collection(config.data[0])})
    resume.clear()
    return summary


def noise_columns(tens: dict[str, torch.Tensor], train_rows: np.ndarray,
                  traces: bool = True) -> dict[str, torch.Tensor]:
    """Which columns of each continuous input ``input_noise`` perturbs, as 0/1 float masks over the last axis:
    those that vary over the training rows (a no-trace expert's all-zero trace columns stay exact, so its inputs
    are perturbed exactly where a trace expert's are, bar the traces it does not read), never the label one-hots
    (categories, not measurements), and the trace columns (and μ0's point tokens, which carry the forecast too)
    only if ``traces``."""
    masks = {}
    for key, labels in CONTINUOUS_INPUTS.items():
        if key not in tens:
            continue
        values = tens[key][train_rows]
        varies = values.reshape(-1, values.shape[-1]).std(0) > 1e-2
        if labels is not None:
            varies[labels] = False
        if key == "points" and not traces:
            varies[MOTION_SLICE] = False
        if key == "point_tokens" and not traces:
            varies[:] = False
        masks[key] = varies.float()
    return masks


def ensemble_val_loss(members: list[ActionExpertNet], context_of: Callable, tens: dict[str, torch.Tensor],
                      val_rows: np.ndarray, history: list[dict]) -> float | None:
    """The expert's validation loss: a single network's last one; a regression ensemble's is that of the members'
    mean chunk (what it acts on), a flow ensemble's the mean of its members' last ones."""
    if not history:
        return None
    if len(members) == 1:
        return history[-1]["val_loss"]
    if members[0].config.head != "regression" or not len(val_rows):
        finals = [next(h["val_loss"] for h in reversed(history) if h["stage"].endswith(f", member {i}"))
                  for i in range(len(members))]
        return float(np.mean(finals))
    with torch.no_grad():
        mean = torch.stack([net.eval()(context_of(net, val_rows)) for net in members]).mean(0)
    valid = tens["valid"][val_rows]
    return float((((mean - tens["target"][val_rows]) ** 2) * valid).sum() / valid.sum().clamp(min=1))


class TrainingResume:
    """Where an interrupted ``train_policy`` keeps its place: ``OUT/.resume/state.pt`` holds the stage and step, the
    network, optimizer, schedule and both random generators, and the validation history, written atomically every
    ``every_s`` seconds and on Ctrl-C. A state saved for another training configuration is ignored (and replaced),
    never mixed in. Resuming continues the same sequence of batches, so the result equals an uninterrupted run."""

    def __init__(self, path: Path, train_config: dict, every_s: float = 60.0) -> None:
        self.path, self.train_config, self.every_s = path, json.loads(json.dumps(train_config)), every_s
        self._last = time.monotonic()

    def load(self) -> dict | None:
        if not self.path.exists():
            return None
        state = torch.load(self.path, weights_only=False)
        return state if state.get("train_config") == self.train_config else None

    def due(self) -> bool:
        return time.monotonic() - self._last > self.every_s

    def save(self, state: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save({**state, "train_config": self.train_config}, tmp)
        os.replace(tmp, self.path)
        self._last = time.monotonic()

    def clear(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)


def _optimize(net, loss_of, rows: np.ndarray, val_rows: np.ndarray, steps: int, config: TrainPolicyConfig,
              rng: np.random.Generator, history: list[dict], stage: str, progress: bool,
              resume: TrainingResume | None = None, stage_index: int = 0, state: dict | None = None,
              start: float = 0.0, member: int = 0, finished: list[dict] | None = None) -> None:
    """AdamW + cosine schedule over ``steps`` batches of ``rows``; validation every 500 steps into ``history``.
    ``state``: where an interrupted run of this stage stopped (:class:`TrainingResume`); ``resume`` saves it, with
    the ensemble ``member`` being trained and the weights of the members ``finished`` before it."""
    from tqdm import tqdm

    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    first = 0
    if state is not None:
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["schedule"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        first = state["step"]

    def snapshot(step: int) -> dict:
        return {"member": member, "finished": finished or [], "stage_index": stage_index, "step": step,
                "net": net.state_dict(), "optimizer": opt.state_dict(),
                "schedule": sched.state_dict(), "numpy_rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "history": history, "elapsed_s": time.perf_counter() - start}

    with _InterruptBetweenSteps() as interrupt:
        for step in tqdm(range(first, steps), initial=first, total=steps, disable=not progress,
                         desc=f"train-policy {config.variant} ({stage})", dynamic_ncols=True):
            net.train()
            loss = loss_of(rng.choice(rows, config.batch_size))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if (step + 1) % 500 == 0 or step + 1 == steps:
                net.eval()
                with torch.no_grad():
                    torch.manual_seed(1234)
                    val = float(loss_of(val_rows)) if len(val_rows) else float("nan")
                history.append({"stage": stage, "step": step + 1, "train_loss": float(loss.detach()),
                                "val_loss": val})
            if resume is not None and (interrupt.requested or resume.due()):
                resume.save(snapshot(step + 1))
            if interrupt.requested:
                raise KeyboardInterrupt


class _InterruptBetweenSteps:
    """Ctrl-C during training stops after the current step (so that the saved state is one the uninterrupted run
    also passes through), instead of wherever the signal lands (e.g. between the optimizer's and the schedule's
    update). A second Ctrl-C stops at once. Only in the main thread, where Python delivers signals."""

    def __enter__(self) -> "_InterruptBetweenSteps":
        self.requested, self._previous = False, None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


__all__ = ["TrainPolicyConfig", "train_policy", "replay_features", "prepare_features", "feature_jobs",
           "feature_cache_path", "mu0_fingerprint", "next_actions", "chunk_validity",
           "trace_source"]
