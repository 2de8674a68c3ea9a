"""``mu0sim eval-traces``: μ0 and every baseline on the checkpoint's held-out episodes, one table.

Rows of ``report.json``: ``{model, split, space, horizon, ade, fde, dtw, frechet, min_ade_5, keypoints}``; ``space``
is ``2d_px`` (pixels of the anchor image) or ``3d_cm`` (camera-frame xyz from uv + depth, centimetres). Splits:
``seen_robots`` (the last demos of every training robot's files, never trained on) and ``held_out_robot`` (the robot
excluded from pretraining). ``min_ade_5`` is filled for sampled models (μ0, token-ar) only. ``by_category`` holds
the same rows at the longest horizon with a ``category`` key (TraceExtract's object, gripper, contact, grid points;
a category with no scored point has none): where an error comes from, e.g. the held-out robot's own gripper.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mu0sim.io import atomic_write_text
from mu0sim.model import metrics
from mu0sim.model.backbone import InstructionCache
from mu0sim.model.samples import SampleConfig, TraceSamples, load_samples
from mu0sim.model.train import make_batch, split_of
from mu0sim.model.trace_model import TraceModel, load_trace_model
from mu0sim.traces.keypoints import CATEGORIES

HORIZONS = (8, 16, 32)
EVAL_SPLITS = ("seen_robots", "held_out_robot")


@dataclass
class EvalTracesConfig:
    ckpt: str
    data: list[str]
    out: str = "report.json"
    max_anchors: int = 600  # per split, a fixed random subset (the token model decodes step by step)
    num_samples: int = 5
    seed: int = 0
    batch_size: int = 32
    history: bool = True  # False: every model forecasts with no keypoint history (constant velocity: static)


def _to_space(uvz: np.ndarray, intrinsics: np.ndarray, size: int, space: str) -> np.ndarray:
    """(..., H, 3) uvz -> (..., H, 2) pixels or (..., H, 3) camera-frame centimetres. ``intrinsics`` (..., 3, 3)
    broadcastable against the leading axes."""
    px = (uvz[..., :2] + 1.0) / 2.0 * size
    if space == "2d_px":
        return px
    k = intrinsics[..., None, :, :]
    z = uvz[..., 2]
    x = (px[..., 0] - k[..., 0, 2]) / k[..., 0, 0] * z
    y = (px[..., 1] - k[..., 1, 2]) / k[..., 1, 1] * z
    return np.stack([x, y, z], -1) * 100.0


class ConstantVelocity:
    """Extrapolates the mean velocity of the last ``window`` history steps, decaying by ``damping`` per step;
    window and damping are tuned on the training split (same tuning budget as the learned models' training)."""

    kind = "constant_velocity"

    def __init__(self, window: int = 1, damping: float = 1.0) -> None:
        self.window, self.damping = window, damping

    def predict(self, samples: TraceSamples, rows: np.ndarray, horizon: int) -> np.ndarray:
        hist, ok = samples.history[rows], samples.history_valid[rows]
        w = self.window
        velocity = np.where(ok[..., -w:].all(-1, keepdims=True), -hist[:, :, -w] / w, 0.0)
        gain = np.cumsum(self.damping ** np.arange(1, horizon + 1))
        return samples.current[rows][:, :, None] + gain[:, None] * velocity[:, :, None]

    @classmethod
    def tune(cls, samples: TraceSamples, rows: np.ndarray, horizon: int) -> "ConstantVelocity":
        best, best_err = cls(), np.inf
        for window in (1, 2, 4, 8):
            for damping in (1.0, 0.97, 0.93, 0.9, 0.8):
                model = cls(window, damping)
                pred = model.predict(samples, rows, horizon)
                err = _mean_ade_3d(pred, samples, rows)
                if err < best_err:
                    best, best_err = model, err
        return best


class StaticPoint:
    kind = "static"

    def predict(self, samples: TraceSamples, rows: np.ndarray, horizon: int) -> np.ndarray:
        return np.repeat(samples.current[rows][:, :, None], horizon, axis=2)


def _mean_ade_3d(pred: np.ndarray, samples: TraceSamples, rows: np.ndarray) -> float:
    size = samples.image_hw[0]
    intr = samples.intrinsics[rows][:, None]
    p, g = _to_space(pred, intr, size, "3d_cm"), _to_space(samples.future[rows], intr, size, "3d_cm")
    valid = samples.future_valid[rows] & samples.keypoint_mask[rows][..., None]
    sel = valid.any(-1)
    return float(np.nanmean(metrics.ade(p[sel], g[sel], valid[sel])))


def predict_learned(model: TraceModel, samples: TraceSamples, rows: np.ndarray, text: np.ndarray,
                    num_samples: int, seed: int, batch_size: int = 32, greedy: bool = True,
                    noise_scale: float | None = None) -> np.ndarray:
    """(S, N, K, H, 3) uvz for the samples at ``rows`` (keypoint axis padded to the samples' width)."""
    out = np.zeros((num_samples, len(rows), *samples.future.shape[1:]), np.float32)
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, len(rows), batch_size):
        idx = rows[start:start + batch_size]
        batch, _ = make_batch(samples, idx, text, model.normalizer)
        pred = model.predict(batch, num_samples=num_samples, generator=gen, greedy=greedy,
                             noise_scale=noise_scale)["uvz"].numpy()  # (B, S, K', H, 3)
        out[:, start:start + len(idx), :pred.shape[2]] = pred.transpose(1, 0, 2, 3, 4)
    return out


def _mean_row(per_point: dict[str, np.ndarray | None], mask: np.ndarray) -> dict:
    return {"keypoints": int(mask.sum()),
            **{name: None if value is None else float(np.nanmean(value[mask])) for name, value in per_point.items()}}


def score(pred: np.ndarray, samples: TraceSamples, rows: np.ndarray,
          extra: np.ndarray | None = None) -> tuple[list[dict], list[dict]]:
    """Metric rows for one model on one split: ``pred`` (N, K, H, 3) point estimate, ``extra`` (S, N, K, H, 3)
    samples for min_ade_5. Also returns the longest horizon's rows per TraceExtract category: means of the same
    per-point errors over that category's points (a category with none has no row)."""
    size = samples.image_hw[0]
    intr = samples.intrinsics[rows][:, None]
    out, by_category = [], []
    for space in ("2d_px", "3d_cm"):
        p, g = _to_space(pred, intr, size, space), _to_space(samples.future[rows], intr, size, space)
        s = None if extra is None else _to_space(extra, intr[None], size, space)
        for h in HORIZONS:
            valid = samples.future_valid[rows][..., :h] & samples.keypoint_mask[rows][..., None]
            sel = valid.any(-1)
            if not sel.any():
                continue
            pv, gv, vv = p[..., :h, :][sel], g[..., :h, :][sel], valid[sel]
            per_point = {"ade": metrics.ade(pv, gv, vv), "fde": metrics.fde(pv, gv, vv),
                         "dtw": metrics.dtw(pv, gv, vv), "frechet": metrics.frechet(pv, gv, vv),
                         "min_ade_5": None if s is None else metrics.min_ade(s[..., :h, :][:, sel], gv, vv)}
            out.append({"space": space, "horizon": h, **_mean_row(per_point, np.ones(len(pv), bool))})
            if h == HORIZONS[-1]:
                category = samples.category[rows][sel]
                by_category += [{"category": name, "space": space, "horizon": h,
                                 **_mean_row(per_point, category == index)}
                                for index, name in enumerate(CATEGORIES) if (category == index).any()]
    return out, by_category


def eval_traces(config: EvalTracesConfig, progress: bool = True) -> dict:
    """Evaluate; writes ``config.out`` (JSON rows) and the Markdown table beside it; returns the summary."""
    from tqdm import tqdm

    start = time.perf_counter()
    ckpt = Path(config.ckpt)
    mu0, meta = load_trace_model(ckpt)
    learned: dict[str, TraceModel] = {"mu0": mu0}
    baseline_dir = ckpt / "baselines"
    if baseline_dir.is_dir():
        for sub in sorted(baseline_dir.iterdir()):
            learned[sub.name], _ = load_trace_model(sub)
    pre = meta["pretrain"]
    # the robot in its true colours, whatever augmentation the training samples had (samples.robot_colors)
    sample_cfg = SampleConfig(**{**pre["samples"], "camera": mu0.config.camera, "image_size": mu0.config.image_size,
                                 "history": mu0.config.history, "horizon": mu0.config.horizon, "robot_colors": 0.0})
    instructions = InstructionCache.load(ckpt / "instructions.json") if (ckpt / "instructions.json").exists() \
        else InstructionCache()
    samples = load_samples(config.data, sample_cfg, instruction_cache=instructions, progress=progress)
    if not config.history:
        samples = replace(samples, history_valid=np.zeros_like(samples.history_valid))
    text = instructions.embed(samples.instructions)
    split = split_of(samples, pre["holdout_robot"], pre["eval_fraction"], pre["val_fraction"])
    rng = np.random.default_rng(config.seed)
    rows_of = {}
    for name in EVAL_SPLITS:
        rows = np.flatnonzero(split == name)
        if len(rows) > config.max_anchors:
            rows = np.sort(rng.choice(rows, config.max_anchors, replace=False))
        if len(rows):
            rows_of[name] = rows
    if not rows_of:
        raise ValueError(f"no evaluation samples: the data has neither held-out demos of {meta['robots_seen']} nor "
                         f"the held-out robot {pre['holdout_robot']!r}")
    horizon = mu0.config.horizon
    train_rows = np.flatnonzero(split == "train")
    tune_rows = rng.choice(train_rows, min(len(train_rows), 2000), replace=False) if len(train_rows) else None
    heuristics = [StaticPoint(), ConstantVelocity.tune(samples, tune_rows, horizon) if tune_rows is not None
                  else ConstantVelocity()]
    report: list[dict] = []
    by_category: list[dict] = []

    def add(model: str, split: str, rows: np.ndarray, point: np.ndarray, extra: np.ndarray | None = None) -> None:
        rows_all, rows_by_category = score(point, samples, rows, extra)
        report.extend({"model": model, "split": split, **r} for r in rows_all)
        by_category.extend({"model": model, "split": split, **r} for r in rows_by_category)

    todo = [(m, s) for m in [h.kind for h in heuristics] + list(learned) for s in rows_of]
    with tqdm(total=len(todo), desc="eval-traces", disable=not progress, dynamic_ncols=True) as bar:
        for h in heuristics:
            for name, rows in rows_of.items():
                add(h.kind, name, rows, h.predict(samples, rows, horizon))
                bar.update(1)
        for kind, model in learned.items():
            sampled = kind in ("mu0", "token-ar")
            for name, rows in rows_of.items():
                with torch.inference_mode():
                    point = predict_learned(model, samples, rows, text, 1, config.seed, config.batch_size)[0]
                    # minADE_5 over true samples (full noise, sampled tokens), not the point estimate's settings
                    extra = predict_learned(model, samples, rows, text, config.num_samples, config.seed + 1,
                                            config.batch_size, greedy=False, noise_scale=1.0) if sampled else None
                add(kind, name, rows, point, extra)
                bar.update(1)
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = {"ckpt": str(ckpt), "data": [str(d) for d in config.data], "anchors": {k: len(v) for k, v in
                                                                                 rows_of.items()},
            "constant_velocity": {"window": heuristics[1].window, "damping": heuristics[1].damping},
            "held_out_robot": pre["holdout_robot"], "history": config.history,
            "wall_s": round(time.perf_counter() - start, 1)}
    atomic_write_text(out, json.dumps({"rows": report, "by_category": by_category, "info": info}, indent=1))
    atomic_write_text(out.with_suffix(".md"), markdown_table(report, info, by_category))
    return {"out": str(out), **info, **headline(report)}


def headline(report: list[dict]) -> dict:
    """The issue's acceptance numbers: 3D ADE@32 of μ0 vs the best baseline per split, and held-out/seen ratio."""
    out = {}
    for split in EVAL_SPLITS:
        rows = [r for r in report if r["split"] == split and r["space"] == "3d_cm" and r["horizon"] == 32]
        if not rows:
            continue
        mu0 = next(r["ade"] for r in rows if r["model"] == "mu0")
        best = min((r for r in rows if r["model"] != "mu0"), key=lambda r: r["ade"])
        out[f"{split}_mu0_ade32_cm"] = round(mu0, 3)
        out[f"{split}_best_baseline"] = best["model"]
        out[f"{split}_best_baseline_ade32_cm"] = round(best["ade"], 3)
    if "seen_robots_mu0_ade32_cm" in out and "held_out_robot_mu0_ade32_cm" in out:
        out["held_out_over_seen"] = round(out["held_out_robot_mu0_ade32_cm"] / out["seen_robots_mu0_ade32_cm"], 3)
    return out


def markdown_table(report: list[dict], info: dict, by_category: list[dict] = ()) -> str:
    lines = [f"# eval-traces: {info['ckpt']}", "", f"anchors per split: {info['anchors']}; held-out robot: "
             f"{info['held_out_robot']}; constant velocity tuned to {info['constant_velocity']}"
             + ("" if info.get("history", True) else "; every model without keypoint history"), ""]
    for split in EVAL_SPLITS:
        rows = [r for r in report if r["split"] == split]
        if not rows:
            continue
        lines += [f"## {split}", "", "| model | space | H | ADE | FDE | DTW | Fréchet | minADE_5 |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in sorted(rows, key=lambda r: (r["space"], r["horizon"], r["ade"])):
            m5 = "" if r["min_ade_5"] is None else f"{r['min_ade_5']:.2f}"
            lines.append(f"| {r['model']} | {r['space']} | {r['horizon']} | {r['ade']:.2f} | {r['fde']:.2f} | "
                         f"{r['dtw']:.2f} | {r['frechet']:.2f} | {m5} |")
        lines.append("")
    if by_category:
        horizon = max(r["horizon"] for r in by_category)
        lines += [f"## 3D ADE@{horizon} (cm) per TraceExtract category", "",
                  "| model | split | " + " | ".join(CATEGORIES) + " |", "|---|---|" + "---:|" * len(CATEGORIES)]
        cells = {(r["model"], r["split"], r["category"]): r for r in by_category if r["space"] == "3d_cm"}
        for model, split in dict.fromkeys((r["model"], r["split"]) for r in by_category):
            shown = [f"{cells[(model, split, c)]['ade']:.2f} ({cells[(model, split, c)]['keypoints']})"
                     if (model, split, c) in cells else "" for c in CATEGORIES]
            lines.append(f"| {model} | {split} | " + " | ".join(shown) + " |")
        lines += ["", "(in brackets: query points scored)", ""]
    return "\n".join(lines)




