"""Trace models over the shared encoder: μ0 (flow matching on B-spline control points) and the learned baselines.

All of them predict, for every query point, its next H positions in the anchor camera as uvz (u, v in [-1, 1],
z metres). Targets are anchor-relative deltas divided by the per-axis scale of :class:`TraceNormalizer`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mu0sim.bspline import SUPPORTED_NUM_CONTROL, basis_matrix, fit_bspline
from mu0sim.config import from_dict
from mu0sim.model.inference_graph import InferenceGraphs, check_runtime, inference_graphs
from mu0sim.model.networks import (FLOW_PREDICTIONS, FlowMatchingHead, TokenARHead, TraceBatch, TraceEncoder,
                                   WaypointHead)
from mu0sim.traces.keypoints import CATEGORIES

MODEL_KINDS = ("mu0", "waypoint", "token-ar")


@dataclass
class TraceModelConfig:
    """Architecture and loss settings (saved as ``config.json`` beside the weights)."""

    kind: str = "mu0"
    num_control: int = 10  # D, μ0 only
    horizon: int = 32
    history: int = 8
    dim: int = 128
    encoder_layers: int = 3
    head_layers: int = 2
    heads: int = 4
    flow_steps: int = 4  # Euler steps at inference (μ0)
    flow_prediction: str = "velocity"  # μ0's network output: "velocity" or "sample" (clean control points)
    point_noise_scale: float = 1.0  # μ0's initial-noise scale for point predictions; pretrain picks it on validation
    done_weight: float = 0.5  # per-step validity head (μ0)
    rigidity_weight: float = 0.0  # rigidity of same-body keypoints across control points (μ0; paper: 5)
    history_dropout: float = 0.0  # probability of hiding a sample's whole history during training
    # probability of hiding a keypoint's sampled image/depth features during training (an unseen robot's gripper
    # looks unlike the training robots'; its geometry and history do not)
    point_feature_dropout: float = 0.0
    point_feature_dropout_categories: tuple[str, ...] = CATEGORIES  # TraceExtract categories it applies to
    # loss weight per TraceExtract category (others 1), e.g. {"gripper": 4}: the gripper's points are ~12% of the
    # keypoints but what a policy follows; the loss stays a weighted mean, so its scale does not change
    category_loss_weights: dict[str, float] = field(default_factory=dict)
    # a RelativeKeypointLayer after the encoder: every keypoint reads the others' offsets from it (all model kinds)
    relative_layer: bool = False
    token_bins: int = 64  # token-ar
    token_sequences_per_step: int = 256  # token-ar: keypoint sequences per training step (its decoder runs over all
    # H steps of each, ~30x the head cost of μ0 per keypoint; a random subset keeps a step's cost comparable)
    image_size: int = 128
    camera: str = "agentview"

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; valid kinds: {', '.join(MODEL_KINDS)}")
        if self.num_control not in SUPPORTED_NUM_CONTROL:
            raise ValueError(f"num_control must be one of {SUPPORTED_NUM_CONTROL}, got {self.num_control}")
        if self.flow_prediction not in FLOW_PREDICTIONS:
            raise ValueError(f"unknown flow_prediction {self.flow_prediction!r}; valid: {', '.join(FLOW_PREDICTIONS)}")
        bad = [c for c in self.point_feature_dropout_categories if c not in CATEGORIES]
        if bad:
            raise ValueError(f"unknown point_feature_dropout_categories {bad}; valid: {', '.join(CATEGORIES)}")
        bad = {c: w for c, w in self.category_loss_weights.items()
               if c not in CATEGORIES or not isinstance(w, (int, float)) or w <= 0}
        if bad:
            raise ValueError(f"category_loss_weights {bad}: categories must be among {', '.join(CATEGORIES)}, "
                             "weights > 0")
        for name in ("history_dropout", "point_feature_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, data: dict) -> "TraceModelConfig":
        return from_dict(cls, data, "config")


@dataclass
class TraceNormalizer:
    """Per-axis scale of anchor-relative uvz deltas (95th percentile of |delta| over the training futures) and the
    range of per-step deltas the token model quantizes (in scaled units)."""

    scale: np.ndarray  # (3,)
    step_limit: float

    @classmethod
    def fit(cls, current: np.ndarray, future: np.ndarray, future_valid: np.ndarray) -> "TraceNormalizer":
        delta = future - current[..., None, :]
        scale = np.maximum(np.percentile(np.abs(delta[future_valid]), 95.0, axis=0), 1e-4)
        steps = np.diff(np.concatenate([current[..., None, :], future], -2), axis=-2) / scale
        limit = float(np.percentile(np.abs(steps[future_valid]), 99.5))
        return cls(scale=scale.astype(np.float32), step_limit=max(limit, 1e-3))

    def to_dict(self) -> dict:
        return {"scale": [float(x) for x in self.scale], "step_limit": self.step_limit}

    @classmethod
    def from_dict(cls, data: dict) -> "TraceNormalizer":
        return cls(scale=np.asarray(data["scale"], np.float32), step_limit=float(data["step_limit"]))


class TraceModel(nn.Module):
    """Encoder + the head of ``config.kind``. ``loss`` for training, ``predict`` for (B, S, K, H, 3) uvz futures."""

    def __init__(self, config: TraceModelConfig, normalizer: TraceNormalizer) -> None:
        super().__init__()
        self.config = config
        self.normalizer = normalizer
        grid = (config.image_size // 32) ** 2
        self.encoder = TraceEncoder(config.dim, config.encoder_layers, config.heads, config.history,
                                    token_grid=grid, relative_layer=config.relative_layer)
        if config.kind == "mu0":
            self.head = FlowMatchingHead(config.dim, config.num_control, config.horizon, config.head_layers,
                                         config.heads, config.flow_prediction)
            self.register_buffer("basis", torch.tensor(basis_matrix(config.num_control, config.horizon),
                                                          dtype=torch.float32), persistent=False)
        elif config.kind == "waypoint":
            self.head = WaypointHead(config.dim, config.horizon)
        else:
            self.head = TokenARHead(config.dim, config.horizon, config.token_bins, normalizer.step_limit,
                                    config.head_layers, config.heads)
        self.register_buffer("scale", torch.as_tensor(normalizer.scale, dtype=torch.float32), persistent=False)
        self._graphs: tuple[InferenceGraphs, InferenceGraphs] | None = None  # (encoder, integration) once frozen

    def freeze(self, runtime: str = "torchscript") -> "TraceModel":
        """For inference only from here on (frozen μ0): eval mode, no gradients, and unless ``runtime`` is
        ``"eager"``, μ0's queries without padded keypoints run the encoder and the flow's Euler integration as frozen
        inference graphs in that runtime (:mod:`mu0sim.model.inference_graph`: ``"torchscript"`` gives identical
        outputs, ``"onnxruntime"`` agrees to ~1e-6 relative and runs faster). A model frozen with graphs refuses to
        train: the graphs hold its weights."""
        self.eval().requires_grad_(False)
        check_runtime(runtime)
        if self.config.kind == "mu0" and self._graphs is None:
            steps = self.config.flow_steps  # baked into the integration graph: all steps in one call
            encoder = inference_graphs(self.encoder, lambda encoder, *tensors: encoder(TraceBatch(*tensors)), runtime)
            integrate = inference_graphs(self.head, lambda head, cond, x, mask: head.integrate(cond, x, mask, steps),
                                         runtime)
            self._graphs = None if encoder is None else (encoder, integrate)
        return self

    def train(self, mode: bool = True) -> "TraceModel":
        if mode and self._graphs is not None:
            raise RuntimeError("this trace model was frozen for inference (TraceModel.freeze); load the checkpoint "
                               "again to train it")
        return super().train(mode)

    # ------------------------------------------------------------------------------------------------ training
    def loss(self, batch: TraceBatch, future: torch.Tensor, future_valid: torch.Tensor,
             controls: torch.Tensor | None = None, fit_valid: torch.Tensor | None = None,
             body: torch.Tensor | None = None, category: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """future (B, K, H, 3) uvz, future_valid (B, K, H); μ0 also takes the fitted normalized ``controls``
        (B, K, D, 3) with ``fit_valid`` (B, K) and, for the rigidity term, ``body`` (B, K); ``category`` (B, K)
        TraceExtract category indices, for ``point_feature_dropout_categories``."""
        cfg = self.config
        if cfg.history_dropout > 0:
            keep = torch.rand(batch.current.shape[0], 1, 1, device=future.device) >= cfg.history_dropout
            batch = TraceBatch(**{**batch.__dict__, "history_valid": batch.history_valid & keep})
        cond = self.encoder(batch, self.hidden_points(batch.current.shape[:2], category))
        mask = batch.keypoint_mask
        point_w = self.point_loss_weights(mask, category)
        delta = (future - batch.current[:, :, None]) / self.scale
        if cfg.kind == "waypoint":
            err = ((self.head(cond) - delta) ** 2).sum(-1)
            w = (future_valid & mask[..., None]).float() * point_w[..., None]
            total = (err * w).sum() / w.sum().clamp(min=1)
            return {"loss": total, "regression": total.detach()}
        if cfg.kind == "token-ar":
            steps = torch.diff(torch.cat([torch.zeros_like(delta[:, :, :1]), delta], 2), dim=2)
            tokens = self.head.quantize(steps)
            sel = mask.flatten()
            chosen = torch.nonzero(sel).flatten()
            if len(chosen) > cfg.token_sequences_per_step:
                chosen = chosen[torch.randperm(len(chosen), device=chosen.device)[:cfg.token_sequences_per_step]]
                sel = torch.zeros_like(sel).index_fill_(0, chosen, True)
            logits = self.head.logits(cond.flatten(0, 1)[sel], tokens.flatten(0, 1)[sel])
            ce = F.cross_entropy(logits.flatten(0, 2), tokens.flatten(0, 1)[sel].flatten(), reduction="none")
            w = (future_valid.float() * point_w[..., None]).flatten(0, 1)[sel][..., None].expand(-1, -1, 3).flatten()
            total = (ce * w).sum() / w.sum().clamp(min=1)
            return {"loss": total, "token_ce": total.detach()}
        # μ0: flow matching in control-point space, x_t = t * noise + (1 - t) * P, target velocity noise - P
        # (or P itself under x-prediction: the same path, the loss on the clean estimate instead)
        b = controls.shape[0]
        t = torch.distributions.Beta(1.5, 1.0).sample((b,)).to(controls.device)
        noise = torch.randn_like(controls)
        t4 = t[:, None, None, None]
        x_t = t4 * noise + (1 - t4) * controls
        raw = self.head.output(cond, x_t, t, mask)
        if cfg.flow_prediction == "velocity":
            err, clean = raw - (noise - controls), x_t - t4 * raw
        else:
            err, clean = raw - controls, raw
        w = (fit_valid & mask).float() * point_w
        fm = ((err ** 2).sum((-1, -2)) * w).sum() / w.sum().clamp(min=1)
        done_w = mask[..., None].expand_as(future_valid).float()
        done = (F.binary_cross_entropy_with_logits(self.head.validity_logits(cond), future_valid.float(),
                                                   reduction="none") * done_w).sum() / done_w.sum().clamp(min=1)
        total = fm + cfg.done_weight * done
        out = {"flow_matching": fm.detach(), "validity_bce": done.detach()}
        if cfg.rigidity_weight > 0 and body is not None:
            rig = self._rigidity(clean, batch.current, body, w.bool())  # on the model's estimate of P at this t
            total = total + cfg.rigidity_weight * rig
            out["rigidity"] = rig.detach()
        out["loss"] = total
        return out

    def point_loss_weights(self, mask: torch.Tensor, category: torch.Tensor | None) -> torch.Tensor:
        """(B, K) float: each keypoint's weight in the trace loss (``category_loss_weights``; 1 without)."""
        weights = torch.ones(mask.shape, device=mask.device)
        if not self.config.category_loss_weights:
            return weights
        if category is None:
            raise ValueError("category_loss_weights needs each keypoint's TraceExtract category in the loss")
        for name, value in self.config.category_loss_weights.items():
            weights = torch.where(category.long() == CATEGORIES.index(name), float(value), weights)
        return weights

    def hidden_points(self, shape: torch.Size, category: torch.Tensor | None) -> torch.Tensor | None:
        """(B, K) bool: the keypoints whose sampled features ``point_feature_dropout`` hides in this training step
        (each with its probability, among ``point_feature_dropout_categories``); None when it is off."""
        cfg = self.config
        if cfg.point_feature_dropout <= 0:
            return None
        hide = torch.rand(shape, device=self.scale.device) < cfg.point_feature_dropout
        if category is not None:
            allowed = torch.tensor([CATEGORIES.index(c) for c in cfg.point_feature_dropout_categories],
                                   device=category.device)
            hide &= torch.isin(category.long(), allowed)
        return hide

    def _rigidity(self, controls: torch.Tensor, current: torch.Tensor, body: torch.Tensor,
                  use: torch.Tensor) -> torch.Tensor:
        """Variance over control points of pairwise distances between keypoints on the same body."""
        pts = controls * self.scale + current[:, :, None]  # (B, K, D, 3) absolute uvz
        dist = torch.linalg.norm(pts[:, :, None] - pts[:, None], dim=-1)  # (B, K, K, D)
        same = (body[:, :, None] == body[:, None]) & use[:, :, None] & use[:, None]
        same = same & ~torch.eye(body.shape[1], dtype=torch.bool, device=body.device)
        var = dist.var(-1)
        return (var * same).sum() / same.sum().clamp(min=1)

    # ---------------------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def predict(self, batch: TraceBatch, num_samples: int = 1, generator: torch.Generator | None = None,
                greedy: bool = True, noise_scale: float | None = None) -> dict[str, torch.Tensor]:
        """Futures ``uvz`` (B, S, K, H, 3) and ``tokens`` (B, K, dim), the encoder's per-keypoint tokens the head
        decodes them from; μ0 adds ``controls`` (B, S, K, D, 3) absolute uvz and ``valid_prob`` (B, K, H).
        ``greedy`` (token model, sample 0 only): argmax decoding for the point estimate. ``noise_scale`` (μ0):
        initial noise scale of the flow; None = the config's ``point_noise_scale`` (chosen on validation)."""
        scale = self.config.point_noise_scale if noise_scale is None else noise_scale
        # the graphs trace the unpadded attention path; a padded query takes the eager one
        graphs = self._graphs if self._graphs is not None and bool(batch.keypoint_mask.all()) else None
        cond = graphs[0](*batch.tensors()) if graphs else self.encoder(batch)
        b, k = cond.shape[:2]
        cur = batch.current[:, None, :, None]
        if self.config.kind == "waypoint":
            delta = self.head(cond)[:, None].expand(b, num_samples, k, -1, -1)
            return {"uvz": delta * self.scale + cur, "tokens": cond}
        if self.config.kind == "token-ar":
            flat = cond.flatten(0, 1)
            outs = [self.head.generate(flat, generator, greedy=greedy and s == 0) for s in range(num_samples)]
            steps = torch.stack([self.head.dequantize(o) for o in outs], 1)  # (B*K, S, H, 3)
            delta = steps.cumsum(-2).view(b, k, num_samples, -1, 3).transpose(1, 2)
            return {"uvz": delta * self.scale + cur, "tokens": cond}
        controls = torch.stack([self.head.sample(cond, batch.keypoint_mask, self.config.flow_steps, generator,
                                                 scale, integrate=graphs[1] if graphs else None)
                                for _ in range(num_samples)], 1)  # (B, S, K, D, 3) normalized
        delta = torch.einsum("hd,bskdc->bskhc", self.basis, controls)
        return {"uvz": delta * self.scale + cur, "controls": controls * self.scale + cur,
                "valid_prob": torch.sigmoid(self.head.validity_logits(cond)), "tokens": cond}


def fit_controls(current: np.ndarray, future: np.ndarray, future_valid: np.ndarray, normalizer: TraceNormalizer,
                 num_control: int) -> tuple[np.ndarray, np.ndarray]:
    """μ0's targets: B-spline control points of the normalized anchor-relative future, and whether the fit is
    usable (>= D valid steps)."""
    delta = (future - current[..., None, :]) / normalizer.scale
    controls, ok = fit_bspline(delta, future_valid, num_control)
    return controls.astype(np.float32), ok


def save_trace_model(model: TraceModel, directory: Path, extra: dict | None = None) -> None:
    """config.json (+ ``extra``), model.safetensors, normalizer.json."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))
    (directory / "normalizer.json").write_text(json.dumps(model.normalizer.to_dict(), indent=1))
    (directory / "config.json").write_text(json.dumps({"model": asdict(model.config), **(extra or {})}, indent=1))


def load_trace_model(directory: str | Path) -> tuple[TraceModel, dict]:
    """Rebuild a trace model from :func:`save_trace_model`'s files; clear errors for missing or mismatched ones."""
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in ("config.json", "model.safetensors", "normalizer.json"):
        if not (directory / name).exists():
            raise FileNotFoundError(f"{directory / name} not found: {directory} is not a mu0sim trace-model "
                                    "checkpoint (expected config.json, model.safetensors, normalizer.json)")
    meta = json.loads((directory / "config.json").read_text())
    config = TraceModelConfig.from_dict(meta["model"])
    model = TraceModel(config, TraceNormalizer.from_dict(json.loads((directory / "normalizer.json").read_text())))
    state = load_file(str(directory / "model.safetensors"))
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(f"{directory}: weights do not match config.json (kind={config.kind}, dim={config.dim}): "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}")
    model.load_state_dict(state)
    return model.eval(), meta
