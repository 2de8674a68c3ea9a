"""μ0 and its baselines on synthetic samples: losses, prediction shapes, determinism, save/load, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mu0sim.bspline import evaluate_bspline
from mu0sim.config import apply_overrides
from mu0sim.model import metrics
from mu0sim.model.samples import TraceSamples
from mu0sim.model.train import PretrainConfig, make_batch, split_of
from mu0sim.model.trace_model import (MODEL_KINDS, TraceModel, TraceModelConfig, TraceNormalizer, fit_controls,
                                      load_trace_model, save_trace_model)


def synthetic_samples(n: int = 24, k: int = 6, horizon: int = 32, history: int = 8, seed: int = 0) -> TraceSamples:
    """Points moving on straight lines whose velocity is written into the image features (so it is learnable)."""
    rng = np.random.default_rng(seed)
    velocity = rng.normal(0, 0.01, (n, 1, 3)).astype(np.float32)
    current = np.concatenate([rng.uniform(-0.8, 0.8, (n, k, 2)), rng.uniform(0.8, 1.5, (n, k, 1))], -1)
    steps = np.arange(1, horizon + 1, dtype=np.float32)[None, None, :, None]
    future = (current[:, :, None] + velocity[:, :, None] * steps).astype(np.float32)
    past = np.arange(-history, 0, dtype=np.float32)[None, None, :, None]
    rgb_map = np.zeros((n, 112, 8, 8), np.float16)
    rgb_map[:, :3] = (velocity[:, 0, :, None, None] * 100).astype(np.float16)
    mask = np.ones((n, k), bool)
    mask[:, -1] = rng.random(n) > 0.5
    future_valid = np.ones((n, k, horizon), bool)
    future_valid[: n // 4, :, horizon // 2:] = False
    return TraceSamples(
        rgb_map=rgb_map, depth_map=np.zeros_like(rgb_map), rgb_tokens=np.zeros((n, 1280, 4, 4), np.float16),
        depth_tokens=np.zeros((n, 1280), np.float16), instruction=np.zeros(n, np.int32),
        current=current.astype(np.float32), history=np.broadcast_to(velocity[:, :, None] * past, (n, k, history, 3))
        .astype(np.float32), history_valid=np.ones((n, k, history), bool), future=future, future_valid=future_valid,
        keypoint_mask=mask, category=np.zeros((n, k), np.int8), body=np.repeat(np.arange(2), k // 2)[None]
        .repeat(n, 0).astype(np.int32), intrinsics=np.repeat(np.array([[[110.0, 0, 64], [0, 110, 64], [0, 0, 1]]],
                                                                       np.float32), n, 0),
        episode=np.arange(n, dtype=np.int32), frame=np.zeros(n, np.int32), robot=np.zeros(n, np.int32),
        task=np.zeros(n, np.int32), instructions=["lift the red cube"], robots=["Panda"], tasks=["Lift"],
        image_hw=(128, 128))


def _model(kind: str, samples: TraceSamples, **kw) -> TraceModel:
    ok = samples.future_valid & samples.keypoint_mask[..., None]
    norm = TraceNormalizer.fit(samples.current, samples.future, ok)
    torch.manual_seed(0)
    return TraceModel(TraceModelConfig(kind=kind, dim=32, encoder_layers=1, head_layers=1, **kw), norm)


def _loss(model: TraceModel, samples: TraceSamples, rows: np.ndarray) -> dict:
    text = np.zeros((1, 384), np.float32)
    batch, tgt = make_batch(samples, rows, text, model.normalizer)
    width = batch.current.shape[1]
    controls, ok = fit_controls(samples.current, samples.future, samples.future_valid, model.normalizer,
                                model.config.num_control)
    return model.loss(batch, tgt["future"], tgt["future_valid"], torch.as_tensor(controls[rows, :width]),
                      torch.as_tensor(ok[rows, :width]), tgt["body"], tgt["category"])


@pytest.mark.parametrize("kind", [*MODEL_KINDS, "mu0-sample"])
def test_training_reduces_the_loss_and_predictions_have_the_right_shape(kind):
    samples = synthetic_samples()
    flow = {"flow_prediction": "sample"} if kind == "mu0-sample" else {}
    kind = kind.removesuffix("-sample")
    model = _model(kind, samples, rigidity_weight=5.0 if kind == "mu0" else 0.0, history_dropout=0.1, **flow)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rows = np.arange(len(samples))
    first = float(_loss(model, samples, rows)["loss"])
    for _ in range(60):
        loss = _loss(model, samples, rows)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.7 * first
    model.eval()
    batch, _ = make_batch(samples, rows[:5], np.zeros((1, 384), np.float32), model.normalizer)
    out = model.predict(batch, num_samples=3, generator=torch.Generator().manual_seed(0))
    assert out["uvz"].shape == (5, 3, samples.current.shape[1], 32, 3)
    assert torch.isfinite(out["uvz"]).all()
    if kind == "mu0":
        assert out["controls"].shape == (5, 3, samples.current.shape[1], 10, 3)
        assert out["valid_prob"].shape == (5, samples.current.shape[1], 32)
        # the trace is the spline of its control points
        spline = evaluate_bspline(out["controls"][0, 0].numpy(), 32)
        np.testing.assert_allclose(spline, out["uvz"][0, 0].numpy(), atol=1e-5)


def test_a_clean_sample_prediction_converts_to_the_velocity_of_its_flow_path():
    """x-prediction: the head outputs P; the velocity noise - P on x_t = t * noise + (1 - t) * P is (x_t - P) / t,
    so one Euler step of size t from x_t lands exactly on the predicted P."""
    samples = synthetic_samples()
    model = _model("mu0", samples, flow_prediction="sample").eval()
    cond = torch.randn(2, 3, 32)
    x_t, t, mask = torch.randn(2, 3, 10, 3), torch.tensor([0.25, 0.8]), torch.ones(2, 3, dtype=torch.bool)
    clean = model.head.output(cond, x_t, t, mask)
    stepped = x_t - t[:, None, None, None] * model.head.velocity(cond, x_t, t, mask)
    torch.testing.assert_close(stepped, clean, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="flow_prediction 'eps'.*velocity, sample"):
        TraceModelConfig(flow_prediction="eps")


@pytest.mark.parametrize("kind", ["mu0", "token-ar"])
def test_sampled_models_are_deterministic_for_a_seed(kind):
    samples = synthetic_samples()
    model = _model(kind, samples).eval()
    batch, _ = make_batch(samples, np.arange(4), np.zeros((1, 384), np.float32), model.normalizer)
    a = model.predict(batch, 2, torch.Generator().manual_seed(7), greedy=False)["uvz"]
    b = model.predict(batch, 2, torch.Generator().manual_seed(7), greedy=False)["uvz"]
    c = model.predict(batch, 2, torch.Generator().manual_seed(8), greedy=False)["uvz"]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_keypoints_are_permutation_equivariant():
    samples = synthetic_samples()
    model = _model("waypoint", samples).eval()
    samples.keypoint_mask[:] = True
    batch, _ = make_batch(samples, np.arange(3), np.zeros((1, 384), np.float32), model.normalizer)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    permuted = type(batch)(**{k: (v[:, perm] if k in ("current", "history", "history_valid", "keypoint_mask") else v)
                              for k, v in batch.__dict__.items()})
    torch.testing.assert_close(model.predict(batch)["uvz"][:, :, perm], model.predict(permuted)["uvz"],
                               atol=1e-5, rtol=1e-5)


def test_relative_layer_is_equivariant_ignores_padding_and_freezes_to_the_same_futures():
    """With ``relative_layer`` keypoints still commute, a padded keypoint's position changes nothing, the layer
    trains, and frozen graphs (TorchScript exact, ONNX Runtime to rounding) predict what the eager model does."""
    samples = synthetic_samples()
    samples.keypoint_mask[:] = True
    model = _model("mu0", samples, relative_layer=True).eval()
    batch, _ = make_batch(samples, np.arange(3), np.zeros((1, 384), np.float32), model.normalizer)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    permuted = type(batch)(**{k: (v[:, perm] if k in ("current", "history", "history_valid", "keypoint_mask") else v)
                              for k, v in batch.__dict__.items()})
    torch.testing.assert_close(model.encoder(batch)[:, perm], model.encoder(permuted), atol=1e-5, rtol=1e-5)
    mask = batch.keypoint_mask.clone()
    mask[:, -1] = False
    moved = batch.current.clone()
    moved[:, -1] += 0.5
    padded = type(batch)(**{**batch.__dict__, "keypoint_mask": mask})
    padded_moved = type(batch)(**{**batch.__dict__, "keypoint_mask": mask, "current": moved})
    torch.testing.assert_close(model.encoder(padded)[:, :-1], model.encoder(padded_moved)[:, :-1])
    assert not torch.allclose(model.encoder(batch)[:, 0], model.encoder(padded)[:, 0])  # it does read the others
    model.train()
    assert torch.isfinite(_loss(model, samples, np.arange(4))["loss"])
    model.eval()
    for runtime in ("torchscript", "onnxruntime"):
        frozen = _model("mu0", samples, relative_layer=True)
        frozen.load_state_dict(model.state_dict())
        frozen.freeze(runtime)
        want = model.predict(batch, 2, torch.Generator().manual_seed(0))["uvz"]
        got = frozen.predict(batch, 2, torch.Generator().manual_seed(0))["uvz"]
        if runtime == "torchscript":
            assert torch.equal(want, got)
        else:
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_point_feature_dropout_hides_the_chosen_keypoints_image_features():
    """Hiding every keypoint's sampled features is the same as zero feature maps (the global image tokens stay);
    hiding one changes what the model says about it; both dropout settings are range-checked."""
    samples = synthetic_samples()
    samples.rgb_map[:] = np.random.default_rng(1).normal(size=samples.rgb_map.shape)
    model = _model("mu0", samples, point_feature_dropout=0.3).eval()
    batch, _ = make_batch(samples, np.arange(2), np.zeros((1, 384), np.float32), model.normalizer)
    every = torch.ones(batch.current.shape[:2], dtype=torch.bool)
    blank = type(batch)(**{**batch.__dict__, "rgb_map": torch.zeros_like(batch.rgb_map),
                           "depth_map": torch.zeros_like(batch.depth_map)})
    torch.testing.assert_close(model.encoder(batch, every), model.encoder(blank))
    first = torch.zeros_like(every)
    first[:, 0] = True
    assert not torch.allclose(model.encoder(batch, first)[:, 0], model.encoder(batch)[:, 0])
    model.train()
    assert torch.isfinite(_loss(model, samples, np.arange(4))["loss"])
    category = torch.tensor([[0, 1, 2, 1]]).expand(500, -1)  # object, gripper, contact, gripper
    robot_only = _model("mu0", samples, point_feature_dropout=0.5, point_feature_dropout_categories=("gripper",))
    hide = robot_only.hidden_points(category.shape, category)
    assert not hide[:, [0, 2]].any() and 0.4 < hide[:, [1, 3]].float().mean() < 0.6
    assert model.hidden_points(category.shape, category)[:, 0].any()  # every category by default
    with pytest.raises(ValueError, match="unknown point_feature_dropout_categories \\['hand'\\]"):
        TraceModelConfig(point_feature_dropout_categories=("hand",))
    for name in ("point_feature_dropout", "history_dropout"):
        with pytest.raises(ValueError, match=f"{name} must be in"):
            TraceModelConfig(**{name: 1.0})


def test_category_loss_weights_weight_each_keypoint_by_its_category():
    """The loss is a weighted mean over keypoints: one weight for every category leaves it unchanged, only weight
    ratios matter, and weights go to the categories named; bad names and weights are refused by name."""
    samples = synthetic_samples()
    samples.category[:, ::2] = 1  # every other keypoint on the gripper
    rows = np.arange(8)
    plain = _loss(_model("waypoint", samples), samples, rows)["loss"]
    same = _loss(_model("waypoint", samples, category_loss_weights={"object": 5.0, "gripper": 5.0}), samples, rows)
    torch.testing.assert_close(same["loss"], plain)
    up = _loss(_model("waypoint", samples, category_loss_weights={"gripper": 1000.0}), samples, rows)["loss"]
    down = _loss(_model("waypoint", samples, category_loss_weights={"object": 0.001}), samples, rows)["loss"]
    torch.testing.assert_close(up, down)
    assert not torch.isclose(up, plain)
    model = _model("mu0", samples, category_loss_weights={"gripper": 4.0, "contact": 2.0})
    category = torch.tensor([[0, 1, 2, 3]])
    torch.testing.assert_close(model.point_loss_weights(torch.ones(1, 4, dtype=torch.bool), category),
                               torch.tensor([[1.0, 4.0, 2.0, 1.0]]))
    assert torch.isfinite(_loss(model, samples, rows)["loss"])
    with pytest.raises(ValueError, match="category_loss_weights .*'hand'"):
        TraceModelConfig(category_loss_weights={"hand": 2.0})
    with pytest.raises(ValueError, match="weights > 0"):
        TraceModelConfig(category_loss_weights={"gripper": 0.0})
    override = apply_overrides(PretrainConfig(), ['--model.category_loss_weights={"gripper": 4}'])
    assert override.model.category_loss_weights == {"gripper": 4}


def test_unpadded_batches_skip_the_attention_mask_with_the_same_result(monkeypatch):
    """Every query point valid: attention runs without a padding mask (torch's fused kernel, the fast path) and
    predicts what the masked path predicts."""
    from mu0sim.model import networks

    samples = synthetic_samples()
    samples.keypoint_mask[:] = True
    model = _model("mu0", samples).eval()
    batch, _ = make_batch(samples, np.arange(4), np.zeros((1, 384), np.float32), model.normalizer)
    fast = model.predict(batch, 1, torch.Generator().manual_seed(0))["uvz"]
    monkeypatch.setattr(networks, "_padding_or_none", lambda pad: pad)  # always pass the (all-False) mask
    masked = model.predict(batch, 1, torch.Generator().manual_seed(0))["uvz"]
    torch.testing.assert_close(fast, masked, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padded, prediction", [(False, "velocity"), (True, "velocity"), (False, "sample")])
def test_frozen_inference_graphs_predict_exactly_what_the_eager_model_does(padded, prediction):
    """A frozen μ0 runs its encoder and velocity as traced graphs (unpadded queries) or eagerly (padded ones);
    either way the same kernels in the same order: bit-identical futures, for any batch size."""
    samples = synthetic_samples()
    samples.keypoint_mask[:] = True
    if padded:
        samples.keypoint_mask[:, 2] = False  # a gap: make_batch trims only trailing padding
    eager = _model("mu0", samples, flow_prediction=prediction).eval()
    frozen = _model("mu0", samples, flow_prediction=prediction)
    frozen.load_state_dict(eager.state_dict())
    frozen.freeze()
    for rows in (np.arange(1), np.arange(3), np.arange(1)):  # a new shape traces a new graph; a known one reuses it
        batch, _ = make_batch(samples, rows, np.zeros((1, 384), np.float32), eager.normalizer)
        want = eager.predict(batch, 2, torch.Generator().manual_seed(0))
        got = frozen.predict(batch, 2, torch.Generator().manual_seed(0))
        for key in ("uvz", "controls", "valid_prob"):
            assert torch.equal(want[key], got[key]), key
    assert [len(g) for g in frozen._graphs] == ([0, 0] if padded else [2, 2])
    with pytest.raises(RuntimeError, match="frozen for inference"):
        frozen.train()


@pytest.mark.parametrize("runtime", ["torchscript", "onnxruntime"])
def test_inference_graphs_keep_the_most_recent_shapes_and_match_the_backbone(runtime):
    from mu0sim.model.backbone import FrozenVisionEncoder
    from mu0sim.model.inference_graph import InferenceGraphs

    linear = torch.nn.Linear(4, 2)
    graphs = InferenceGraphs(linear, lambda module, x: module(x).relu(), max_graphs=2, runtime=runtime)
    for n in (1, 2, 3, 2):
        x = torch.randn(n, 4)
        torch.testing.assert_close(graphs(x), linear(x).relu().detach(), rtol=0, atol=0 if runtime ==
                                   "torchscript" else 1e-6)
    assert len(graphs) == 2
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    fast, slow = FrozenVisionEncoder(runtime), FrozenVisionEncoder("eager")
    for a, b in zip(fast.encode_rgb(rgb).__dict__.values(), slow.encode_rgb(rgb).__dict__.values()):
        if runtime == "torchscript":  # the same kernels in the same order
            assert torch.equal(a, b)
        else:  # other kernels, other float rounding
            assert torch.linalg.norm(a - b) <= 1e-5 * torch.linalg.norm(b)


@pytest.mark.parametrize("prediction", ["velocity", "sample"])
def test_onnxruntime_graphs_predict_what_the_eager_model_does_up_to_float_rounding(prediction):
    """ONNX Runtime runs the same exported trace with its own kernels: the same futures to ~1e-6, one session per
    input shape, and the integration's unused padding mask (dropped by the exporter) is not fed."""
    samples = synthetic_samples()
    samples.keypoint_mask[:] = True
    eager = _model("mu0", samples, flow_prediction=prediction).eval()
    frozen = _model("mu0", samples, flow_prediction=prediction)
    frozen.load_state_dict(eager.state_dict())
    frozen.freeze("onnxruntime")
    for rows in (np.arange(1), np.arange(3), np.arange(1)):
        batch, _ = make_batch(samples, rows, np.zeros((1, 384), np.float32), eager.normalizer)
        want = eager.predict(batch, 2, torch.Generator().manual_seed(0))
        got = frozen.predict(batch, 2, torch.Generator().manual_seed(0))
        for key in ("uvz", "controls", "valid_prob"):
            torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-5, msg=key)
    assert [len(g) for g in frozen._graphs] == [2, 2]
    assert all(g.runtime == "onnxruntime" for g in frozen._graphs)


def test_an_unknown_runtime_is_refused_with_the_valid_choices():
    from mu0sim.model.backbone import FrozenVisionEncoder

    samples = synthetic_samples()
    with pytest.raises(ValueError, match="unknown inference runtime 'tensorrt'.*eager, torchscript, onnxruntime"):
        _model("mu0", samples).freeze("tensorrt")
    with pytest.raises(ValueError, match="unknown inference runtime 'gpu'"):
        FrozenVisionEncoder("gpu")


def test_token_quantization_round_trips_within_half_a_bin():
    samples = synthetic_samples()
    head = _model("token-ar", samples).head
    x = torch.linspace(-head.limit, head.limit, 101)[:, None].expand(-1, 3)
    err = (head.dequantize(head.quantize(x)) - x).abs().max()
    assert err <= head.limit / (head.bins - 1) + 1e-6


def test_save_and_load_round_trip_and_mismatch_errors(tmp_path):
    samples = synthetic_samples()
    model = _model("mu0", samples).eval()
    save_trace_model(model, tmp_path / "ckpt", {"note": "test"})
    loaded, meta = load_trace_model(tmp_path / "ckpt")
    assert meta["note"] == "test" and not loaded.training
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    cfg["model"]["dim"] = 48
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="do not match config.json"):
        load_trace_model(tmp_path / "ckpt")
    cfg["model"]["bogus"] = 1
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unknown keys"):
        load_trace_model(tmp_path / "ckpt")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_trace_model(tmp_path)
    with pytest.raises(ValueError, match="valid kinds"):
        TraceModelConfig(kind="diffusion")


def test_split_holds_out_a_robot_and_the_last_demos():
    parts = [synthetic_samples(n=20, seed=s) for s in range(2)]
    parts[1].robots = ["Kinova3"]
    split = split_of(TraceSamples.concat(parts), "Kinova3", eval_fraction=0.2, val_fraction=0.1)
    assert (split[20:] == "held_out_robot").all()
    assert list(split[:20]).count("seen_robots") == 4 and list(split[:20]).count("val") == 2
    assert (split[16:20] == "seen_robots").all()  # the last demos, not a random subset


def test_metrics_on_known_cases():
    target = np.zeros((2, 4, 2))
    target[:, :, 0] = np.arange(4)
    pred = target.copy()
    pred[1, :, 1] = 1.0  # constant 1 px offset
    valid = np.ones((2, 4), bool)
    np.testing.assert_allclose(metrics.ade(pred, target, valid), [0, 1])
    np.testing.assert_allclose(metrics.fde(pred, target, valid), [0, 1])
    np.testing.assert_allclose(metrics.frechet(pred, target, valid), [0, 1])
    np.testing.assert_allclose(metrics.dtw(pred, target, valid), [0, 1])
    # a time shift costs ADE but little DTW
    shifted = np.concatenate([target[:, :1], target[:, :-1]], 1)
    assert metrics.dtw(shifted[:1], target[:1], valid[:1])[0] < metrics.ade(shifted[:1], target[:1], valid[:1])[0]
    # invalid steps are ignored; FDE uses the last valid one
    valid2 = valid.copy()
    valid2[1, 2:] = False
    pred2 = pred.copy()
    pred2[1, 2:] = 100.0
    assert metrics.ade(pred2, target, valid2)[1] == pytest.approx(1.0)
    assert metrics.fde(pred2, target, valid2)[1] == pytest.approx(1.0)
    assert np.isnan(metrics.ade(pred, target, np.zeros_like(valid))).all()
    samples = np.stack([pred, target])
    np.testing.assert_allclose(metrics.min_ade(samples, target, valid), [0, 0])


def test_dotted_overrides_reach_nested_settings_and_reject_unknown_ones():
    cfg = apply_overrides(PretrainConfig(), ["--model.num_control=7", "--samples.stride=2", "--lr=3e-4",
                                             "--holdout_robot=none", "--models=mu0,waypoint"])
    assert cfg.model.num_control == 7 and cfg.samples.stride == 2 and cfg.lr == 3e-4
    assert cfg.holdout_robot is None and cfg.models == ("mu0", "waypoint")
    with pytest.raises(ValueError, match="valid settings here"):
        apply_overrides(cfg, ["--model.dims=3"])
    with pytest.raises(ValueError, match="num_control must be one of"):
        apply_overrides(cfg, ["--model.num_control=5"])
    with pytest.raises(ValueError, match="not a valid int"):
        apply_overrides(cfg, ["--steps=many"])
