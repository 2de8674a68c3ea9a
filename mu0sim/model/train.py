"""``mu0sim pretrain``: train μ0 and the learned baselines on one split of TraceExtract samples.

Split (identical for every model, recorded in the checkpoint): files of ``holdout_robot`` are never trained on (the
``held_out_robot`` evaluation split); in every other file, demos are ordered by index and the first
``1 - eval_fraction - val_fraction`` train, the next ``val_fraction`` give the validation loss and the last
``eval_fraction`` are the ``seen_robots`` evaluation split.

Checkpoint folder::

    CKPT/config.json  model.safetensors  normalizer.json  instructions.json   μ0
    CKPT/baselines/<kind>/config.json  model.safetensors  normalizer.json    learned baselines
    CKPT/.resume/<kind>.pt                                                   while training (removed when done)
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from mu0sim.model.backbone import InstructionCache
from mu0sim.model.networks import TraceBatch
from mu0sim.model.samples import SampleConfig, TraceSamples, load_samples
from mu0sim.model.trace_model import (MODEL_KINDS, TraceModel, TraceModelConfig, TraceNormalizer, fit_controls,
                                      save_trace_model)

SPLITS = ("train", "val", "seen_robots", "held_out_robot")


@dataclass
class PretrainConfig:
    """Everything ``mu0sim pretrain`` does; dotted CLI overrides reach nested fields (``--model.dim=192``)."""

    data: list[str] = field(default_factory=list)
    out: str = "checkpoints/mu0"
    holdout_robot: str | None = "Kinova3"
    models: tuple[str, ...] = MODEL_KINDS
    steps: int = 3000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    val_every: int = 500
    seed: int = 0
    eval_fraction: float = 0.2
    val_fraction: float = 0.1
    threads: int | None = None
    workers: int = 1  # processes that build missing sample caches (rendering + frozen backbone)
    resume_every_s: float = 60.0
    samples: SampleConfig = field(default_factory=SampleConfig)
    model: TraceModelConfig = field(default_factory=TraceModelConfig)

    def validate(self) -> None:
        if not self.data:
            raise ValueError("no --data files given")
        for path in self.data:
            if not Path(path).exists():
                raise FileNotFoundError(f"dataset {path} not found")
        bad = [m for m in self.models if m not in MODEL_KINDS]
        if bad:
            raise ValueError(f"unknown model kinds {bad}; valid kinds: {', '.join(MODEL_KINDS)}")
        if not 0 < self.eval_fraction + self.val_fraction < 1:
            raise ValueError(f"eval_fraction + val_fraction must be in (0, 1), got "
                             f"{self.eval_fraction} + {self.val_fraction}")


def split_of(samples: TraceSamples, holdout_robot: str | None, eval_fraction: float,
             val_fraction: float) -> np.ndarray:
    """(N,) split name per sample (see the module docstring). Demos are ranked within each (robot, task) file."""
    out = np.empty(len(samples), dtype=object)
    for key in set(zip(samples.robot.tolist(), samples.task.tolist())):
        rows = np.flatnonzero((samples.robot == key[0]) & (samples.task == key[1]))
        if holdout_robot is not None and samples.robots[key[0]] == holdout_robot:
            out[rows] = "held_out_robot"
            continue
        episodes = np.unique(samples.episode[rows])
        n = len(episodes)
        first_eval, first_val = n - round(n * eval_fraction), n - round(n * eval_fraction) - round(n * val_fraction)
        rank = np.searchsorted(episodes, samples.episode[rows])
        out[rows] = np.where(rank >= first_eval, "seen_robots", np.where(rank >= first_val, "val", "train"))
    return out


def make_batch(samples: TraceSamples, index: np.ndarray, text: np.ndarray, normalizer: TraceNormalizer,
               device: str = "cpu") -> tuple[TraceBatch, dict[str, torch.Tensor]]:
    """Model inputs and targets of the samples at ``index``; keypoint axis trimmed to the widest sample."""
    width = max(int(samples.keypoint_mask[index].sum(1).max()), 1)
    t = lambda a, dtype=None: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)  # noqa: E731
    batch = TraceBatch(
        rgb_map=t(samples.rgb_map[index]), depth_map=t(samples.depth_map[index]),
        rgb_tokens=t(samples.rgb_tokens[index]), depth_tokens=t(samples.depth_tokens[index]),
        text=t(text[samples.instruction[index]]), current=t(samples.current[index, :width]),
        history=t(samples.history[index, :width] / normalizer.scale, torch.float32),
        history_valid=t(samples.history_valid[index, :width]), keypoint_mask=t(samples.keypoint_mask[index, :width]))
    targets = {"future": t(samples.future[index, :width]), "future_valid": t(samples.future_valid[index, :width]),
               "body": t(samples.body[index, :width]), "category": t(samples.category[index, :width])}
    return batch, targets


class _Trainer:
    def __init__(self, config: PretrainConfig, model_config: TraceModelConfig, samples: TraceSamples,
                 split: np.ndarray, normalizer: TraceNormalizer, text: np.ndarray, controls, fit_ok) -> None:
        self.config, self.samples, self.text, self.normalizer = config, samples, text, normalizer
        self.train_rows = np.flatnonzero(split == "train")
        self.val_rows = np.flatnonzero(split == "val")
        torch.manual_seed(config.seed)
        self.model = TraceModel(model_config, normalizer)
        self.controls, self.fit_ok = controls, fit_ok
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        warm, total = config.warmup_steps, config.steps
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + np.cos(np.pi * min(s / total, 1.0))))
        self.rng = np.random.default_rng(config.seed)
        self.step, self.history = 0, []

    def _loss(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        batch, tgt = make_batch(self.samples, rows, self.text, self.normalizer)
        width = batch.current.shape[1]
        extra = {}
        if self.model.config.kind == "mu0":
            extra = {"controls": torch.as_tensor(self.controls[rows, :width]),
                     "fit_valid": torch.as_tensor(self.fit_ok[rows, :width])}
        return self.model.loss(batch, tgt["future"], tgt["future_valid"], body=tgt["body"], category=tgt["category"],
                               **extra)

    def train_step(self) -> float:
        self.model.train()
        rows = self.rng.choice(self.train_rows, self.config.batch_size)
        loss = self._loss(rows)["loss"]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.sched.step()
        self.step += 1
        return float(loss.detach())

    @torch.no_grad()
    def validation_loss(self) -> float:
        self.model.eval()
        gen = torch.get_rng_state()
        torch.manual_seed(1234)  # the same flow-matching noise every time, so values are comparable
        losses = [float(self._loss(self.val_rows[i:i + 64])["loss"]) for i in range(0, len(self.val_rows), 64)]
        torch.set_rng_state(gen)
        return float(np.mean(losses)) if losses else float("nan")

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "step": self.step, "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "history": self.history}

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.step, self.history = state["step"], state["history"]
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def pretrain(config: PretrainConfig, progress: bool = True) -> dict:
    """Train every model in ``config.models``; returns a summary (per model: steps, final validation loss, s)."""
    from tqdm import tqdm

    config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    instructions = InstructionCache.load(out / "instructions.json") if (out / "instructions.json").exists() \
        else InstructionCache()
    samples_cfg = replace(config.samples, image_size=config.model.image_size, camera=config.model.camera,
                          history=config.model.history, horizon=config.model.horizon)
    samples = load_samples(config.data, samples_cfg, instruction_cache=instructions, progress=progress,
                           workers=config.workers)
    instructions.save(out / "instructions.json")
    text = instructions.embed(samples.instructions)
    split = split_of(samples, config.holdout_robot, config.eval_fraction, config.val_fraction)
    train_rows = np.flatnonzero(split == "train")
    if len(train_rows) == 0:
        raise ValueError("the split leaves no training samples (check --holdout-robot and the data files)")
    train_ok = samples.future_valid[train_rows] & samples.keypoint_mask[train_rows][..., None]
    normalizer = TraceNormalizer.fit(samples.current[train_rows], samples.future[train_rows], train_ok)
    controls, fit_ok = fit_controls(samples.current, samples.future, samples.future_valid, normalizer,
                                    config.model.num_control)
    counts = {s: int((split == s).sum()) for s in SPLITS}
    meta = {"pretrain": _jsonable(asdict(config)), "split_counts": counts,
            "robots_seen": sorted({samples.robots[r] for r in np.unique(samples.robot[train_rows])}),
            "tasks": sorted(samples.tasks), "data": [Path(d).name for d in config.data]}
    summary: dict = {"out": str(out), "samples": counts, "models": {}}
    resume_dir = out / ".resume"
    resume_dir.mkdir(exist_ok=True)
    for kind in config.models:
        target = out if kind == "mu0" else out / "baselines" / kind
        done_marker = target / "config.json"
        if done_marker.exists() and json.loads(done_marker.read_text()).get("training", {}).get("finished"):
            summary["models"][kind] = json.loads(done_marker.read_text())["training"]
            continue
        trainer = _Trainer(config, replace(config.model, kind=kind), samples, split, normalizer, text, controls,
                           fit_ok)
        state_path = resume_dir / f"{kind}.pt"
        elapsed = 0.0
        if state_path.exists():
            state = torch.load(state_path, weights_only=False)
            trainer.load_state(state)
            elapsed = state.get("elapsed_s", 0.0)
        start, last_save = time.perf_counter() - elapsed, time.monotonic()
        bar = tqdm(total=config.steps, initial=trainer.step, desc=f"pretrain {kind}", disable=not progress,
                   dynamic_ncols=True)
        try:
            while trainer.step < config.steps:
                loss = trainer.train_step()
                bar.update(1)
                if trainer.step % 50 == 0:
                    bar.set_postfix(loss=f"{loss:.4f}")
                if trainer.step % config.val_every == 0 or trainer.step == config.steps:
                    trainer.history.append({"step": trainer.step, "train_loss": loss,
                                            "val_loss": trainer.validation_loss()})
                if time.monotonic() - last_save > config.resume_every_s:
                    _atomic_torch_save({**trainer.state(), "elapsed_s": time.perf_counter() - start}, state_path)
                    last_save = time.monotonic()
        except KeyboardInterrupt:
            _atomic_torch_save({**trainer.state(), "elapsed_s": time.perf_counter() - start}, state_path)
            raise
        finally:
            bar.close()
        wall = time.perf_counter() - start
        if kind == "mu0":  # the point estimate's noise scale, chosen on the validation split
            trainer.model.config.point_noise_scale, scale_scores = _choose_point_noise_scale(
                trainer.model, samples, trainer.val_rows, text, config.seed)
        training = {"finished": True, "steps": trainer.step, "wall_s": round(wall, 1),
                    "samples_per_s": round(trainer.step * config.batch_size / wall, 1),
                    "history": trainer.history,
                    **({"point_noise_scale_val_ade32_cm": scale_scores} if kind == "mu0" else {}),
                    "parameters": sum(p.numel() for p in trainer.model.parameters()
                                                                   if p.requires_grad)}
        save_trace_model(trainer.model, target, {**meta, "training": training})
        state_path.unlink(missing_ok=True)
        summary["models"][kind] = {k: v for k, v in training.items() if k != "history"} | \
            {"val_loss": trainer.history[-1]["val_loss"] if trainer.history else None}
    shutil.rmtree(resume_dir, ignore_errors=True)
    return summary


def _choose_point_noise_scale(model: TraceModel, samples: TraceSamples, val_rows: np.ndarray, text: np.ndarray,
                              seed: int, candidates: tuple[float, ...] = (1.0, 0.5, 0.0)) -> tuple[float, dict]:
    """Initial-noise scale whose point predictions have the lowest 3D ADE@H on (at most 300 of) the validation
    anchors; returns it and every candidate's score."""
    from mu0sim.model.evaluate import predict_learned, score

    if len(val_rows) == 0:
        return model.config.point_noise_scale, {}
    rows = np.random.default_rng(seed).choice(val_rows, min(len(val_rows), 300), replace=False)
    model.eval()
    scores = {}
    for scale in candidates:
        with torch.inference_mode():
            pred = predict_learned(model, samples, rows, text, 1, seed, noise_scale=scale)[0]
        row = next(r for r in score(pred, samples, rows)[0] if r["space"] == "3d_cm" and
                   r["horizon"] == model.config.horizon)
        scores[str(scale)] = round(row["ade"], 4)
    best = min(candidates, key=lambda c: scores[str(c)])
    return best, scores


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
