"""Replay recorded episodes: check they re-simulate exactly, and re-render them at other cameras or resolutions."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mu0sim.datasets.hdf5 import DatasetWriter, EpisodeRecord, env_args_for, iter_episodes, make_env_from_dataset, \
    open_dataset


@dataclass
class ReplayReport:
    """Largest absolute difference between recorded and re-simulated states ([time, qpos, qvel]) per demo."""

    demos: int = 0
    max_state_divergence: float = 0.0
    median_state_divergence: float = 0.0
    worst_demo: str = ""
    success_reproduced: int = 0
    per_demo: dict[str, float] = field(default_factory=dict)

    def to_dict(self, with_per_demo: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not with_per_demo:
            out.pop("per_demo")
        return out


def replay_dataset(path: str | os.PathLike, progress: bool = True) -> ReplayReport:
    """Re-simulate every demo from its first state with its recorded actions (state only, nothing rendered)."""
    from tqdm import tqdm

    env = make_env_from_dataset(path, cameras=())
    base = env.unwrapped
    report = ReplayReport()
    with open_dataset(path) as f:
        total = len(f["data"])
    for name, episode in tqdm(iter_episodes(path, obs_keys=[]), total=total, desc="replay", unit="demo",
                              disable=not progress, dynamic_ncols=True):
        states = episode["states"]
        base.reset_to_state(states[0], episode["model_file"], episode["start_control"])
        worst, info = 0.0, {}
        for t, action in enumerate(episode["actions"]):
            _, _, _, _, info = base.step(action)
            if t + 1 < len(states):
                worst = max(worst, float(np.max(np.abs(base.get_state() - states[t + 1]))))
        report.per_demo[name] = worst
        report.success_reproduced += int(bool(info.get("is_success")) == bool(episode["dones"][-1]))
    env.close()
    values = list(report.per_demo.values())
    report.demos = len(values)
    if values:
        report.max_state_divergence = max(values)
        report.median_state_divergence = float(np.median(values))
        report.worst_demo = max(report.per_demo, key=report.per_demo.get)
    return report


def rerender_dataset(path: str | os.PathLike, out: str | os.PathLike, progress: bool = True,
                     **env_overrides) -> int:
    """Write a copy of ``path`` to ``out`` with observations rendered by an env changed by ``env_overrides``
    (``cameras``, ``image_size``, ``depth``, ``segmentation``). States, actions and rewards are copied; the images
    come from the recorded states (the final observation from re-simulating the last action). Returns the demo count."""
    from tqdm import tqdm

    if Path(out).resolve() == Path(path).resolve():
        raise ValueError(f"--out must differ from the dataset being replayed ({path})")
    if Path(out).exists():
        raise FileExistsError(f"{out} exists; re-rendering writes a new file (remove it or choose another --out)")
    env = make_env_from_dataset(path, **env_overrides)
    base = env.unwrapped
    with open_dataset(path) as f:
        total = len(f["data"])
        collection = f["data"].attrs.get("collection")
    writer = DatasetWriter(out, env_args_for(base), collection=json.loads(collection) if collection else None)
    for _, episode in tqdm(iter_episodes(path, obs_keys=[]), total=total, desc="re-render", unit="demo",
                           disable=not progress, dynamic_ncols=True):
        states, actions = episode["states"], episode["actions"]
        base.reset_to_state(states[0], episode["model_file"], episode["start_control"])
        observations, poses = [], {cam: [] for cam in base.cameras}
        for state in states:
            observations.append(base.observe_state(state))
            for cam in base.cameras:
                poses[cam].append(base.camera_params(cam).cam_to_world)
        base.reset_to_state(states[-1])
        final, *_ = base.step(actions[-1])
        observations.append(final)
        for cam in base.cameras:
            poses[cam].append(base.camera_params(cam).cam_to_world)
        writer.add(EpisodeRecord(
            seed=episode["seed"], success=bool(episode["dones"][-1]), kept=True, states=states, actions=actions,
            expert_actions=episode["expert_actions"],
            rewards=episode["rewards"], obs={k: np.stack([o[k] for o in observations]) for k in observations[0]},
            intrinsics={cam: base.camera_params(cam).intrinsics for cam in base.cameras},
            cam_to_world={cam: np.array(p) for cam, p in poses.items()}, model_file=episode["model_file"],
            instruction=episode["instruction"], start_step=episode["start_step"],
            start_control=episode["start_control"]))
    env.close()
    writer.close()
    return total
