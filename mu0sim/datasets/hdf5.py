"""robomimic-compatible HDF5 demonstration files: schema, atomic writing with a resume journal, reading, env rebuild.

Layout (robomimic's, read by robomimic, MimicGen, LIBERO, diffusion_policy), with mu0sim's additions marked (+):

    /data                       attrs: total (sum of num_samples), env_args (JSON, below)
    /data/demo_<i>              attrs: num_samples, model_file (MJCF XML), ep_meta (JSON: lang, seed, ...),
                                       (+) instruction, (+) seed
        states      (N, D) float64  flattened MuJoCo state [time, qpos, qvel] *before* each action
        actions     (N, 7) float32  in [-1, 1]
        rewards     (N,)   float64
        dones       (N,)   uint8    1 on the final step of a successful episode
        obs/<key>, next_obs/<key>   observations before / after each action (images uint8 HWC)
        (+) camera/<cam>/intrinsics   (3, 3) float64, pixels
        (+) camera/<cam>/cam_to_world (N, 4, 4) float64, OpenCV camera axes, per step (eye-in-hand cameras move)
    /mask/train, /mask/valid    demo names as byte strings (every 10th demo is validation)
    (+) /mu0sim/attempts        (M, 2) int64: seed, kept (1/0) of every attempt, in seed order (resume + stats)
    (+) demo attrs success: whether the task succeeded (only successes are kept unless asked otherwise)

``env_args`` = {"env_name": robosuite env, "type": 1, "env_version": robosuite version,
"env_kwargs": robosuite.make kwargs, "mu0sim": {"env_id": ..., "kwargs": Mu0SimEnv kwargs, "version": ...}}:
robomimic rebuilds the simulation from env_kwargs, :func:`make_env_from_dataset` rebuilds the mu0sim env exactly.

Writing is crash-safe: finished episodes go to a journal directory next to the file (one file each, written to a
temporary name and renamed), and the HDF5 file is only ever replaced whole by :meth:`DatasetWriter.commit`
(temporary file + rename). An interrupted run leaves the last committed file valid and the journal intact; the next
run folds the journal in and carries on.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

FORMAT_VERSION = 1
VALID_EVERY = 10  # demo_i with i % VALID_EVERY == VALID_EVERY - 1 goes to mask/valid


@dataclass
class EpisodeRecord:
    """One attempted episode. Arrays have one row per action (N); ``obs`` holds N + 1 observations.
    ``actions`` are what was executed (replaying them reproduces ``states``); ``expert_actions``, when the
    collector perturbed the execution (DART), what the expert commanded at each step: the label to imitate.
    ``start_step``: how many steps of the seed's episode a policy had played before the recording starts (0: the
    seed's initial state; see ``mu0sim collect --takeover-policy``); ``start_control``: then the controllers'
    memory at the first state (``Mu0SimEnv.get_control_state``), without which a replay from it drifts."""

    seed: int
    success: bool
    kept: bool = False
    states: np.ndarray | None = None
    actions: np.ndarray | None = None
    expert_actions: np.ndarray | None = None
    rewards: np.ndarray | None = None
    obs: dict[str, np.ndarray] = field(default_factory=dict)
    intrinsics: dict[str, np.ndarray] = field(default_factory=dict)
    cam_to_world: dict[str, np.ndarray] = field(default_factory=dict)
    model_file: str = ""
    instruction: str = ""
    sim_error: str | None = None
    start_step: int = 0
    start_control: dict[str, np.ndarray] | None = None

    @property
    def num_samples(self) -> int:
        return 0 if self.actions is None else len(self.actions)


class DatasetError(ValueError):
    """A dataset file that cannot be used as asked; the message names the file and the problem."""


def env_args_for(env) -> dict[str, Any]:
    """robomimic's env_args for an (unwrapped) Mu0SimEnv, plus what rebuilds the mu0sim env exactly."""
    import robosuite

    import mu0sim

    return {
        "env_name": env.task_spec.robosuite_env,
        "type": 1,  # robomimic's EnvType.ROBOSUITE_TYPE
        "env_version": robosuite.__version__,
        "env_kwargs": env.robosuite_kwargs,
        "mu0sim": {"env_id": f"mu0sim/{env.task_spec.name}-v0", "kwargs": env.init_kwargs,
                   "version": mu0sim.__version__, "format_version": FORMAT_VERSION},
    }


def open_dataset(path: str | os.PathLike) -> h5py.File:
    """Open a mu0sim/robomimic file read-only, turning unreadable or foreign files into a clear DatasetError."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such dataset file")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DatasetError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {err}") from None
    try:
        if "data" not in f or "env_args" not in f["data"].attrs:
            raise DatasetError(f"{path}: not a robomimic-style dataset (no data group with env_args)")
        bad = [name for name in f["data"] if not (name.startswith("demo_") and name[5:].isdigit())]
        if bad:
            raise DatasetError(f"{path}: unexpected entries under /data: {bad[:5]}")
    except Exception:
        f.close()
        raise
    return f


def read_env_args(path: str | os.PathLike) -> dict[str, Any]:
    with open_dataset(path) as f:
        return json.loads(f["data"].attrs["env_args"])


def read_collection(path: str | os.PathLike) -> dict[str, Any] | None:
    """How the file's demos were collected (``data.attrs["collection"]``: expert, its options, execution noise);
    None for files written before that was recorded."""
    with open_dataset(path) as f:
        stored = f["data"].attrs.get("collection")
    return None if stored is None else json.loads(stored)


def demo_names(f: h5py.File) -> list[str]:
    """Demo group names in index order (robomimic sorts by the integer after ``demo_``)."""
    return sorted(f["data"].keys(), key=lambda name: int(name[5:]))


def make_env_from_dataset(path: str | os.PathLike, **overrides):
    """The exact environment a dataset was recorded in (``gym.make`` with the stored kwargs), optionally changed
    by ``overrides`` (e.g. ``cameras=("frontview",), image_size=256`` to re-render)."""
    import gymnasium as gym

    import mu0sim.envs  # noqa: F401  (registers the ids)

    env_args = read_env_args(path)
    if "mu0sim" not in env_args:
        raise DatasetError(f"{path}: env_args has no 'mu0sim' entry; this file was not written by mu0sim")
    kwargs = dict(env_args["mu0sim"]["kwargs"])
    kwargs.pop("task", None)
    kwargs.update(overrides)
    return gym.make(env_args["mu0sim"]["env_id"], **kwargs)


def iter_episodes(path: str | os.PathLike, obs_keys: list[str] | None = None) -> Iterator[tuple[str, dict]]:
    """Yield ``(demo name, {states, actions, rewards, dones, obs, model_file, instruction, seed, expert_actions,
    start_step, start_control})`` per demo; ``expert_actions`` is None unless the demos were collected with DART
    noise, ``start_control`` None unless they start where a takeover policy left the episode."""
    with open_dataset(path) as f:
        for name in demo_names(f):
            group = f["data"][name]
            keys = obs_keys if obs_keys is not None else list(group["obs"].keys())
            yield name, {
                "states": group["states"][()], "actions": group["actions"][()], "rewards": group["rewards"][()],
                "dones": group["dones"][()], "obs": {k: group["obs"][k][()] for k in keys},
                "model_file": group.attrs["model_file"], "instruction": group.attrs.get("instruction", ""),
                "seed": int(group.attrs.get("seed", -1)),
                "expert_actions": group["expert_actions"][()] if "expert_actions" in group else None,
                "start_step": int(group.attrs.get("start_step", 0)), "start_control": read_start_control(group),
            }


def read_start_control(group: h5py.Group) -> dict[str, np.ndarray] | None:
    """A demo's ``start_control`` (the controllers' memory at its first state), None for demos that start at their
    seed's initial state (pass it to ``reset_to_state`` with the first state either way)."""
    if "start_control" not in group:
        return None
    out: dict[str, np.ndarray] = {}
    group["start_control"].visititems(lambda key, item: out.__setitem__(key, item[()])
                                      if isinstance(item, h5py.Dataset) else None)
    return out


def _write_demo(group: h5py.Group, record: EpisodeRecord) -> None:
    n = record.num_samples
    group.attrs["num_samples"] = n
    group.attrs["model_file"] = record.model_file
    group.attrs["instruction"] = record.instruction
    group.attrs["seed"] = record.seed
    group.attrs["success"] = record.success
    if record.start_step:
        group.attrs["start_step"] = record.start_step
    for key, value in (record.start_control or {}).items():
        group.create_dataset(f"start_control/{key}", data=value)
    group.attrs["ep_meta"] = json.dumps({"lang": record.instruction, "seed": record.seed, "success": record.success})
    group.create_dataset("states", data=record.states.astype(np.float64))
    group.create_dataset("actions", data=record.actions.astype(np.float32))
    if record.expert_actions is not None:
        group.create_dataset("expert_actions", data=record.expert_actions.astype(np.float32))
    group.create_dataset("rewards", data=record.rewards.astype(np.float64))
    dones = np.zeros(n, dtype=np.uint8)
    dones[-1] = int(record.success)
    group.create_dataset("dones", data=dones)
    for prefix, rows in (("obs", slice(0, n)), ("next_obs", slice(1, n + 1))):
        sub = group.create_group(prefix)
        for key, value in record.obs.items():
            image = value.ndim >= 3
            sub.create_dataset(key, data=value[rows], chunks=(1, *value.shape[1:]) if image else None,
                               compression="lzf" if image else None)
    cams = group.create_group("camera")
    for cam, k in record.intrinsics.items():
        cams.create_dataset(f"{cam}/intrinsics", data=k)
        cams.create_dataset(f"{cam}/cam_to_world", data=record.cam_to_world[cam][:n])


class DatasetWriter:
    """Appends kept episodes to a dataset file through a journal; :meth:`commit` atomically rewrites the file.

    Args:
        path: the HDF5 file. If it exists it must have been recorded with the same environment (``env_args``).
        env_args: this run's :func:`env_args_for`.
        collection: how the demos were produced (e.g. the expert's options and execution noise), stored as the
            JSON attribute ``data.attrs["collection"]``; appending with different settings is refused. A file
            written before this attribute existed keeps no record (its provenance stays unknown).
        legacy_collection: the only settings a file without a record may be appended with (its provenance is
            unknown; ``collect`` passes the expert's defaults, what such files were collected with unless the user
            said otherwise). None: any.
    """

    def __init__(self, path: str | os.PathLike, env_args: dict[str, Any], collection: dict[str, Any] | None = None,
                 legacy_collection: dict[str, Any] | None = None):
        self.path = Path(path)
        self.env_args = env_args
        self.collection = json.loads(json.dumps(collection)) if collection is not None else None  # as stored
        self.legacy_collection = json.loads(json.dumps(legacy_collection)) if legacy_collection is not None else None
        self.journal_dir = self.path.with_name(self.path.name + ".journal")
        self._committed_attempts: list[tuple[int, int]] = []
        self._committed_demos = 0
        self._committed_samples = 0
        if self.path.exists():
            with open_dataset(self.path) as f:
                stored = json.loads(f["data"].attrs["env_args"])
                self._check_same_env(stored)
                self._check_same_collection(f["data"].attrs.get("collection"))
                self._committed_demos = len(f["data"])
                self._committed_samples = int(f["data"].attrs.get("total", 0))
                if "mu0sim/attempts" in f:
                    self._committed_attempts = [tuple(map(int, row)) for row in f["mu0sim/attempts"][()]]
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        self._pending: list[EpisodeRecord] = [self._load(p) for p in sorted(self.journal_dir.glob("*.pkl"))]
        self._pending.sort(key=lambda r: r.seed)

    def _check_same_env(self, stored: dict[str, Any]) -> None:
        ours, theirs = self.env_args.get("mu0sim", {}).get("kwargs"), stored.get("mu0sim", {}).get("kwargs")
        if ours != theirs:
            diff = {k: (theirs.get(k) if theirs else None, v) for k, v in (ours or {}).items()
                    if not theirs or theirs.get(k) != v}
            raise DatasetError(f"{self.path}: refusing to append: the file was recorded with a different environment "
                               f"(setting: (in file, requested)) {diff}; choose another --out or matching options")

    def _check_same_collection(self, stored_json: str | None) -> None:
        if stored_json is None:  # written before collections were recorded: nothing to compare, nothing to claim
            if self.legacy_collection is not None and self.collection != self.legacy_collection:
                raise DatasetError(f"{self.path}: refusing to append demos collected with {self.collection}: the file "
                                   "predates mu0sim's record of how demos were collected, so they could not be told "
                                   "apart; choose another --out")
            self.collection = None
            return
        stored = json.loads(stored_json)
        if self.collection != stored:
            raise DatasetError(f"{self.path}: refusing to append: its demos were collected with {stored}, this run "
                               f"with {self.collection}; choose another --out or matching options")

    @staticmethod
    def _load(path: Path) -> EpisodeRecord:
        with open(path, "rb") as fh:
            return pickle.load(fh)

    # ------------------------------------------------------------------ progress
    @property
    def attempts(self) -> list[tuple[int, int]]:
        """(seed, kept) of every attempt so far, committed or journalled, in seed order."""
        rows = self._committed_attempts + [(r.seed, int(r.kept)) for r in self._pending]
        return sorted(rows)

    @property
    def num_demos(self) -> int:
        return self._committed_demos + sum(r.kept for r in self._pending)

    def add(self, record: EpisodeRecord) -> None:
        """Journal one attempt (kept or not) durably: temporary file, fsync, rename."""
        if record.seed in {seed for seed, _ in self.attempts}:
            raise ValueError(f"seed {record.seed} was already attempted in {self.path}")
        if not record.kept:  # dropped attempts are journalled without their (large) arrays, for resume and stats
            record = EpisodeRecord(seed=record.seed, success=record.success, sim_error=record.sim_error)
        target = self.journal_dir / f"{record.seed:012d}.pkl"
        tmp = target.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(record, fh, protocol=pickle.HIGHEST_PROTOCOL)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        self._pending.append(record)

    # ------------------------------------------------------------------ commit
    def commit(self) -> None:
        """Rewrite the file with the committed demos plus the journal, atomically; then clear the journal."""
        if not self._pending and self.path.exists():
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        kept = [r for r in sorted(self._pending, key=lambda r: r.seed) if r.kept]
        try:
            with h5py.File(tmp, "w") as out:
                data = out.create_group("data")
                index = 0
                if self.path.exists():
                    with open_dataset(self.path) as old:
                        for name in demo_names(old):
                            old.copy(old["data"][name], data, name=f"demo_{index}")
                            index += 1
                for record in kept:
                    _write_demo(data.create_group(f"demo_{index}"), record)
                    index += 1
                names = [f"demo_{i}" for i in range(index)]
                data.attrs["total"] = int(sum(data[n].attrs["num_samples"] for n in names))
                data.attrs["env_args"] = json.dumps(self.env_args)
                if self.collection is not None:
                    data.attrs["collection"] = json.dumps(self.collection, sort_keys=True)
                valid = [n for i, n in enumerate(names) if i % VALID_EVERY == VALID_EVERY - 1]
                train = [n for n in names if n not in set(valid)]
                out.create_dataset("mask/train", data=np.array(train, dtype="S"))
                out.create_dataset("mask/valid", data=np.array(valid, dtype="S"))
                out.create_dataset("mu0sim/attempts", data=np.array(self.attempts, dtype=np.int64).reshape(-1, 2))
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()
        self._committed_attempts = self.attempts
        self._committed_demos = index
        for record in self._pending:
            (self.journal_dir / f"{record.seed:012d}.pkl").unlink(missing_ok=True)
        self._pending = []

    def close(self) -> None:
        """Commit, then remove the (now empty) journal."""
        self.commit()
        shutil.rmtree(self.journal_dir, ignore_errors=True)
