"""Frozen inference graphs: a module's forward traced once per input shape, then run without Python in the loop.

At μ0's sizes (128 px images, ~80 tokens of width 128, one CPU thread) a query spends a large share of its time in
Python: ~100 module calls in the backbone and the checks that ``nn.TransformerEncoderLayer`` runs on every call. A
TorchScript trace frozen with ``torch.jit.freeze`` replays the same aten kernels in the same order, so its outputs
are bit-identical (tests/test_mu0_model.py) and only the interpreter overhead goes (bench/mu0_latency.py).

Why TorchScript, deprecated in favour of ``torch.compile``: on this machine ``torch.compile`` spent 77 s compiling
the backbone in a new process (each evaluation worker would pay it), while tracing backbone and expert costs ~0.7 s
on the first query. ``torch.export`` keeps Python in the loop: 1.07x on the backbone vs 1.28x for the trace (one
probe script, run while another job shared the machine). Only ever use a graph for a module whose weights no longer change: the weights
are baked into it as constants.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

Signature = tuple[tuple[tuple[int, ...], torch.dtype], ...]


class _Forward(nn.Module):
    """``forward(module, *tensors)`` as a module's forward, so that tracing sees ``module``'s weights."""

    def __init__(self, module: nn.Module, forward: Callable[..., object]) -> None:
        super().__init__()
        self.module = module
        self._forward = forward

    def forward(self, *tensors: torch.Tensor) -> object:
        return self._forward(self.module, *tensors)


class InferenceGraphs:
    """``forward(module, *tensors)`` run through a frozen TorchScript trace, one per input signature (shapes and
    dtypes), the ``max_graphs`` most recent kept.

    ``forward`` must be a pure function of its tensors for a given signature: any data-dependent Python branch is
    baked into the trace, so callers route inputs that would take another branch (e.g. padded query points) to
    the eager path themselves.
    """

    def __init__(self, module: nn.Module, forward: Callable[..., object], max_graphs: int = 8) -> None:
        self._traceable = _Forward(module, forward).eval()
        self._graphs: OrderedDict[Signature, torch.jit.ScriptModule] = OrderedDict()
        self.max_graphs = max_graphs

    def __call__(self, *tensors: torch.Tensor) -> object:
        key = tuple((tuple(t.shape), t.dtype) for t in tensors)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._trace(tensors)
            self._graphs[key] = graph
            if len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
        with torch.no_grad():
            return graph(*tensors)

    def __len__(self) -> int:
        return len(self._graphs)

    @torch.no_grad()
    def _trace(self, tensors: tuple[torch.Tensor, ...]) -> torch.jit.ScriptModule:
        with warnings.catch_warnings():
            # expected: the deprecation notice (see the module docstring) and the tracer's note that Python
            # branches become constants (the documented contract of ``forward`` above)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return torch.jit.freeze(torch.jit.trace(self._traceable, tensors, check_trace=False))


__all__ = ["InferenceGraphs"]
