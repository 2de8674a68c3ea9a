"""scripts/compare_feature_caches.py: which arrays of two feature caches differ, and by how much."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_feature_caches.py"


def test_equal_arrays_and_last_bit_differences_are_told_apart(tmp_path: Path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    traces = np.linspace(-2.0, 4.0, 8, dtype=np.float32)
    rounded = traces.copy()
    rounded[:2] = np.nextafter(rounded[:2], np.float32(10))  # the last bit of two values of eight
    np.savez(a, mu0_query_world=np.ones((2, 3), np.float32), mu0_traces=traces, only_here=np.zeros(1))
    np.savez(b, mu0_query_world=np.ones((2, 3), np.float32), mu0_traces=rounded)
    out = subprocess.run([sys.executable, str(SCRIPT), str(a), str(b)], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "mu0_query_world (2, 3) float32: equal"
    assert out[1].startswith("mu0_traces (8,) float32: max |diff| 1.19e-07 (max |value| 4)")
    assert out[1].endswith("25.0% of values differ") and len(out) == 2  # arrays in one cache only: not compared
    missing = subprocess.run([sys.executable, str(SCRIPT), str(a), str(tmp_path / "nope.npz")], capture_output=True,
                             text=True)
    assert missing.returncode != 0 and "no feature cache at" in missing.stderr
