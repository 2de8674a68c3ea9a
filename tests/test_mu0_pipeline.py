"""collect -> extract -> pretrain -> eval-traces -> Mu0.from_pretrained on a tiny Lift dataset (two robots)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mu0sim.cli import main
from mu0sim.model import Mu0
from mu0sim.traces.keypoints import CATEGORIES


@pytest.fixture()
def tiny_checkpoint(tiny_mu0):
    return tiny_mu0


def test_pretrain_writes_mu0_and_baselines_and_a_resumable_layout(tiny_checkpoint):
    ckpt, _ = tiny_checkpoint
    for folder in (ckpt, ckpt / "baselines" / "waypoint", ckpt / "baselines" / "token-ar"):
        assert {"config.json", "model.safetensors", "normalizer.json"} <= {p.name for p in folder.iterdir()}
        assert json.loads((folder / "config.json").read_text())["training"]["finished"]
    meta = json.loads((ckpt / "config.json").read_text())
    assert meta["robots_seen"] == ["Panda"] and meta["pretrain"]["holdout_robot"] == "Sawyer"
    assert not (ckpt / ".resume").exists()
    assert list(json.loads((ckpt / "instructions.json").read_text())) == ["lift the red cube"]


def test_eval_traces_reports_every_model_split_space_and_horizon(tiny_checkpoint, tmp_path, capsys):
    ckpt, data = tiny_checkpoint
    out = tmp_path / "report.json"
    assert main(["eval-traces", "--ckpt", str(ckpt), "--data", *map(str, data), "--out", str(out),
                 "--num-samples", "2"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "held_out_robot_mu0_ade32_cm" in summary
    rows = json.loads(out.read_text())["rows"]
    models = {r["model"] for r in rows}
    assert models == {"mu0", "waypoint", "token-ar", "static", "constant_velocity"}
    assert {r["split"] for r in rows} == {"seen_robots", "held_out_robot"}
    assert {(r["space"], r["horizon"]) for r in rows} == {(s, h) for s in ("2d_px", "3d_cm") for h in (8, 16, 32)}
    for r in rows:
        assert np.isfinite([r["ade"], r["fde"], r["dtw"], r["frechet"]]).all()
        assert (r["min_ade_5"] is not None) == (r["model"] in ("mu0", "token-ar"))
    static = [r for r in rows if r["model"] == "static" and r["space"] == "3d_cm"]
    assert all(r["ade"] > 0 for r in static)  # the demos move
    assert out.with_suffix(".md").read_text().startswith("# eval-traces")
    # the per-category rows split each model's query points: their point-weighted mean is the overall error
    by_category = json.loads(out.read_text())["by_category"]
    assert {r["category"] for r in by_category} <= set(CATEGORIES) and {r["horizon"] for r in by_category} == {32}
    assert "per TraceExtract category" in out.with_suffix(".md").read_text()
    for r in rows:
        if r["horizon"] != 32:
            continue
        parts = [c for c in by_category if (c["model"], c["split"], c["space"]) == (r["model"], r["split"], r["space"])]
        assert sum(c["keypoints"] for c in parts) == r["keypoints"]
        assert sum(c["ade"] * c["keypoints"] for c in parts) / r["keypoints"] == pytest.approx(r["ade"], rel=1e-5)
    # as a policy queries μ0 without query_history: no model sees a past, so constant velocity stands still
    blind = tmp_path / "blind.json"
    assert main(["eval-traces", "--ckpt", str(ckpt), "--data", *map(str, data), "--out", str(blind),
                 "--num-samples", "2", "--without-history"]) == 0
    report = json.loads(blind.read_text())
    assert report["info"]["history"] is False and "without keypoint history" in blind.with_suffix(".md").read_text()
    ade = {(r["model"], r["split"], r["space"], r["horizon"]): r["ade"] for r in report["rows"]}
    for key, value in ade.items():
        if key[0] == "static":
            assert ade[("constant_velocity", *key[1:])] == pytest.approx(value, rel=1e-5)


def test_mu0_from_pretrained_is_frozen_batched_and_deterministic(tiny_checkpoint):
    ckpt, data = tiny_checkpoint
    mu0 = Mu0.from_pretrained(ckpt)
    assert not mu0.model.training and not any(p.requires_grad for p in mu0.model.parameters())
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (2, 128, 128, 3), dtype=np.uint8)
    depth = rng.uniform(0.8, 1.5, (2, 128, 128)).astype(np.float32)
    query = rng.uniform(0, 128, (2, 5, 2)).astype(np.float32)
    text = mu0.instructions.texts[0]
    a = mu0.predict_traces(rgb, depth, query, text, seed=3, num_samples=2)
    b = mu0.predict_traces(rgb, depth, query, text, seed=3, num_samples=2)
    assert a.uvz.shape == (2, 2, 5, 32, 3) and a.uv_px.shape == (2, 2, 5, 32, 2)
    assert a.control_points.shape == (2, 2, 5, 10, 3) and a.valid_prob.shape == (2, 5, 32)
    np.testing.assert_array_equal(a.uvz, b.uvz)
    assert np.isfinite(a.uvz).all()
    assert not np.array_equal(a.uvz, mu0.predict_traces(rgb, depth, query, text, seed=4, num_samples=2).uvz)
    with pytest.raises(ValueError, match="rgb must be"):
        mu0.predict_traces(rgb[:, :64], depth, query, text)
    with pytest.raises(ValueError, match="query_uv_px must be"):
        mu0.predict_traces(rgb, depth, query[0], text)
    with pytest.raises(ValueError, match="history_uvz must be"):
        mu0.predict_traces(rgb, depth, query, text, history_uvz=np.zeros((2, 5, 3, 3)))
    with pytest.raises(FileNotFoundError, match="not found"):
        Mu0.from_pretrained(ckpt / "missing")
    with pytest.raises(ValueError, match="unknown inference runtime 'cuda'; choose one of eager, torchscript"):
        Mu0.from_pretrained(ckpt, runtime="cuda")


def test_pretrain_rejects_bad_settings_with_clear_errors(tiny_checkpoint, tmp_path, capsys):
    _, data = tiny_checkpoint
    assert main(["pretrain", "--data", str(data[0]), "--out", str(tmp_path / "x"), "--models", "mu0,gpt"]) == 2
    assert "valid kinds" in capsys.readouterr().err
    assert main(["pretrain", "--data", str(tmp_path / "nope.hdf5"), "--out", str(tmp_path / "x")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["pretrain", "--data", str(data[0]), "--out", str(tmp_path / "x"), "--model.num_control=5"]) == 2
    assert "num_control must be one of" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["mu0-sim", "mu0-sim-v2", "mu0-sim-v3"])
def test_the_shipped_checkpoint_loads_and_predicts_on_a_rendered_frame(name):
    from mu0sim.envs import make_env

    ckpt = Path(__file__).resolve().parents[1] / "checkpoints" / name
    assert (ckpt / "MODEL_CARD.md").exists()
    assert all((w.parent / "MODEL_CARD.md").exists() for w in ckpt.rglob("model.safetensors"))  # every weights file
    assert sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file()) <= 30e6  # issue 5: <= 30 MB
    mu0 = Mu0.from_pretrained(ckpt)
    assert mu0.meta["pretrain"]["holdout_robot"] == "Kinova3" and "Kinova3" not in mu0.meta["robots_seen"]
    env = make_env("Lift", "Panda", cameras=("agentview",), image_size=mu0.image_size, depth=True)
    obs, info = env.reset(seed=0)
    env.close()
    query = np.array([[[64.5, 70.5], [60.5, 90.5]]], np.float32)
    pred = mu0.predict_traces(obs["agentview_image"][None], obs["agentview_depth"][None], query, info["instruction"])
    assert pred.uvz.shape == (1, 1, 2, 32, 3) and np.isfinite(pred.uvz).all()
    assert np.abs(pred.uvz[..., 2] - obs["agentview_depth"][70, 64, 0]).max() < 0.5  # depths stay near the scene
    for baseline in ("waypoint", "token-ar"):
        assert (ckpt / "baselines" / baseline / "model.safetensors").exists()


def test_robot_colors_repaint_the_robot_only_while_asked_and_evaluation_keeps_true_colours(tiny_checkpoint):
    """samples.robot_colors (a training augmentation): inside the block most of the robot's pixels change colour
    (its mount, which segmentation counts as robot, keeps its own) and the rest of the frame does not; after it the frame renders as before. Plain settings keep their cache key."""
    from mu0sim.datasets.hdf5 import make_env_from_dataset, open_dataset
    from mu0sim.envs.robosuite_env import ROBOT_LABEL
    from mu0sim.model.samples import SampleConfig, robot_colors_randomized

    _, data = tiny_checkpoint
    env = make_env_from_dataset(data[0], cameras=("agentview",), depth=False, segmentation=True,
                                image_size=(96, 96))
    try:
        base = env.unwrapped
        with open_dataset(data[0]) as f:
            base.reset_to_state(f["data/demo_0/states"][0], f["data/demo_0"].attrs["model_file"])
            state = f["data/demo_0/states"][0]
        before = base.observe_state(state)
        with robot_colors_randomized(base, np.random.default_rng(0)):
            painted = base.observe_state(state)
        after = base.observe_state(state)
    finally:
        env.close()
    rgb, seg = before["agentview_image"].astype(int), before["agentview_segmentation"][..., 0]
    changed = np.abs(painted["agentview_image"].astype(int) - rgb).sum(-1) > 0
    robot = seg == ROBOT_LABEL
    assert changed[robot].mean() > 0.5 and changed[~robot].mean() < 0.05
    np.testing.assert_array_equal(after["agentview_image"], before["agentview_image"])
    assert "robot_colors" not in SampleConfig().cache_key() and "robot_colors" in SampleConfig(
        robot_colors=0.5).cache_key()
    with pytest.raises(ValueError, match="samples.robot_colors is a chance, in \\[0, 1\\]; got 1.5"):
        SampleConfig(robot_colors=1.5)
