"""scripts/forecast_error.py: μ0's forecast against the demonstrator's future, per query-point group, in cm."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from mu0sim.envs import make_env
from mu0sim.model import Mu0
from mu0sim.policies.trace_observation import GRIPPER_KEYPOINTS, Mu0TraceObservation

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "forecast_error.py"


@pytest.fixture(scope="module")
def forecast_error():
    spec = importlib.util.spec_from_file_location("forecast_error", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FixedFuture:
    """An oracle whose future is given: ``offset_m`` added to every query point at every step."""

    def __init__(self, offset_m: np.ndarray) -> None:
        self.offset_m = offset_m
        self.starts = []

    def future(self, base_env, keypoints, horizon):
        start = keypoints.world_positions(base_env.mj_data)
        self.starts.append(start)
        return np.repeat(start[:, None], horizon, 1) + self.offset_m


def test_query_errors_compare_the_forecast_with_the_oracles_future_in_cm(tiny_mu0, forecast_error):
    env = Mu0TraceObservation(make_env("Lift", "Panda", cameras=("agentview",), image_size=128, depth=True,
                                       segmentation=True, image_period=0), Mu0.from_pretrained(tiny_mu0[0]),
                              num_points=16)
    obs, _ = env.reset(seed=0)
    obs["mu0_traces_world"] = np.zeros_like(obs["mu0_traces_world"])  # a forecast of no motion
    still = forecast_error.query_errors(obs, env, FixedFuture(np.zeros(3)), GRIPPER_KEYPOINTS)
    assert still == {"gripper_cm": 0.0, "gripper_motion_cm": 0.0, "objects_cm": 0.0, "objects_motion_cm": 0.0}
    moving = FixedFuture(np.array([0.03, 0.0, 0.04]))  # 5 cm at every step
    errors = forecast_error.query_errors(obs, env, moving, GRIPPER_KEYPOINTS)
    # the oracle's keypoints start where the wrapper's query points are (world frame, metres)
    np.testing.assert_allclose(moving.starts[0], obs["mu0_query_world"], atol=1e-5)
    for group in ("gripper", "objects"):
        assert errors[f"{group}_cm"] == pytest.approx(5.0, abs=1e-3)
        assert errors[f"{group}_motion_cm"] == pytest.approx(5.0, abs=1e-3)
    obs["mu0_query_label"] = np.where(obs["mu0_query_label"] >= 2, 0.0, obs["mu0_query_label"])  # no object point
    assert forecast_error.query_errors(obs, env, moving, GRIPPER_KEYPOINTS)["objects_cm"] is None
    env.close()
    from mu0sim.cli import parse_int_list  # the scripts' seed and demo ranges

    assert parse_int_list("30-32", "--demo-range") == [30, 31, 32] and parse_int_list("4,7", "--seeds") == [4, 7]
    for bad in ("20x", "30-20"):  # a reversed span is refused, not an empty seed list
        with pytest.raises(ValueError, match=f"--seeds takes FIRST-LAST \\(FIRST <= LAST\\) or comma-separated "
                                             f"integers, got '{bad}'"):
            parse_int_list(bad, "--seeds")
