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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from mu0sim.policies.action_expert import (TRACE_STEPS, ActionExpert, ActionExpertConfig, ActionExpertNet,
                                           Normalization, chunk_loss, point_features, proprio_features)

MAX_CHUNK = 32  # actions cached per row: the longest chunk an expert can be trained to predict
TRAINABLE_VARIANTS = ("trace", "trace-2d", "no-trace", "gt-trace", "action-pretrained")
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
    wrist_camera: str | None = "robot0_eye_in_hand"  # None: the expert sees no wrist view
    feature_every: int = 1  # query μ0 on every k-th demo step only (k x faster feature replay, 1/k the samples)
    # action-pretrained only: demos of other robots, pooled with ``data`` for ``pretrain_steps`` before the
    # ``steps`` of fine-tuning on ``data`` alone (the π0 recipe at this project's scale)
    pretrain_data: list[str] = field(default_factory=list)
    pretrain_steps: int = 3000
    pretrain_episodes: int | None = None  # first N demos of each pretraining file (None: as many as ``episodes``)


def trace_source(variant: str) -> str:
    """Where a variant's traces come from: frozen μ0, or the ground-truth oracle for ``gt-trace``."""
    return "oracle" if variant == "gt-trace" else "mu0"


def replay_features(dataset: str | Path, mu0, mu0_id: str, query: str, num_points: int,
                    episodes: int | None = None, progress: bool = True, traces: str = "mu0",
                    wrist_camera: str | None = None, every: int = 1) -> dict[str, np.ndarray]:
    """Per-step μ0 observation features and actions of every demo (cached). Returns arrays over all steps plus
    ``episode`` (N,) and ``step`` (N,). ``traces="oracle"`` stores ground-truth future traces instead of μ0's;
    ``wrist_camera`` adds ``wrist_tokens`` (stored as float16: they are most of the cache). ``every``: rows for
    every k-th step only (μ0 runs and the cameras render only there)."""
    from tqdm import tqdm

    from mu0sim.datasets.hdf5 import demo_names, make_env_from_dataset, open_dataset
    from mu0sim.policies.oracle_traces import RecordedFutureOracle
    from mu0sim.policies.trace_observation import Mu0TraceObservation

    dataset = Path(dataset)
    suffix = (("" if traces == "mu0" else f"-{traces}") + ("" if wrist_camera is None else f"-{wrist_camera}")
              + ("" if every == 1 else f"-every{every}"))
    cache = dataset.with_name(f"{dataset.stem}.bc-{mu0_id}-{query}{num_points}{suffix}.npz")
    with open_dataset(dataset) as f:
        names = demo_names(f)[:episodes]
        demos = [(int(n[5:]), int(f[f"data/{n}"].attrs["seed"]), f[f"data/{n}/actions"][()],
                  f[f"data/{n}/states"][()]) for n in names]
    if cache.exists():
        data = dict(np.load(cache))
        if "action_chunk" in data and set(np.unique(data["episode"])) >= {d[0] for d in demos}:
            keep = np.isin(data["episode"], [d[0] for d in demos])
            return {k: v[keep] for k, v in data.items()}
    env = make_env_from_dataset(dataset, cameras=(mu0.config.camera,), depth=True, segmentation=True,
                                image_size=(mu0.image_size, mu0.image_size), image_period=0)
    # ground truth for a demo is its own recorded future (what the expert oracle reproduces in closed loop)
    oracle = RecordedFutureOracle() if traces == "oracle" else None
    env = Mu0TraceObservation(env, mu0, query=query, num_points=num_points, query_every=every,
                              camera=mu0.config.camera,
                              traces=traces, oracle=oracle, wrist_camera=wrist_camera)
    keys = (*FEATURE_KEYS, *(("wrist_tokens",) if wrist_camera else ()))
    rows: dict[str, list] = {k: [] for k in (*keys, "action_chunk", "episode", "step", "episode_length")}
    worst = 0.0
    try:
        for index, seed, actions, states in tqdm(demos, desc=f"μ0 features {dataset.name}", unit="demo",
                                                 disable=not progress, dynamic_ncols=True):
            if oracle is not None:
                oracle.load(states)
            obs, _ = env.reset(seed=seed)
            for t, action in enumerate(actions):
                worst = max(worst, float(np.abs(env.unwrapped.get_state() - states[t]).max()))
                if t % every:
                    obs, *_ = env.step(action)
                    continue
                for k in keys:
                    value = obs[k].astype(np.float16) if k == "wrist_tokens" else obs[k]
                    rows[k].append(value[:, np.array(TRACE_STEPS) - 1] if k in ("mu0_traces", "mu0_traces_world")
                                   else value)
                rows["action_chunk"].append(next_actions(actions, t, MAX_CHUNK))
                rows["episode"].append(index)
                rows["step"].append(t)
                rows["episode_length"].append(len(actions))
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


def next_actions(actions: np.ndarray, t: int, length: int) -> np.ndarray:
    """(length, A) the actions from step ``t`` on; past the episode's end the last action repeats (and the
    validity, :func:`chunk_validity`, is 0 there)."""
    idx = np.minimum(np.arange(t, t + length), len(actions) - 1)
    return actions[idx]


def chunk_validity(steps: np.ndarray, episode_lengths: np.ndarray, length: int) -> np.ndarray:
    """(N, length) 1 where step ``steps + i`` is still inside its episode of ``episode_lengths`` steps."""
    return (steps[:, None] + np.arange(length)[None] < episode_lengths[:, None]).astype(np.float32)


def train_policy(config: TrainPolicyConfig, progress: bool = True) -> dict:
    from mu0sim.datasets.hdf5 import read_env_args
    from mu0sim.model import Mu0

    if config.variant not in TRAINABLE_VARIANTS:
        raise ValueError(f"unknown variant {config.variant!r}; trainable: {', '.join(TRAINABLE_VARIANTS)}")
    if (config.variant == "action-pretrained") != bool(config.pretrain_data):
        raise ValueError("pretrain_data (other robots' demos) is required by variant 'action-pretrained' and only "
                         f"used by it; got variant {config.variant!r} with {len(config.pretrain_data)} pretrain files")
    robots = {read_env_args(d)["mu0sim"]["kwargs"]["robot"] for d in config.data}
    tasks = {read_env_args(d)["mu0sim"]["kwargs"]["task"] for d in config.data}
    if len(robots) != 1:
        raise ValueError(f"an action expert is per embodiment; the data holds robots {sorted(robots)}")
    mu0 = Mu0.from_pretrained(config.mu0)
    mu0_id = mu0_fingerprint(config.mu0)
    files = [*config.data, *config.pretrain_data]
    pretrain_episodes = config.pretrain_episodes or config.episodes
    parts = [replay_features(d, mu0, mu0_id, config.query, config.num_points,
                             config.episodes if i < len(config.data) else pretrain_episodes, progress,
                             trace_source(config.variant), config.wrist_camera, config.feature_every)
             for i, d in enumerate(files)]
    for i, p in enumerate(parts):
        p["episode"] = p["episode"] + 100000 * i  # distinct episodes across files
        p["target"] = np.full(len(p["episode"]), i < len(config.data))
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    # validation: the last demos of the target robot's files
    episodes = np.unique(data["episode"][data["target"]])
    n_val = max(1, round(len(episodes) * config.val_fraction)) if len(episodes) > 1 else 0
    is_val = np.isin(data["episode"], episodes[len(episodes) - n_val:])
    points = point_features(data, config.variant)
    proprio = proprio_features(data)
    image = data["mu0_image"].astype(np.float32)
    mask = data["mu0_query_mask"]
    wrist = data.get("wrist_tokens")
    if config.chunk > MAX_CHUNK:
        raise ValueError(f"chunk must be <= {MAX_CHUNK} (the cached action horizon), got {config.chunk}")
    target = data["action_chunk"][:, :config.chunk].astype(np.float32)
    valid = chunk_validity(data["step"], data["episode_length"], config.chunk)
    train = ~is_val
    norm = Normalization.fit(proprio[train], image[train], points[train], mask[train],
                             None if wrist is None else wrist[train])
    pc = ActionExpertConfig(variant=config.variant, head=config.head, robot=robots.pop(), task=",".join(sorted(tasks)),
                            chunk=config.chunk, execute=config.execute, mu0_id=mu0_id,
                            wrist_camera=config.wrist_camera)
    torch.manual_seed(config.seed)
    net = ActionExpertNet(pc)
    tens = {"points": torch.as_tensor((points - norm.point_mean) / norm.point_std, dtype=torch.float32),
            "mask": torch.as_tensor(mask), "proprio": torch.as_tensor((proprio - norm.proprio_mean) / norm.proprio_std,
                                                                       dtype=torch.float32),
            "image": torch.as_tensor((image - norm.image_mean) / norm.image_std, dtype=torch.float32),
            "target": torch.as_tensor(target.reshape(len(target), -1)),
            "valid": torch.as_tensor(np.repeat(valid, pc.action_dim, axis=1).astype(np.float32))}
    if wrist is not None:
        tens["wrist"] = torch.as_tensor(((wrist - norm.wrist_mean) / norm.wrist_std).astype(np.float32))
    rng = np.random.default_rng(config.seed)
    val_rows = np.flatnonzero(is_val)

    def loss_of(rows) -> torch.Tensor:
        ctx = net.context(tens["points"][rows], tens["mask"][rows], tens["proprio"][rows], tens["image"][rows],
                          tens["wrist"][rows] if "wrist" in tens else None)
        return chunk_loss(net, ctx, tens["target"][rows], tens["valid"][rows])

    start = time.perf_counter()
    history: list[dict] = []
    stages = [("fine-tune" if config.pretrain_data else "train", np.flatnonzero(train & data["target"]),
               config.steps)]
    if config.pretrain_data:
        stages.insert(0, ("pretrain", np.flatnonzero(train), config.pretrain_steps))  # pooled robots
    for stage, rows, steps in stages:
        _optimize(net, loss_of, rows, val_rows, steps, config, rng, history, stage, progress)
    wall = time.perf_counter() - start
    policy = ActionExpert(net, norm)
    total_steps = sum(s for _, _, s in stages)
    summary = {"out": config.out, "variant": config.variant, "robot": pc.robot,
               "samples": int((train & data["target"]).sum()), "pretrain_samples": int((train & ~data["target"]).sum()),
               "val_samples": int(is_val.sum()), "steps": total_steps, "wall_s": round(wall, 1),
               "samples_per_s": round(total_steps * config.batch_size / wall, 1),
               "val_loss": history[-1]["val_loss"] if history else None}
    policy.save(config.out, {"training": {**summary, "history": history}, "train_config": asdict(config)})
    return summary


def _optimize(net, loss_of, rows: np.ndarray, val_rows: np.ndarray, steps: int, config: TrainPolicyConfig,
              rng: np.random.Generator, history: list[dict], stage: str, progress: bool) -> None:
    """AdamW + cosine schedule over ``steps`` batches of ``rows``; validation every 500 steps into ``history``."""
    from tqdm import tqdm

    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for step in tqdm(range(steps), desc=f"train-policy {config.variant} ({stage})", disable=not progress,
                     dynamic_ncols=True):
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
            history.append({"stage": stage, "step": step + 1, "train_loss": float(loss.detach()), "val_loss": val})


__all__ = ["TrainPolicyConfig", "train_policy", "replay_features", "mu0_fingerprint", "next_actions", "chunk_validity",
           "trace_source"]
