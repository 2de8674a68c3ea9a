"""``mu0sim train-policy``: behaviour cloning of an action expert on frozen μ0's traces.

μ0's predictions over the training demos are computed once: every demo is replayed (its seed's reset, then its
recorded actions) through :class:`Mu0TraceObservation` with a query at every step, and the observation features are
cached next to the dataset (``<dataset>.bc-<μ0 id>-<query>.npz``). Training then only touches the small expert.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mu0sim.policies.action_expert import (TRACE_STEPS, ActionExpert, ActionExpertConfig, ActionExpertNet,
                                           Normalization, chunk_loss, point_features, proprio_features)

TRAINABLE_VARIANTS = ("trace", "trace-2d", "no-trace")
FEATURE_KEYS = ("mu0_query_world", "mu0_query_uvz", "mu0_traces", "mu0_traces_world", "mu0_query_mask", "mu0_image",
                "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_width")


def mu0_fingerprint(ckpt: str | Path) -> str:
    """Short hash of μ0's weights: a policy trained on one μ0's traces refuses another's."""
    return hashlib.sha256((Path(ckpt) / "model.safetensors").read_bytes()).hexdigest()[:12]


@dataclass
class TrainPolicyConfig:
    data: list[str]
    mu0: str
    out: str
    variant: str = "trace"
    head: str = "regression"
    query: str = "keypoints"
    num_points: int = 32
    episodes: int | None = None  # first N demos of each file
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    chunk: int = 16
    execute: int = 8
    seed: int = 0


def replay_features(dataset: str | Path, mu0, mu0_id: str, query: str, num_points: int,
                    episodes: int | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """Per-step μ0 observation features and actions of every demo (cached). Returns arrays over all steps plus
    ``episode`` (N,) and ``step`` (N,)."""
    from tqdm import tqdm

    from mu0sim.datasets.hdf5 import demo_names, make_env_from_dataset, open_dataset
    from mu0sim.policies.trace_observation import Mu0TraceObservation

    dataset = Path(dataset)
    cache = dataset.with_name(f"{dataset.stem}.bc-{mu0_id}-{query}{num_points}.npz")
    with open_dataset(dataset) as f:
        names = demo_names(f)[:episodes]
        demos = [(int(n[5:]), int(f[f"data/{n}"].attrs["seed"]), f[f"data/{n}/actions"][()],
                  f[f"data/{n}/states"][()]) for n in names]
    if cache.exists():
        data = dict(np.load(cache))
        if set(np.unique(data["episode"])) >= {d[0] for d in demos}:
            keep = np.isin(data["episode"], [d[0] for d in demos])
            return {k: v[keep] for k, v in data.items()}
    env = make_env_from_dataset(dataset, cameras=(mu0.config.camera,), depth=True, segmentation=True,
                                image_size=(mu0.image_size, mu0.image_size), image_period=0)
    env = Mu0TraceObservation(env, mu0, query=query, num_points=num_points, query_every=1, camera=mu0.config.camera)
    rows: dict[str, list] = {k: [] for k in (*FEATURE_KEYS, "action", "episode", "step")}
    worst = 0.0
    try:
        for index, seed, actions, states in tqdm(demos, desc=f"μ0 features {dataset.name}", unit="demo",
                                                 disable=not progress, dynamic_ncols=True):
            obs, _ = env.reset(seed=seed)
            for t, action in enumerate(actions):
                worst = max(worst, float(np.abs(env.unwrapped.get_state() - states[t]).max()))
                for k in FEATURE_KEYS:
                    value = obs[k]
                    rows[k].append(value[:, np.array(TRACE_STEPS) - 1] if k in ("mu0_traces", "mu0_traces_world")
                                   else value)
                rows["action"].append(action)
                rows["episode"].append(index)
                rows["step"].append(t)
                obs, *_ = env.step(action)
    finally:
        env.close()
    if worst > 1e-3:
        raise ValueError(f"{dataset}: replaying the demos diverged from their recorded states by {worst:.3g}; the "
                         "features would not match the actions")
    data = {k: np.asarray(v) for k, v in rows.items()}
    fd, tmp = tempfile.mkstemp(dir=dataset.parent, prefix=cache.name, suffix=".tmp.npz")
    os.close(fd)
    np.savez(tmp, **data)
    os.replace(tmp, cache)
    return data


def action_chunks(actions: np.ndarray, episode: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, chunk, A) the next ``chunk`` actions from every step of its episode, and (N, chunk) validity (steps past
    the episode's end repeat its last action, with validity 0)."""
    n = len(actions)
    idx = np.arange(n)[:, None] + np.arange(chunk)[None]
    same = (idx < n) & (episode[np.minimum(idx, n - 1)] == episode[:, None])
    # clamp to the episode's last step
    last_of = {e: np.flatnonzero(episode == e).max() for e in np.unique(episode)}
    last = np.array([last_of[e] for e in episode])
    idx = np.minimum(idx, last[:, None])
    return actions[idx], same


def train_policy(config: TrainPolicyConfig, progress: bool = True) -> dict:
    from tqdm import tqdm

    from mu0sim.datasets.hdf5 import read_env_args
    from mu0sim.model import Mu0

    if config.variant not in TRAINABLE_VARIANTS:
        raise ValueError(f"variant {config.variant!r} cannot be trained yet (its oracle traces / action "
                         f"pretraining are not built); trainable now: {', '.join(TRAINABLE_VARIANTS)}")
    robots = {read_env_args(d)["mu0sim"]["kwargs"]["robot"] for d in config.data}
    tasks = {read_env_args(d)["mu0sim"]["kwargs"]["task"] for d in config.data}
    if len(robots) != 1:
        raise ValueError(f"an action expert is per embodiment; the data holds robots {sorted(robots)}")
    mu0 = Mu0.from_pretrained(config.mu0)
    mu0_id = mu0_fingerprint(config.mu0)
    parts = [replay_features(d, mu0, mu0_id, config.query, config.num_points, config.episodes, progress)
             for d in config.data]
    for i, p in enumerate(parts):
        p["episode"] = p["episode"] + 100000 * i  # distinct episodes across files
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    episodes = np.unique(data["episode"])
    n_val = max(1, round(len(episodes) * config.val_fraction)) if len(episodes) > 1 else 0
    val_eps = episodes[len(episodes) - n_val:]
    is_val = np.isin(data["episode"], val_eps)
    points = point_features(data, config.variant)
    proprio = proprio_features(data)
    image = data["mu0_image"].astype(np.float32)
    mask = data["mu0_query_mask"]
    target, valid = action_chunks(data["action"].astype(np.float32), data["episode"], config.chunk)
    train = ~is_val
    norm = Normalization.fit(proprio[train], image[train], points[train], mask[train])
    pc = ActionExpertConfig(variant=config.variant, head=config.head, robot=robots.pop(), task=",".join(sorted(tasks)),
                            chunk=config.chunk, execute=config.execute, mu0_id=mu0_id)
    torch.manual_seed(config.seed)
    net = ActionExpertNet(pc)
    tens = {"points": torch.as_tensor((points - norm.point_mean) / norm.point_std, dtype=torch.float32),
            "mask": torch.as_tensor(mask), "proprio": torch.as_tensor((proprio - norm.proprio_mean) / norm.proprio_std,
                                                                       dtype=torch.float32),
            "image": torch.as_tensor((image - norm.image_mean) / norm.image_std, dtype=torch.float32),
            "target": torch.as_tensor(target.reshape(len(target), -1)),
            "valid": torch.as_tensor(np.repeat(valid, pc.action_dim, axis=1).astype(np.float32))}
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps)
    rng = np.random.default_rng(config.seed)
    train_rows, val_rows = np.flatnonzero(train), np.flatnonzero(is_val)
    start = time.perf_counter()

    def loss_of(rows) -> torch.Tensor:
        ctx = net.context(tens["points"][rows], tens["mask"][rows], tens["proprio"][rows], tens["image"][rows])
        return chunk_loss(net, ctx, tens["target"][rows], tens["valid"][rows])

    history = []
    for step in tqdm(range(config.steps), desc=f"train-policy {config.variant}", disable=not progress,
                     dynamic_ncols=True):
        net.train()
        loss = loss_of(rng.choice(train_rows, config.batch_size))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 500 == 0 or step + 1 == config.steps:
            net.eval()
            with torch.no_grad():
                torch.manual_seed(1234)
                val = float(loss_of(val_rows)) if len(val_rows) else float("nan")
            history.append({"step": step + 1, "train_loss": float(loss.detach()), "val_loss": val})
    wall = time.perf_counter() - start
    policy = ActionExpert(net, norm)
    summary = {"out": config.out, "variant": config.variant, "robot": pc.robot, "samples": int(train.sum()),
               "val_samples": int(is_val.sum()), "steps": config.steps, "wall_s": round(wall, 1),
               "samples_per_s": round(config.steps * config.batch_size / wall, 1),
               "val_loss": history[-1]["val_loss"] if history else None}
    policy.save(config.out, {"training": {**summary, "history": history}, "train_config": asdict(config)})
    return summary


__all__ = ["TrainPolicyConfig", "train_policy", "replay_features", "mu0_fingerprint", "action_chunks"]
