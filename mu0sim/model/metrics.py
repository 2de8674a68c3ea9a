"""Trace metrics (REFERENCE.md §1): per keypoint over its valid steps, then averaged over keypoints.

All functions take ``pred`` and ``target`` (M, T, C) and ``valid`` (M, T) and return (M,) per-keypoint values (NaN
for a keypoint with no valid step). Invalid steps are dropped, not zero-filled, so DTW and Fréchet see each
keypoint's valid sub-sequence.
"""

from __future__ import annotations

import numpy as np


def _dist(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(target, np.float64), axis=-1)


def ade(pred: np.ndarray, target: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean L2 error over valid steps."""
    d, v = _dist(pred, target), valid.astype(np.float64)
    n = v.sum(-1)
    return np.where(n > 0, (d * v).sum(-1) / np.maximum(n, 1), np.nan)


def fde(pred: np.ndarray, target: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """L2 error at the last valid step."""
    d = _dist(pred, target)
    any_valid = valid.any(-1)
    last = valid.shape[-1] - 1 - np.argmax(valid[:, ::-1], axis=-1)
    return np.where(any_valid, d[np.arange(len(d)), last], np.nan)


def _compact(pred: np.ndarray, target: np.ndarray, valid: np.ndarray):
    """Move each row's valid steps to the front; returns (pred, target, lengths)."""
    order = np.argsort(~valid, axis=-1, kind="stable")
    take = lambda a: np.take_along_axis(a, order[..., None], axis=1)  # noqa: E731
    return take(pred), take(target), valid.sum(-1)


def _pairwise(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.linalg.norm(pred[:, :, None].astype(np.float64) - target[:, None].astype(np.float64), axis=-1)


def dtw(pred: np.ndarray, target: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Dynamic-time-warping cost (L2 steps) divided by the number of valid steps."""
    p, t, n = _compact(pred, target, valid)
    cost = _pairwise(p, t)
    m, steps = cost.shape[:2]
    acc = np.full((m, steps + 1, steps + 1), np.inf)
    acc[:, 0, 0] = 0.0
    for i in range(1, steps + 1):
        for j in range(1, steps + 1):
            acc[:, i, j] = cost[:, i - 1, j - 1] + np.minimum(np.minimum(acc[:, i - 1, j], acc[:, i, j - 1]),
                                                              acc[:, i - 1, j - 1])
    out = acc[np.arange(m), n, n] / np.maximum(n, 1)
    return np.where(n > 0, out, np.nan)


def frechet(pred: np.ndarray, target: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Discrete Fréchet distance between the valid sub-sequences."""
    p, t, n = _compact(pred, target, valid)
    cost = _pairwise(p, t)
    m, steps = cost.shape[:2]
    acc = np.full((m, steps, steps), np.inf)
    for i in range(steps):
        for j in range(steps):
            if i == 0 and j == 0:
                prev = np.zeros(m)
            else:
                prev = np.minimum(np.minimum(acc[:, i - 1, j] if i else np.inf, acc[:, i, j - 1] if j else np.inf),
                                  acc[:, i - 1, j - 1] if i and j else np.inf)
            acc[:, i, j] = np.maximum(prev, cost[:, i, j])
    idx = np.maximum(n - 1, 0)
    out = acc[np.arange(m), idx, idx]
    return np.where(n > 0, out, np.nan)


def min_ade(samples: np.ndarray, target: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """samples (S, M, T, C): the best sample's ADE per keypoint."""
    return np.min(np.stack([ade(s, target, valid) for s in samples]), axis=0)
