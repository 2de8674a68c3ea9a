"""Frozen μ0 for users: ``Mu0.from_pretrained(path).predict_traces(...)``.

Inputs are what a robot sees: an RGB image, a depth image (metres), the instruction and the pixels of the query
points (optionally their recent history). Outputs are each point's next H positions in that camera, as uvz and as
pixels + depth, with the B-spline control points they come from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mu0sim.camera import CameraParams, unproject_points
from mu0sim.model.backbone import FrozenVisionEncoder, ImageFeatures, InstructionCache
from mu0sim.model.inference_graph import check_runtime
from mu0sim.model.networks import TraceBatch
from mu0sim.model.trace_model import TraceModel, load_trace_model


@dataclass
class TracePrediction:
    """Predicted futures; B images, S samples, K query points, H steps, D control points.

    ``uvz``: (B, S, K, H, 3) u, v in [-1, 1] and z metres; ``uv_px`` (B, S, K, H, 2); ``depth_m`` (B, S, K, H);
    ``control_points``: (B, S, K, D, 3) uvz; ``valid_prob``: (B, K, H) probability that step h is still inside the
    episode (the "done" head).
    """

    uvz: np.ndarray
    uv_px: np.ndarray
    depth_m: np.ndarray
    control_points: np.ndarray
    valid_prob: np.ndarray
    image_feature: np.ndarray  # (B, 1280) the frozen backbone's pooled RGB feature (a compact image summary)
    # (B, K, dim) the trace expert's per-keypoint tokens (after attending to the image and the instruction): what
    # its head decodes the traces from, and what the paper's action experts read from μ0 instead of the traces
    point_tokens: np.ndarray

    def world(self, params: CameraParams) -> np.ndarray:
        """(B, S, K, H, 3) world positions (metres) through the camera that took the images."""
        return unproject_points(self.uv_px, self.depth_m, params)


class Mu0:
    """Frozen μ0: backbone + trace expert, eval mode, no gradients."""

    def __init__(self, model: TraceModel, encoder: FrozenVisionEncoder, instructions: InstructionCache,
                 meta: dict, runtime: str = "torchscript") -> None:
        """``runtime``: how the trace expert runs (one of ``RUNTIMES``, :mod:`mu0sim.model.inference_graph`);
        the encoder's own ``runtime`` does the same for the backbone."""
        if model.config.kind != "mu0":
            raise ValueError(f"checkpoint holds a {model.config.kind!r} model, not μ0")
        self.model = model.freeze(runtime)
        self.encoder = encoder.eval().requires_grad_(False)
        self.instructions = instructions
        self.meta = meta
        self.config = model.config

    @classmethod
    def from_pretrained(cls, path: str | Path, encoder: FrozenVisionEncoder | None = None,
                        runtime: str = "torchscript") -> "Mu0":
        """Load a checkpoint folder. ``runtime`` (one of ``RUNTIMES``) runs backbone and expert: ``"eager"`` as
        plain torch modules; ``"torchscript"`` as frozen per-shape graphs, outputs identical to eager, less
        Python overhead; ``"onnxruntime"`` as ONNX Runtime sessions, 1.4-1.5x faster per query than TorchScript
        on one CPU thread (bench/mu0_latency.py), outputs within ~1e-6 relative, not bit for bit, so a
        closed-loop episode may end differently from the other two's."""
        check_runtime(runtime)
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"μ0 checkpoint folder {path} not found")
        model, meta = load_trace_model(path)
        instructions_file = path / "instructions.json"
        instructions = InstructionCache.load(instructions_file) if instructions_file.exists() else InstructionCache()
        return cls(model, encoder or FrozenVisionEncoder(runtime), instructions, meta, runtime)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def encode_images(self, rgb: np.ndarray, depth_m: np.ndarray) -> tuple[ImageFeatures, ImageFeatures]:
        """Frozen features of (B, H, W, 3) uint8 RGB and (B, H, W[, 1]) depth; checks the trained image size."""
        rgb, depth_m = np.asarray(rgb), np.asarray(depth_m)
        if depth_m.ndim == 4:
            depth_m = depth_m[..., 0]
        size = self.image_size
        if rgb.ndim != 4 or rgb.shape[1:] != (size, size, 3):
            raise ValueError(f"rgb must be (B, {size}, {size}, 3) uint8 (this μ0 was trained at {size} px), got "
                             f"{rgb.shape}")
        if depth_m.shape != rgb.shape[:3]:
            raise ValueError(f"depth must be (B, {size}, {size}) metres matching rgb, got {depth_m.shape}")
        return self.encoder.encode_pair(rgb, depth_m)

    @torch.no_grad()
    def predict_traces(self, rgb: np.ndarray, depth_m: np.ndarray, query_uv_px: np.ndarray,
                       instruction: str | list[str], history_uvz: np.ndarray | None = None,
                       history_valid: np.ndarray | None = None, num_samples: int = 1, seed: int = 0,
                       query_mask: np.ndarray | None = None,
                       query_depth_m: np.ndarray | None = None) -> TracePrediction:
        """Batched, deterministic for a given ``seed``.

        Args:
            rgb: (B, H, W, 3) uint8; depth_m: (B, H, W) metres (the same camera).
            query_uv_px: (B, K, 2) pixel coordinates of the query points (pixel (r, c) has centre (c+.5, r+.5)).
            instruction: one text, or one per image.
            history_uvz: optional (B, K, Hh, 3) past uvz of each point, oldest first; ``history_valid`` (B, K, Hh).
            query_mask: optional (B, K) bool, False for padding points.
            query_depth_m: optional (B, K) metres; where finite, a point's depth instead of the depth image's at its
                pixel (a point known from elsewhere, e.g. the gripper from proprioception, may not be the surface
                seen there).
        """
        rgb_f, depth_f = self.encode_images(rgb, depth_m)
        depth_m = np.asarray(depth_m, np.float32)
        depth_m = depth_m[..., 0] if depth_m.ndim == 4 else depth_m
        query = np.asarray(query_uv_px, np.float32)
        b, size = len(depth_m), self.image_size
        if query.ndim != 3 or query.shape[0] != b or query.shape[2] != 2:
            raise ValueError(f"query_uv_px must be (B={b}, K, 2) pixels, got {query.shape}")
        k = query.shape[1]
        cols = np.clip(query[..., 0].astype(int), 0, size - 1)
        rows = np.clip(query[..., 1].astype(int), 0, size - 1)
        z = depth_m[np.arange(b)[:, None], rows, cols]
        if query_depth_m is not None:
            query_depth_m = np.asarray(query_depth_m, np.float32)
            if query_depth_m.shape != (b, k):
                raise ValueError(f"query_depth_m must be (B={b}, K={k}) metres, got {query_depth_m.shape}")
            z = np.where(np.isfinite(query_depth_m), query_depth_m, z)
        current = np.concatenate([query / size * 2.0 - 1.0, z[..., None]], -1).astype(np.float32)
        hh = self.config.history
        if history_uvz is None:
            hist, hist_valid = np.zeros((b, k, hh, 3), np.float32), np.zeros((b, k, hh), bool)
        else:
            history_uvz = np.asarray(history_uvz, np.float32)
            if history_uvz.shape != (b, k, hh, 3):
                raise ValueError(f"history_uvz must be (B={b}, K={k}, {hh}, 3), got {history_uvz.shape}")
            hist = (history_uvz - current[:, :, None]) / self.model.normalizer.scale
            hist_valid = np.ones((b, k, hh), bool) if history_valid is None else np.asarray(history_valid, bool)
        texts = [instruction] * b if isinstance(instruction, str) else list(instruction)
        if len(texts) != b:
            raise ValueError(f"got {len(texts)} instructions for {b} images")
        mask = np.ones((b, k), bool) if query_mask is None else np.asarray(query_mask, bool)
        batch = TraceBatch(rgb_map=rgb_f.sample_map, depth_map=depth_f.sample_map, rgb_tokens=rgb_f.tokens,
                           depth_tokens=depth_f.tokens.mean((-2, -1)),
                           text=torch.as_tensor(self.instructions.embed(texts)),
                           current=torch.as_tensor(current), history=torch.as_tensor(hist, dtype=torch.float32),
                           history_valid=torch.as_tensor(hist_valid), keypoint_mask=torch.as_tensor(mask))
        gen = torch.Generator().manual_seed(seed)
        out = self.model.predict(batch, num_samples=num_samples, generator=gen)
        uvz = out["uvz"].numpy()
        return TracePrediction(uvz=uvz, uv_px=(uvz[..., :2] + 1.0) / 2.0 * size, depth_m=uvz[..., 2],
                               control_points=out["controls"].numpy(), valid_prob=out["valid_prob"].numpy(),
                               image_feature=rgb_f.tokens.mean((-2, -1)).float().numpy(),
                               point_tokens=out["tokens"].numpy())

    def describe(self) -> str:
        training = self.meta.get("training", {})
        return json.dumps({"robots_seen": self.meta.get("robots_seen"), "tasks": self.meta.get("tasks"),
                           "steps": training.get("steps"), "num_control": self.config.num_control})
