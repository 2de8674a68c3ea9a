"""TraceExtract: keypoints, world-aligned 3D traces and captioned motion segments from demonstration episodes."""

from mu0sim.traces.extract import ExtractConfig, extract_dataset, load_traces

__all__ = ["ExtractConfig", "extract_dataset", "load_traces"]
