"""Which arrays of two μ0 feature caches (``<dataset>.bc-<μ0 id>-....npz``, written by ``train-policy``'s replay)
differ, and by how much: e.g. the same demos replayed on two CPUs, to tell renders (query points, depth) from μ0's
float rounding (forecasts, image features).

    python scripts/compare_feature_caches.py runs/cpu_isa/native/Lift_Panda.bc-*.npz runs/cpu_isa/avx2/Lift_Panda.bc-*.npz

Prints one line per array both caches hold: ``equal``, or the largest absolute difference, the largest magnitude in
the first cache (for scale) and the share of values that differ.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> list[str]:
    lines = []
    for key in sorted(a.keys() & b.keys()):
        x, y = np.asarray(a[key]), np.asarray(b[key])
        if x.shape != y.shape:
            lines.append(f"{key} {x.shape} vs {y.shape}: different shapes")
        elif np.array_equal(x, y):
            lines.append(f"{key} {x.shape} {x.dtype}: equal")
        else:
            x64, y64 = x.astype(np.float64), y.astype(np.float64)
            lines.append(f"{key} {x.shape} {x.dtype}: max |diff| {np.abs(x64 - y64).max():.3g} (max |value| "
                         f"{np.abs(x64).max():.3g}), {np.mean(x64 != y64):.1%} of values differ")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    for path in (args.first, args.second):
        if not path.is_file():
            raise SystemExit(f"no feature cache at {path}")
    with np.load(args.first) as a, np.load(args.second) as b:
        print("\n".join(compare(dict(a), dict(b))))


if __name__ == "__main__":
    main()
