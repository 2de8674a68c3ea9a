"""Frozen inference graphs: a module's forward traced once per input shape, then run without Python in the loop.

At μ0's sizes (128 px images, ~80 tokens of width 128, one CPU thread) a query spends a large share of its time in
Python and in framework overhead. Two runtimes replay a frozen module's forward as a graph; with ``"eager"`` the
caller runs the module itself (``RUNTIMES``, chosen by name, e.g. ``Mu0.from_pretrained(path, runtime=...)``):

- ``"torchscript"`` (the default): a TorchScript trace frozen with ``torch.jit.freeze`` replays the same aten
  kernels in the same order, so its outputs are bit-identical to the eager module's (tests/test_mu0_model.py).
  Every committed result was produced this way or eagerly, so reruns reproduce them episode for episode.
- ``"onnxruntime"``: the same trace exported to ONNX (in memory) and run by ONNX Runtime, whose CPU kernels run
  μ0's backbone 1.8-1.9x faster than oneDNN's on one thread (bench/mu0_latency.py). Its float rounding differs: outputs
  agree with the eager module's to ~1e-6 relative, not bit for bit, so a closed-loop episode (chaotic contact
  dynamics) may end differently from the TorchScript run of the same seed.

Why TorchScript, deprecated in favour of ``torch.compile``: on this machine ``torch.compile`` spent 77 s compiling
the backbone in a new process (each evaluation worker would pay it), while tracing backbone and expert costs ~0.7 s
on the first query (ONNX export + sessions: ~0.75 s more). ``torch.export`` keeps Python in the loop: 1.07x on the
backbone vs 1.28x for the trace (one probe script, run while another job shared the machine). Only ever use a graph
for a module whose weights no longer change: the weights are baked into it as constants.
"""

from __future__ import annotations

import io
import warnings
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

Signature = tuple[tuple[tuple[int, ...], torch.dtype], ...]
RUNTIMES = ("eager", "torchscript", "onnxruntime")
ONNX_OPSET = 17  # GridSample (opset 16) and LayerNormalization (opset 17) as single nodes


def check_runtime(runtime: str) -> str:
    """``runtime`` if it names an inference-graph runtime, else a ValueError that lists the valid ones."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown inference runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    return runtime


def inference_graphs(module: nn.Module, forward: Callable[..., object],
                     runtime: str) -> "InferenceGraphs | None":
    """Graphs of ``forward(module, *tensors)`` in ``runtime``; None for ``"eager"`` (the caller runs it itself)."""
    return None if check_runtime(runtime) == "eager" else InferenceGraphs(module, forward, runtime=runtime)


class _Forward(nn.Module):
    """``forward(module, *tensors)`` as a module's forward, so that tracing sees ``module``'s weights."""

    def __init__(self, module: nn.Module, forward: Callable[..., object]) -> None:
        super().__init__()
        self.module = module
        self._forward = forward

    def forward(self, *tensors: torch.Tensor) -> object:
        return self._forward(self.module, *tensors)


class _OnnxRuntimeGraph:
    """One ONNX Runtime session for one input signature, called like the TorchScript graph it stands in for:
    tensors in, a tensor (one output) or a tuple of tensors out."""

    def __init__(self, traceable: nn.Module, tensors: tuple[torch.Tensor, ...]) -> None:
        import onnxruntime

        names = [f"input_{i}" for i in range(len(tensors))]
        model = io.BytesIO()
        fastpath = torch.backends.mha.get_fastpath_enabled()
        # nn.TransformerEncoderLayer's fused inference kernel has no ONNX form; its unfused path computes the same
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            with warnings.catch_warnings():
                # expected: the tracer's notes (as for TorchScript below), the legacy exporter's deprecation notice
                # (the torch.export-based one would add onnxscript as a dependency) and its notes on slices it
                # leaves unfolded
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.filterwarnings("ignore", "Constant folding", UserWarning)
                torch.onnx.export(traceable, tensors, model, input_names=names, opset_version=ONNX_OPSET,
                                  dynamo=False)
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
        options = onnxruntime.SessionOptions()
        # as many threads as torch uses here (evaluation workers and the latency bench set one); no spinning
        # threads left burning a core between queries
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(model.getvalue(), options, providers=["CPUExecutionProvider"])
        # the exporter drops inputs the graph does not read (e.g. an unused padding mask)
        used = {i.name for i in self._session.get_inputs()}
        self._inputs = [(i, name) for i, name in enumerate(names) if name in used]

    def __call__(self, *tensors: torch.Tensor) -> object:
        feed = {name: tensors[i].detach().contiguous().numpy() for i, name in self._inputs}
        outputs = [torch.from_numpy(o) for o in self._session.run(None, feed)]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


class InferenceGraphs:
    """``forward(module, *tensors)`` run through a frozen graph, one per input signature (shapes and dtypes), the
    ``max_graphs`` most recent kept; ``runtime`` ``"torchscript"`` or ``"onnxruntime"`` (the module docstring).

    ``forward`` must be a pure function of its tensors for a given signature: any data-dependent Python branch is
    baked into the trace, so callers route inputs that would take another branch (e.g. padded query points) to
    the eager path themselves.
    """

    def __init__(self, module: nn.Module, forward: Callable[..., object], max_graphs: int = 8,
                 runtime: str = "torchscript") -> None:
        self._traceable = _Forward(module, forward).eval()
        self._graphs: OrderedDict[Signature, Callable[..., object]] = OrderedDict()
        self.max_graphs = max_graphs
        if check_runtime(runtime) == "eager":
            raise ValueError("InferenceGraphs runs a graph runtime; for 'eager' call the module itself")
        self.runtime = runtime

    def __call__(self, *tensors: torch.Tensor) -> object:
        key = tuple((tuple(t.shape), t.dtype) for t in tensors)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._build(tensors)
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
    def _build(self, tensors: tuple[torch.Tensor, ...]) -> Callable[..., object]:
        if self.runtime == "onnxruntime":
            return _OnnxRuntimeGraph(self._traceable, tensors)
        with warnings.catch_warnings():
            # expected: the deprecation notice (see the module docstring) and the tracer's note that Python
            # branches become constants (the documented contract of ``forward`` above)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return torch.jit.freeze(torch.jit.trace(self._traceable, tensors, check_trace=False))


__all__ = ["InferenceGraphs", "RUNTIMES", "check_runtime", "inference_graphs"]
