"""Cubic clamped B-splines for traces: each keypoint's future over H steps as D control points (μ0's representation).

Knots (degree 3, clamped on [0, 1]):
    D = 4:  one Bézier segment                      [0,0,0,0, 1,1,1,1]
    D = 7:  internal knot 1/2, multiplicity 3        [0,0,0,0, .5,.5,.5, 1,1,1,1]
    D = 10: internal knots 1/3 and 2/3, mult. 3      [0,0,0,0, ⅓,⅓,⅓, ⅔,⅔,⅔, 1,1,1,1]
Future step ``k = 1..H`` sits at ``t = k / H`` (t = 0 is the current point, t = 1 the last future step).

Fitting is weighted least squares over the H future steps (invalid steps weight 0) plus a Tikhonov term
``lam * sum_j |P[j+1] - P[j]|^2`` that keeps control points of sparsely observed keypoints from flying off
(lam = 0.2 in μ0's recipe). Targets are anchor-relative and normalized per axis (:class:`DeltaNormalizer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

DEGREE = 3
SUPPORTED_NUM_CONTROL = (4, 7, 10)
DEFAULT_HORIZON = 32
DEFAULT_LAMBDA = 0.2


def knot_vector(num_control: int) -> np.ndarray:
    """Clamped cubic knot vector with interior knots of multiplicity 3 (C0 joints between Bézier segments)."""
    if num_control not in SUPPORTED_NUM_CONTROL:
        raise ValueError(f"num_control must be one of {SUPPORTED_NUM_CONTROL}, got {num_control}")
    segments = (num_control - 1) // DEGREE
    interior = [k / segments for k in range(1, segments) for _ in range(DEGREE)]
    return np.array([0.0] * (DEGREE + 1) + interior + [1.0] * (DEGREE + 1))


def basis_functions(t: np.ndarray, num_control: int) -> np.ndarray:
    """Cox–de Boor: (len(t), num_control) basis values at parameters ``t`` in [0, 1]."""
    knots = knot_vector(num_control)
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
    # degree 0: indicator of [knots[i], knots[i+1]); t = 1 belongs to the last non-empty span
    n0 = len(knots) - 1
    basis = ((knots[:n0] <= t[:, None]) & (t[:, None] < knots[1:])).astype(np.float64)
    last_span = np.flatnonzero(knots[:-1] < knots[1:])[-1]
    basis[t >= 1.0, :] = 0.0
    basis[t >= 1.0, last_span] = 1.0
    for degree in range(1, DEGREE + 1):
        n = n0 - degree
        left_den = knots[degree:degree + n] - knots[:n]
        right_den = knots[degree + 1:degree + 1 + n] - knots[1:1 + n]
        with np.errstate(divide="ignore", invalid="ignore"):
            left = np.where(left_den > 0, (t[:, None] - knots[:n]) / left_den, 0.0)
            right = np.where(right_den > 0, (knots[degree + 1:degree + 1 + n] - t[:, None]) / right_den, 0.0)
        basis = left * basis[:, :n] + right * basis[:, 1:n + 1]
    return basis


@lru_cache(maxsize=None)
def _basis_matrix_cached(num_control: int, horizon: int) -> np.ndarray:
    matrix = basis_functions(np.arange(1, horizon + 1) / horizon, num_control)
    matrix.setflags(write=False)
    return matrix


def basis_matrix(num_control: int = 10, horizon: int = DEFAULT_HORIZON) -> np.ndarray:
    """(horizon, num_control) basis sampled at the future steps ``t = k / horizon``, k = 1..horizon (read-only)."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    return _basis_matrix_cached(num_control, horizon)


def _difference_penalty(num_control: int) -> np.ndarray:
    diff = np.diff(np.eye(num_control), axis=0)  # (D-1, D): P[j+1] - P[j]
    return diff.T @ diff


def fit_bspline(points: np.ndarray, valid: np.ndarray | None = None, num_control: int = 10,
                lam: float = DEFAULT_LAMBDA) -> tuple[np.ndarray, np.ndarray]:
    """Fit control points to future trajectories.

    Args:
        points: (..., H, C) future positions (any units; usually normalized anchor-relative deltas).
        valid: (..., H) bool/0-1 weights; invalid steps have no influence. None = all valid.
        num_control: D in {4, 7, 10}.
        lam: Tikhonov weight on first differences of consecutive control points.

    Returns:
        control: (..., D, C) control points (zeros where the fit is not valid).
        fit_valid: (...,) bool, True where at least D steps were valid (μ0's rule for a usable trace).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim < 2:
        raise ValueError(f"points must be (..., H, C), got shape {points.shape}")
    horizon = points.shape[-2]
    weights = np.ones(points.shape[:-1]) if valid is None else np.asarray(valid, dtype=np.float64)
    if weights.shape != points.shape[:-1]:
        raise ValueError(f"valid must have shape {points.shape[:-1]}, got {weights.shape}")
    basis = basis_matrix(num_control, horizon)
    # normal equations per trajectory: (B^T W B + lam D^T D) P = B^T W y
    lhs = np.einsum("hd,...h,he->...de", basis, weights, basis) + lam * _difference_penalty(num_control)
    rhs = np.einsum("hd,...h,...hc->...dc", basis, weights, np.where(weights[..., None] > 0, points, 0.0))
    fit_valid = (weights > 0).sum(-1) >= num_control
    # rows with too few valid steps: solve a harmless identity system, then zero them
    safe_lhs = np.where(fit_valid[..., None, None], lhs, np.eye(num_control))
    control = np.linalg.solve(safe_lhs, rhs)
    return np.where(fit_valid[..., None, None], control, 0.0), fit_valid


def evaluate_bspline(control: np.ndarray, horizon: int = DEFAULT_HORIZON) -> np.ndarray:
    """(..., D, C) control points -> (..., horizon, C) positions at the future steps."""
    control = np.asarray(control)
    return np.einsum("hd,...dc->...hc", basis_matrix(control.shape[-2], horizon), control)


@dataclass
class DeltaNormalizer:
    """Anchor-relative deltas scaled per axis by the 95th percentile of |delta| over a training set.

    ``normalize(future, current) = (future - current) / scale``; ``denormalize`` inverts it.
    """

    scale: np.ndarray
    percentile: float = 95.0

    @classmethod
    def fit(cls, deltas: np.ndarray, valid: np.ndarray | None = None, percentile: float = 95.0,
            floor: float = 1e-6) -> "DeltaNormalizer":
        """``deltas`` (..., C) anchor-relative offsets; ``valid`` (...) mask of the entries to use."""
        deltas = np.asarray(deltas, dtype=np.float64)
        flat = deltas.reshape(-1, deltas.shape[-1])
        if valid is not None:
            flat = flat[np.asarray(valid, dtype=bool).reshape(-1)]
        if len(flat) == 0:
            raise ValueError("no valid deltas to fit the normalizer on")
        scale = np.maximum(np.percentile(np.abs(flat), percentile, axis=0), floor)
        return cls(scale=scale, percentile=percentile)

    def normalize(self, future: np.ndarray, current: np.ndarray) -> np.ndarray:
        """future (..., H, C), current (..., C) -> normalized deltas (..., H, C)."""
        return (np.asarray(future) - np.asarray(current)[..., None, :]) / self.scale

    def denormalize(self, deltas: np.ndarray, current: np.ndarray) -> np.ndarray:
        return np.asarray(deltas) * self.scale + np.asarray(current)[..., None, :]
