"""Trainable networks over the frozen backbone: one keypoint/context encoder, three trace heads.

``TraceEncoder`` turns a batch of samples into per-keypoint embeddings: each query point's token (Fourier features
of its uv, its depth, its history and the frozen image/depth features sampled bilinearly at it) attends, in a
transformer without positional order among keypoints (permutation-equivariant), to the image tokens, the pooled depth
token and the instruction token. The heads share that encoder so μ0 and the learned baselines differ only where the
method differs:

- :class:`FlowMatchingHead` (μ0): a small denoiser over B-spline control points (flow matching, few-step Euler),
  plus the per-step validity ("done") head.
- :class:`WaypointHead`: direct regression of the H future points (no spline).
- :class:`TokenARHead`: quantized per-step deltas as tokens, decoded autoregressively by a causal transformer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mu0sim.model.backbone import SAMPLE_CHANNELS, TEXT_DIM, TOKEN_CHANNELS


@dataclass
class TraceBatch:
    """Model inputs as tensors (B anchors, K keypoints); coordinates as in :mod:`mu0sim.model.samples`, history
    already divided by the normalizer's scale."""

    rgb_map: torch.Tensor  # (B, 112, h, w)
    depth_map: torch.Tensor  # (B, 112, h, w)
    rgb_tokens: torch.Tensor  # (B, 1280, h', w')
    depth_tokens: torch.Tensor  # (B, 1280)
    text: torch.Tensor  # (B, 384)
    current: torch.Tensor  # (B, K, 3) uvz
    history: torch.Tensor  # (B, K, Hh, 3) normalized deltas
    history_valid: torch.Tensor  # (B, K, Hh) bool
    keypoint_mask: torch.Tensor  # (B, K) bool

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The fields in declaration order (``TraceBatch(*batch.tensors())`` rebuilds it)."""
        return tuple(getattr(self, f.name) for f in fields(self))


def fourier_features(x: torch.Tensor, num_bands: int) -> torch.Tensor:
    """(..., C) in about [-1, 1] -> (..., C * 2 * num_bands) sin/cos at octave frequencies."""
    freqs = (2.0 ** torch.arange(num_bands, device=x.device, dtype=x.dtype)) * math.pi
    angles = x[..., None] * freqs
    return torch.cat([angles.sin(), angles.cos()], -1).flatten(-2)


def sample_at(feature_map: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear features (B, C, h, w) at uv (B, K, 2) in [-1, 1] (image borders) -> (B, K, C)."""
    grid = uv[:, :, None, :].to(feature_map.dtype)
    return F.grid_sample(feature_map, grid, mode="bilinear", align_corners=False)[..., 0].transpose(1, 2)


class RelativeKeypointLayer(nn.Module):
    """Each keypoint gathers the others' embeddings together with their offsets from it (uvz_j - uvz_i, raw and as
    Fourier features), weighted by a learned softmax over j: where the cube is *relative to the gripper* becomes an
    input instead of something the attention must work out from two absolute position codes. Permutation-equivariant;
    padded keypoints are never gathered. Residual: (B, K, d) -> (B, K, d)."""

    DEPTH_SCALE = 4.0  # metres -> about the range of uv offsets ([-2, 2]) before the Fourier features

    def __init__(self, dim: int, fourier_bands: int = 6, hidden: int = 64) -> None:
        super().__init__()
        self.fourier_bands = fourier_bands
        self.key = nn.Linear(dim, hidden)
        self.edge = nn.Sequential(nn.Linear(hidden + 3 + 3 * 2 * fourier_bands, hidden), nn.GELU(),
                                  nn.Linear(hidden, hidden))
        self.score = nn.Linear(hidden, 1)
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, dim))

    def forward(self, h: torch.Tensor, current: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """h (B, K, d) embeddings, current (B, K, 3) uvz (z metres), mask (B, K) bool (True = real point)."""
        offset = current[:, None, :, :] - current[:, :, None, :]  # (B, i, j, 3): j's position seen from i
        offset = offset * offset.new_tensor([1.0, 1.0, self.DEPTH_SCALE])
        k = h.shape[1]
        keys = self.key(h)[:, None].expand(-1, k, -1, -1)
        edge = self.edge(torch.cat([keys, offset, fourier_features(offset / 2.0, self.fourier_bands)], -1))
        score = self.score(edge)[..., 0].masked_fill(~mask[:, None, :], -1e4)
        weights = score.softmax(-1)[..., None]
        return h + self.out((weights * edge).sum(2))


class TraceEncoder(nn.Module):
    """Per-keypoint embeddings (B, K, d) conditioned on the frozen image, depth and instruction features;
    ``relative_layer`` adds a :class:`RelativeKeypointLayer` after the transformer."""

    def __init__(self, dim: int = 128, layers: int = 3, heads: int = 4, history: int = 8, fourier_bands: int = 6,
                 token_grid: int = 16, dropout: float = 0.0, relative_layer: bool = False) -> None:
        super().__init__()
        self.relative = RelativeKeypointLayer(dim, fourier_bands) if relative_layer else None
        self.history = history
        self.fourier_bands = fourier_bands
        point_in = 2 * 2 * fourier_bands + 1 + history * 4 + 2 * SAMPLE_CHANNELS
        self.point = nn.Sequential(nn.Linear(point_in, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.image = nn.Linear(TOKEN_CHANNELS, dim)
        self.image_pos = nn.Parameter(torch.zeros(token_grid, dim))
        self.depth = nn.Linear(TOKEN_CHANNELS, dim)
        self.text = nn.Linear(TEXT_DIM, dim)
        self.type_embed = nn.Parameter(torch.zeros(4, dim))  # image, depth, text, keypoint
        nn.init.normal_(self.image_pos, std=0.02)
        nn.init.normal_(self.type_embed, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=dropout, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, batch: TraceBatch, hide_point_features: torch.Tensor | None = None) -> torch.Tensor:
        """``hide_point_features`` (B, K) bool, training only: zero those keypoints' sampled image and depth
        features, so their tokens must rely on geometry, history and the global tokens."""
        b, k = batch.current.shape[:2]
        uv, z = batch.current[..., :2], batch.current[..., 2:]
        hist = torch.where(batch.history_valid[..., None], batch.history, torch.zeros_like(batch.history))
        features = torch.cat([sample_at(batch.rgb_map.float(), uv), sample_at(batch.depth_map.float(), uv)], -1)
        if hide_point_features is not None:
            features = features * (~hide_point_features)[..., None].to(features.dtype)
        point = torch.cat([fourier_features(uv, self.fourier_bands), z - 1.0, hist.flatten(2),
                           batch.history_valid.float(), features], -1)
        kp_tokens = self.point(point) + self.type_embed[3]
        img = self.image(batch.rgb_tokens.float().flatten(2).transpose(1, 2))
        if img.shape[1] != self.image_pos.shape[0]:
            raise ValueError(f"expected {self.image_pos.shape[0]} image tokens (the trained image size), got "
                             f"{img.shape[1]}")
        img = img + self.image_pos + self.type_embed[0]
        depth = self.depth(batch.depth_tokens.float())[:, None] + self.type_embed[1]
        text = self.text(batch.text.float())[:, None] + self.type_embed[2]
        tokens = torch.cat([img, depth, text, kp_tokens], 1)
        pad = torch.cat([torch.zeros(b, tokens.shape[1] - k, dtype=torch.bool, device=tokens.device),
                         ~batch.keypoint_mask], 1)
        out = self.norm(self.transformer(tokens, src_key_padding_mask=_padding_or_none(pad))[:, -k:])
        if self.relative is not None:
            out = self.relative(out, batch.current, batch.keypoint_mask)
        return out


def _padding_or_none(pad: torch.Tensor) -> torch.Tensor | None:
    """``pad`` if it pads any token, else None: unmasked attention takes torch's fused kernel, ~1 ms (1.05x) less
    per μ0 query at 64 keypoints on one CPU thread (bench/mu0_latency.py), with the same result."""
    return pad if bool(pad.any()) else None


def _timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device, dtype=t.dtype) / half)
    angles = t[..., None] * 1000.0 * freqs
    return torch.cat([angles.sin(), angles.cos()], -1)


FLOW_PREDICTIONS = ("velocity", "sample")


class FlowMatchingHead(nn.Module):
    """Velocity field over (D, 3) control points given the keypoint embeddings; keypoints attend to each other so a
    sampled future is coherent across points of one object. Also the per-step validity logits (H).

    ``prediction`` (one of ``FLOW_PREDICTIONS``, checked by ``TraceModelConfig``): what the network outputs — the
    velocity (v-prediction) or the clean control points (x-prediction, velocity derived from it). Sampling is the
    same Euler integration either way."""

    def __init__(self, dim: int, num_control: int, horizon: int, layers: int = 2, heads: int = 4,
                 prediction: str = "velocity") -> None:
        super().__init__()
        self.num_control = num_control
        self.prediction = prediction
        self.x_in = nn.Linear(num_control * 3, dim)
        self.t_in = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True,
                                           activation="gelu")
        self.denoiser = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_control * 3))
        self.done = nn.Linear(dim, horizon)
        self.dim = dim

    def output(self, cond: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The network's raw output (B, K, D, 3): the velocity, or the clean control points (``prediction``)."""
        temb = self.t_in(_timestep_embedding(t, self.dim))[:, None]
        h = cond + self.x_in(x_t.flatten(2)) + temb
        h = self.denoiser(h, src_key_padding_mask=_padding_or_none(~mask))
        return self.out(h).view(x_t.shape)

    def velocity(self, cond: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """cond (B, K, d), x_t (B, K, D, 3), t (B,) in (0, 1] -> velocity (B, K, D, 3). On the path
        x_t = t * noise + (1 - t) * P the velocity is noise - P = (x_t - P) / t, so a clean-sample prediction
        converts exactly; sampling never evaluates t = 0."""
        out = self.output(cond, x_t, t, mask)
        if self.prediction == "velocity":
            return out
        return (x_t - out) / t[:, None, None, None]

    def validity_logits(self, cond: torch.Tensor) -> torch.Tensor:
        return self.done(cond)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, mask: torch.Tensor, steps: int, generator: torch.Generator | None,
               noise_scale: float = 1.0, integrate: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
        """Draw the initial noise, then :meth:`integrate` it over ``steps``. Returns (B, K, D, 3) normalized
        controls. ``noise_scale`` < 1 starts nearer the noise mean (0 = deterministic, a point estimate).
        ``integrate``: a stand-in for ``integrate(cond, x, mask)`` at these ``steps`` (a frozen inference graph of
        it: one call instead of one per step)."""
        b, k = cond.shape[:2]
        x = torch.randn(b, k, self.num_control, 3, generator=generator, device=cond.device,
                        dtype=cond.dtype) * noise_scale
        return integrate(cond, x, mask) if integrate is not None else self.integrate(cond, x, mask, steps)

    def integrate(self, cond: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, steps: int) -> torch.Tensor:
        """Euler from ``x`` at t = 1 (noise) to t = 0 (data): x <- x - v / steps, ``steps`` times."""
        b = cond.shape[0]
        for i in range(steps):
            t = torch.full((b,), 1.0 - i / steps, device=cond.device, dtype=cond.dtype)
            x = x - self.velocity(cond, x, t, mask) / steps
        return x


class WaypointHead(nn.Module):
    """Direct regression of H future points (normalized deltas) per keypoint, no spline."""

    def __init__(self, dim: int, horizon: int) -> None:
        super().__init__()
        self.horizon = horizon
        self.out = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, horizon * 3))

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return self.out(cond).view(*cond.shape[:2], self.horizon, 3)


class CausalBlock(nn.Module):
    """Pre-norm causal self-attention block that can run one step at a time with a key/value cache."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, cache: list[torch.Tensor] | None = None) -> torch.Tensor:
        """x (M, S, d). With ``cache`` ([] at the first step), x holds the new step(s) only and the cache grows."""
        m, s, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(m, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        causal = cache is None or s > 1
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        x = x + self.proj(attn.transpose(1, 2).reshape(m, s, d))
        return x + self.mlp(self.norm2(x))


class TokenARHead(nn.Module):
    """Per-step deltas (between consecutive future points, normalized) quantized into ``bins`` per axis; a small
    causal transformer decoder over the H steps predicts each step's three axis tokens from the keypoint embedding
    and the earlier tokens (the stand-in for tokenized-VLM trace models)."""

    def __init__(self, dim: int, horizon: int, bins: int = 64, limit: float = 0.25, layers: int = 2,
                 heads: int = 4) -> None:
        super().__init__()
        self.horizon, self.bins, self.limit = horizon, bins, limit
        self.token_embed = nn.ModuleList(nn.Embedding(bins, dim) for _ in range(3))
        self.step_pos = nn.Parameter(torch.zeros(horizon, dim))
        nn.init.normal_(self.step_pos, std=0.02)
        self.blocks = nn.ModuleList(CausalBlock(dim, heads) for _ in range(layers))
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 3 * bins))

    def quantize(self, step_delta: torch.Tensor) -> torch.Tensor:
        """(..., 3) normalized per-step deltas -> (..., 3) bin indices (uniform bins over [-limit, limit])."""
        scaled = (step_delta.clamp(-self.limit, self.limit) + self.limit) / (2 * self.limit)
        return (scaled * (self.bins - 1)).round().long()

    def dequantize(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.float() / (self.bins - 1) * (2 * self.limit) - self.limit

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return sum(self.token_embed[a](tokens[..., a]) for a in range(3))

    def logits(self, cond: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: cond (M, d), tokens (M, H, 3) -> logits (M, H, 3, bins) for every step."""
        m = cond.shape[0]
        inputs = torch.cat([torch.zeros(m, 1, cond.shape[-1], device=cond.device), self._embed(tokens[:, :-1])], 1)
        h = inputs + self.step_pos + cond[:, None]
        for block in self.blocks:
            h = block(h)
        return self.out(h).view(m, self.horizon, 3, self.bins)

    @torch.no_grad()
    def generate(self, cond: torch.Tensor, generator: torch.Generator | None, greedy: bool) -> torch.Tensor:
        """cond (M, d) -> (M, H, 3) tokens, one step at a time with cached keys/values."""
        m = cond.shape[0]
        caches: list[list[torch.Tensor]] = [[] for _ in self.blocks]
        tokens = torch.zeros(m, self.horizon, 3, dtype=torch.long, device=cond.device)
        step_in = torch.zeros(m, 1, cond.shape[-1], device=cond.device)
        for s in range(self.horizon):
            h = step_in + self.step_pos[s] + cond[:, None]
            for block, cache in zip(self.blocks, caches):
                h = block(h, cache)
            logits = self.out(h[:, 0]).view(m, 3, self.bins)
            if greedy:
                tokens[:, s] = logits.argmax(-1)
            else:
                tokens[:, s] = torch.multinomial(logits.softmax(-1).flatten(0, 1), 1, generator=generator).view(m, 3)
            step_in = self._embed(tokens[:, s:s + 1])
        return tokens
