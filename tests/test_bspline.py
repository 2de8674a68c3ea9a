"""Property tests for the B-spline trace module."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mu0sim.bspline import DeltaNormalizer, basis_functions, basis_matrix, evaluate_bspline, fit_bspline, knot_vector

D_VALUES = st.sampled_from([4, 7, 10])
finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("d", [4, 7, 10])
def test_knots_and_basis_shape_partition_of_unity(d):
    assert len(knot_vector(d)) == d + 4
    basis = basis_matrix(d, 32)
    assert basis.shape == (32, d)
    np.testing.assert_allclose(basis.sum(1), 1.0, atol=1e-12)
    assert basis.min() >= 0
    ends = basis_functions(np.array([0.0, 1.0]), d)  # clamped: the curve starts at P0 and ends at P_{D-1}
    np.testing.assert_allclose(ends[0], np.eye(d)[0])
    np.testing.assert_allclose(ends[1], np.eye(d)[-1])


def test_interior_knots_match_the_recipe():
    np.testing.assert_allclose(knot_vector(7)[4:7], [0.5] * 3)
    np.testing.assert_allclose(knot_vector(10)[4:10], [1 / 3] * 3 + [2 / 3] * 3)
    with pytest.raises(ValueError, match="num_control must be one of"):
        knot_vector(5)


@settings(max_examples=60, deadline=None)
@given(d=D_VALUES, horizon=st.integers(10, 48), channels=st.integers(1, 3), data=st.data())
def test_curves_the_basis_spans_are_reproduced_exactly(d, horizon, channels, data):
    control = data.draw(arrays(np.float64, (2, d, channels), elements=finite))
    curve = evaluate_bspline(control, horizon)
    fitted, ok = fit_bspline(curve, num_control=d, lam=0.0)
    assert ok.all()
    np.testing.assert_allclose(evaluate_bspline(fitted, horizon), curve, atol=1e-8)


@settings(max_examples=40, deadline=None)
@given(d=st.sampled_from([7, 10]), amplitude=st.floats(0.01, 0.3), phase=st.floats(0, 6.3))
def test_smooth_curves_fit_closely_with_the_default_regularization(d, amplitude, phase):
    t = np.arange(1, 33) / 32
    curve = np.stack([amplitude * np.sin(np.pi * t + phase), amplitude * t**2, -amplitude * t], axis=-1)
    fitted, _ = fit_bspline(curve, num_control=d)
    error = np.abs(evaluate_bspline(fitted) - curve).max()
    assert error < 0.08 * amplitude + 1e-9  # within 8% of the motion's size


@settings(max_examples=60, deadline=None)
@given(d=D_VALUES, data=st.data())
def test_masked_steps_have_no_influence(d, data):
    points = data.draw(arrays(np.float64, (32, 3), elements=finite))
    valid = data.draw(arrays(bool, 32))
    garbage = data.draw(arrays(np.float64, (32, 3), elements=finite))
    changed = np.where(valid[:, None], points, garbage)
    a, ok_a = fit_bspline(points, valid, num_control=d)
    b, ok_b = fit_bspline(changed, valid, num_control=d)
    assert ok_a == ok_b == (valid.sum() >= d)
    np.testing.assert_allclose(a, b, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(d=D_VALUES, batch=st.tuples(st.integers(1, 3), st.integers(1, 4)), horizon=st.integers(8, 40))
def test_shapes_for_every_d(d, batch, horizon):
    points = np.random.default_rng(0).normal(size=(*batch, horizon, 3))
    control, ok = fit_bspline(points, np.ones((*batch, horizon)), num_control=d)
    assert control.shape == (*batch, d, 3) and ok.shape == batch
    assert evaluate_bspline(control, horizon).shape == (*batch, horizon, 3)


def test_too_few_valid_steps_is_reported_not_extrapolated():
    valid = np.zeros(32, dtype=bool)
    valid[:3] = True
    control, ok = fit_bspline(np.ones((32, 3)), valid, num_control=4)
    assert not ok and np.all(control == 0)


def test_delta_normalizer_roundtrip_and_scale():
    rng = np.random.default_rng(0)
    current = rng.normal(size=(5, 3))
    future = current[:, None, :] + rng.normal(scale=[0.1, 0.2, 0.01], size=(5, 32, 3))
    norm = DeltaNormalizer.fit(future - current[:, None, :])
    assert np.all(np.abs(norm.scale - np.array([0.1, 0.2, 0.01]) * 1.96) < np.array([0.1, 0.2, 0.01]) * 0.3)
    np.testing.assert_allclose(norm.denormalize(norm.normalize(future, current), current), future)
