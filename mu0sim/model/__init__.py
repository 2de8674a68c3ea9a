"""μ0: frozen backbone + trace expert, its baselines, training (``pretrain``) and evaluation (``eval_traces``)."""

from mu0sim.model.inference_graph import RUNTIMES
from mu0sim.model.mu0 import Mu0, TracePrediction
from mu0sim.model.samples import SampleConfig, TraceSamples, load_samples
from mu0sim.model.trace_model import MODEL_KINDS, TraceModel, TraceModelConfig, TraceNormalizer

__all__ = ["MODEL_KINDS", "Mu0", "RUNTIMES", "SampleConfig", "TraceModel", "TraceModelConfig", "TraceNormalizer",
           "TracePrediction", "TraceSamples", "load_samples"]
