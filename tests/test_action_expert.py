"""Action experts: features per variant, chunk targets, behaviour cloning end to end, checkpoints and refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mu0sim.cli import main
from mu0sim.policies.action_expert import (LABEL_SLOTS, MOTION_DIM, MOTION_SLICE, POINT_DIM, TRACE_STEPS, VARIANTS,
                                           ActionExpert, ActionExpertConfig, expert_env, label_one_hot,
                                           object_moments, point_features)
from mu0sim.policies.train_bc import TrainPolicyConfig, chunk_validity, next_actions, train_policy
from mu0sim.rollouts.closed_loop import run_episodes, summarize


def _obs(k: int = 5, n: int | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    lead = (k,) if n is None else (n, k)
    quat = rng.normal(size=(*lead[:-1], 4))
    return {"mu0_query_world": rng.normal(size=(*lead, 3)), "mu0_query_uvz": rng.normal(size=(*lead, 3)),
            "mu0_traces": rng.normal(size=(*lead, 32, 3)), "mu0_traces_world": rng.normal(size=(*lead, 32, 3)),
            "mu0_query_label": rng.integers(-1, 5, size=lead).astype(np.float32),
            "robot0_eef_pos": rng.normal(size=(*lead[:-1], 3)),
            "robot0_eef_quat": quat / np.linalg.norm(quat, axis=-1, keepdims=True)}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_feeds_the_same_network_shape(variant):
    assert point_features(_obs(), variant).shape == (5, POINT_DIM)
    assert point_features(_obs(n=4), variant).shape == (4, 5, POINT_DIM)


def test_variants_differ_only_in_the_trace_inputs():
    obs = _obs()
    trace, flat, two_d = (point_features(obs, v) for v in ("trace", "no-trace", "trace-2d"))
    fixed = 9 + LABEL_SLOTS  # positions and labels are shared by every variant
    np.testing.assert_array_equal(trace[:, :fixed], flat[:, :fixed])
    assert not flat[:, fixed:].any()
    steps = np.array(TRACE_STEPS) - 1
    np.testing.assert_allclose(trace[:, fixed:].reshape(5, -1, 3), obs["mu0_traces_world"][:, steps])
    np.testing.assert_allclose(two_d[:, fixed:].reshape(5, -1, 3)[..., :2], obs["mu0_traces"][:, steps, :2])
    assert not two_d[:, fixed:].reshape(5, -1, 3)[..., 2].any()
    # the pretrained variants read what their unpooled counterparts read
    np.testing.assert_array_equal(point_features(obs, "trace-pretrained"), trace)
    np.testing.assert_array_equal(point_features(obs, "action-pretrained"), flat)


def test_query_point_labels_are_one_hot_and_unknown_is_zero():
    one_hot = label_one_hot(np.array([0, 1, 2, 3, 7, -1], np.float32))
    np.testing.assert_array_equal(one_hot, [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0],
                                            [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(point_features(_obs(), "trace")[:, 9:9 + LABEL_SLOTS],
                                  label_one_hot(_obs()["mu0_query_label"]))
    stale = {k: v for k, v in _obs().items() if k != "mu0_query_label"}  # features from before the labels
    with pytest.raises(KeyError, match="mu0_query_label"):
        point_features(stale, "trace")


def test_feature_caches_of_other_inputs_are_replayed(tmp_path):
    """A feature cache records the EXPERT_INPUTS it was made with; one made for other inputs does not count as
    cached (it is replayed and overwritten, never read as this version's features)."""
    from mu0sim.policies.action_expert import EXPERT_INPUTS
    from mu0sim.policies.train_bc import FEATURE_KEYS, _cache_covers, _from_cache, _write_cache

    rows = {k: np.zeros((4, 2), np.float32) for k in ("action_chunk", *FEATURE_KEYS)}
    rows["episode"] = np.array([0, 0, 1, 1])
    cache = tmp_path / "demo.bc-x-keypoints32.npz"
    _write_cache(cache, rows)
    assert _cache_covers(cache, {0, 1}) and not _cache_covers(cache, {0, 2})
    assert set(_from_cache(cache, {1})) == set(rows) and len(_from_cache(cache, {1})["episode"]) == 2
    np.savez(cache, **rows, inputs=np.array(EXPERT_INPUTS - 1))
    assert not _cache_covers(cache, {0, 1}) and _from_cache(cache, {0, 1}) is None


def test_a_cache_reads_back_only_the_keys_its_job_asked_for(tmp_path):
    """A plain cache written before pixel moments had a cache of their own also holds their key; reading it for a
    job without them drops that key, so it pools with other files' rows (the study's action-pretrained cells)."""
    from mu0sim.policies.trace_observation import PIXEL_MOMENTS_KEY, WRIST_POINT_KEYS
    from mu0sim.policies.train_bc import FEATURE_KEYS, _extend_cache, _from_cache, _write_cache

    rows = {k: np.zeros((4, 2), np.float32) for k in ("action_chunk", *FEATURE_KEYS, *WRIST_POINT_KEYS,
                                                      PIXEL_MOMENTS_KEY)}
    rows["episode"] = np.array([0, 0, 1, 1])
    cache = tmp_path / "demo.bc-x-keypoints32-wp16.npz"
    _write_cache(cache, rows)
    assert set(_from_cache(cache, {0, 1}, WRIST_POINT_KEYS)) == set(rows) - {PIXEL_MOMENTS_KEY}
    assert set(_from_cache(cache, {0}, (*WRIST_POINT_KEYS, PIXEL_MOMENTS_KEY))) == set(rows)
    more = {k: v[:2] for k, v in rows.items() if k != PIXEL_MOMENTS_KEY} | {"episode": np.array([2, 2])}
    grown = _extend_cache(cache, more, WRIST_POINT_KEYS)  # a new demo, replayed without pixel moments
    assert set(grown) == set(more) and sorted(set(grown["episode"].tolist())) == [0, 1, 2]


def test_a_grown_dataset_replays_only_its_new_demos(tiny_mu0, tmp_path, monkeypatch):
    """Features of the first demos are kept when more are asked for: only the new demos replay, and the cache then
    holds what one replay of them all gives, in demo order."""
    import shutil

    from mu0sim.model import Mu0
    from mu0sim.policies import train_bc

    ckpt, data = tiny_mu0
    mu0, mu0_id = Mu0.from_pretrained(ckpt), train_bc.mu0_fingerprint(ckpt)
    grown, whole = (shutil.copy(data[0], tmp_path / f"{name}.hdf5") for name in ("grown", "whole"))
    replayed: list[int] = []
    replay = train_bc._replay_rows
    monkeypatch.setattr(train_bc, "_replay_rows", lambda ds, demos, *a, **k: (
        replayed.extend(d[0] for d in demos), replay(ds, demos, *a, **k))[1])
    args = (mu0, mu0_id, "keypoints", 16)
    train_bc.replay_features(grown, *args, episodes=1, progress=False, every=2)
    assert replayed == [0]
    more = train_bc.replay_features(grown, *args, episodes=3, progress=False, every=2)
    assert replayed == [0, 1, 2]
    assert train_bc.replay_features(grown, *args, episodes=2, progress=False, every=2)["episode"].max() == 1
    assert replayed == [0, 1, 2]  # covered: nothing replayed
    once = train_bc.replay_features(whole, *args, episodes=3, progress=False, every=2)
    assert set(more) == set(once)
    for key in once:
        np.testing.assert_array_equal(more[key], once[key], err_msg=key)


def test_points_are_also_seen_from_the_gripper():
    """A point 2 cm along the gripper's x axis reads (0.02, 0, 0) in the gripper frame, whatever the gripper yaw."""
    yaw = 0.7
    quat = np.array([0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)])  # xyzw, a yaw about world z
    eef = np.array([0.1, -0.2, 0.9])
    point = eef + 0.02 * np.array([np.cos(yaw), np.sin(yaw), 0.0])
    obs = {**_obs(k=1), "mu0_query_world": point[None], "robot0_eef_pos": eef, "robot0_eef_quat": quat}
    np.testing.assert_allclose(point_features(obs, "trace")[0, 6:9], [0.02, 0.0, 0.0], atol=1e-6)


def test_relative_inputs_hide_the_absolute_positions_only():
    """relative: the points' world and image positions and the eef position read zero; every position relative
    to the gripper, the labels and the traces are what they were."""
    from mu0sim.policies.action_expert import proprio_features, wrist_point_features

    obs = {**_obs(), "robot0_gripper_width": np.array([0.04]), "wrist_query_world": np.ones((4, 3)),
           "wrist_query_label": np.full(4, 2.0)}
    plain, relative = point_features(obs, "trace", True), point_features(obs, "trace", True, relative=True)
    assert not relative[:, :6].any() and plain[:, :6].any()
    np.testing.assert_array_equal(relative[:, 6:], plain[:, 6:])
    wrist, wrist_relative = wrist_point_features(obs), wrist_point_features(obs, relative=True)
    assert not wrist_relative[:, :3].any()
    np.testing.assert_array_equal(wrist_relative[:, 3:], wrist[:, 3:])
    proprio, proprio_relative = proprio_features(obs), proprio_features(obs, relative=True)
    assert not proprio_relative[:3].any()
    np.testing.assert_array_equal(proprio_relative[3:], proprio[3:])


@pytest.mark.parametrize("traced_points, keeps", [("objects", lambda label: label >= 2),
                                                   ("gripper", lambda label: label == 1)])
def test_traced_points_keep_the_chosen_points_traces_only(traced_points, keeps):
    """traced_points: the chosen points' trace columns are the full expert's, every other point's read zero (the
    trace-less input); positions and labels are untouched."""
    obs = {**_obs(k=12), "mu0_query_label": np.array([-1, 0, 1, 1, 2, 2, 3, 4, 1, 2, 0, 3], np.float32)}
    full, picked = point_features(obs, "trace"), point_features(obs, "trace", traced_points=traced_points)
    keep = keeps(obs["mu0_query_label"])
    assert keep.any() and (~keep).any()
    np.testing.assert_array_equal(picked[keep], full[keep])
    assert not picked[~keep][:, MOTION_SLICE].any() and full[~keep][:, MOTION_SLICE].all()
    np.testing.assert_array_equal(picked[:, :MOTION_SLICE.start], full[:, :MOTION_SLICE.start])
    with pytest.raises(ValueError, match="unknown traced_points 'robot'; valid choices: all, objects, gripper"):
        ActionExpertConfig(traced_points="robot")
    with pytest.raises(ValueError, match="traced_points picks whose 3D traces"):
        ActionExpertConfig(variant="no-trace", traced_points="objects")


def test_world_offsets_append_the_point_minus_the_gripper():
    """world_offsets: three more features per point, the point minus the gripper in world axes (whatever the yaw);
    everything before them is the default layout."""
    obs = _obs()
    plain, extended = point_features(obs, "trace"), point_features(obs, "trace", world_offsets=True)
    assert extended.shape == (5, POINT_DIM + 3)
    np.testing.assert_array_equal(extended[:, :POINT_DIM], plain)
    np.testing.assert_allclose(extended[:, POINT_DIM:], obs["mu0_query_world"] - obs["robot0_eef_pos"], rtol=1e-6)


def test_relative_motion_is_each_trace_minus_the_grippers_mean():
    """relative_motion: MOTION_DIM more features per point, its trace minus the mean trace of the real query points
    on the robot (label 1; a padded one does not count), after the world offsets; zeros for a gripper-less frame."""
    obs = {**_obs(k=6), "mu0_query_label": np.array([0, 1, 1, 2, 1, 3], np.float32),
           "mu0_query_mask": np.array([1, 1, 1, 1, 0, 1], np.float32)}
    plain = point_features(obs, "trace", world_offsets=True)
    extended = point_features(obs, "trace", world_offsets=True, relative_motion=True)
    assert extended.shape == (6, POINT_DIM + 3 + MOTION_DIM)
    np.testing.assert_array_equal(extended[:, :POINT_DIM + 3], plain)
    motion = plain[:, MOTION_SLICE]
    np.testing.assert_allclose(extended[:, POINT_DIM + 3:], motion - motion[1:3].mean(0), rtol=1e-5, atol=1e-6)
    no_gripper = {**obs, "mu0_query_label": np.array([0, 2, 2, 2, 1, 3], np.float32)}
    np.testing.assert_allclose(point_features(no_gripper, "trace", relative_motion=True)[:, POINT_DIM:],
                               point_features(no_gripper, "trace")[:, MOTION_SLICE], rtol=1e-6)
    with pytest.raises(ValueError, match="relative_motion adds to the 3D traces.*got variant 'no-trace'"):
        ActionExpertConfig(variant="no-trace", relative_motion=True)
    for exact_or_dropped in ({"trace_dropout": 0.5}, {"input_noise": 0.2, "noise_traces": False}):
        with pytest.raises(ValueError, match="cannot be used with relative_motion"):
            TrainPolicyConfig(data=["x.hdf5"], mu0="m", out="y", relative_motion=True, **exact_or_dropped).check()


def _square(yaw_rad: float, centre_xy=(0.0, 0.0), half_m: float = 0.02) -> np.ndarray:
    """(8, 3) corners and edge midpoints of a square seen from above, turned by ``yaw_rad``."""
    unit = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1], [1, 0], [0, 1], [-1, 0], [0, -1]], float) * half_m
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    xy = unit @ np.array([[c, -s], [s, c]]).T + centre_xy
    return np.concatenate([xy, np.zeros((8, 1))], 1)


def test_object_moments_read_a_square_objects_yaw_wherever_it_is():
    """arg(m_4) / 4 follows a square's yaw (mod 90 degrees) in the gripper's frame, whatever its position and
    whatever the other object's points; a square has no 2-fold moment; an object without points reads zeros."""
    other = _square(0.3, centre_xy=(0.08, -0.05))
    readings = []
    for yaw_deg in (0.0, 10.0, 25.0, 40.0):
        points = np.concatenate([_square(np.radians(yaw_deg), centre_xy=(0.01, 0.02)), other, np.zeros((2, 3))])
        labels = np.array([2] * 8 + [3] * 8 + [4, 4])
        mask = np.array([1] * 16 + [0, 0])  # object slot 4: padding only
        m = object_moments(points[None], labels[None], mask[None])[0]
        assert m.shape == (3, 4)
        np.testing.assert_allclose(m[0, :2], 0.0, atol=1e-6)
        assert np.hypot(m[0, 2], m[0, 3]) > 0.5  # corners and edge midpoints pull arg(m_4) apart by 180 degrees
        np.testing.assert_array_equal(m[2], 0.0)
        readings.append(np.degrees(np.arctan2(m[0, 3], m[0, 2])) / 4)
        alone = object_moments(_square(np.radians(yaw_deg), centre_xy=(-0.03, 0.0))[None], np.full((1, 8), 2),
                               np.ones((1, 8)))[0]
        np.testing.assert_allclose(alone[0], m[0], atol=1e-5)
    turned = (np.diff(readings) + 45.0) % 90.0 - 45.0  # a square's yaw is defined mod 90 degrees
    np.testing.assert_allclose(turned, [10.0, 15.0, 15.0], atol=1e-3)
    long_bar = np.array([[x, 0.0, 0.0] for x in np.linspace(-0.05, 0.05, 9)])  # elongated along x: m_2 = 1
    np.testing.assert_allclose(object_moments(long_bar[None], np.full((1, 9), 2), np.ones((1, 9)))[0, 0, :2],
                               [1.0, 0.0], atol=1e-6)


def test_action_chunks_stop_at_episode_ends():
    actions = np.arange(6, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(next_actions(actions, 0, 4)[:, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(next_actions(actions, 4, 4)[:, 0], [4, 5, 5, 5])  # padded with the last action
    valid = chunk_validity(np.array([0, 4, 5]), np.array([6, 6, 6]), 4)
    np.testing.assert_array_equal(valid, [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="valid variants"):
        ActionExpertConfig(variant="oracle")
    with pytest.raises(ValueError, match="valid heads"):
        ActionExpertConfig(head="diffusion")
    with pytest.raises(ValueError, match="execute"):
        ActionExpertConfig(chunk=8, execute=9)
    # training settings that cannot train are refused before any data is read (no file exists here)
    unread = {"data": ["unread.hdf5"], "mu0": "unread", "out": "unwritten"}
    with pytest.raises(ValueError, match="trace_dropout must be in"):
        train_policy(TrainPolicyConfig(**unread, trace_dropout=1.0))
    with pytest.raises(ValueError, match="wrist_moments .* needs wrist_points > 0"):
        train_policy(TrainPolicyConfig(**unread, wrist_moments=True))
    with pytest.raises(ValueError, match="chunk must be <= 32"):
        train_policy(TrainPolicyConfig(**unread, chunk=64))
    with pytest.raises(ValueError, match="valid poolings"):
        train_policy(TrainPolicyConfig(**unread, pooling="max"))
    with pytest.raises(ValueError, match="ensemble must be >= 1"):
        train_policy(TrainPolicyConfig(**unread, ensemble=0))
    with pytest.raises(ValueError, match="input_noise is a standard deviation .* got -0.1"):
        train_policy(TrainPolicyConfig(**unread, input_noise=-0.1))
    with pytest.raises(ValueError, match="unknown train_traces 'recorded'; valid sources: mu0, oracle"):
        train_policy(TrainPolicyConfig(**unread, train_traces="recorded"))
    with pytest.raises(ValueError, match="train_traces replaces .* got variant 'no-trace'"):
        train_policy(TrainPolicyConfig(**unread, variant="no-trace", train_traces="oracle"))
    with pytest.raises(ValueError, match="skip_demos counts demos to leave out: must be >= 0, got -1"):
        train_policy(TrainPolicyConfig(**unread, skip_demos=-1))


def test_replay_features_skips_the_first_demos(tiny_mu0, tmp_path):
    import shutil

    from mu0sim.model import Mu0
    from mu0sim.policies.train_bc import mu0_fingerprint, replay_features

    ckpt, data = tiny_mu0
    dataset = shutil.copy(data[0], tmp_path / data[0].name)  # a cache of its own
    rows = replay_features(dataset, Mu0.from_pretrained(ckpt), mu0_fingerprint(ckpt), "keypoints", 16, episodes=1,
                           progress=False, every=4, skip=1)
    assert sorted(set(rows["episode"])) == [1]


def test_skip_demos_trains_on_later_demos_and_shares_the_cache():
    """``skip_demos`` moves a job's demo range; jobs on one cache merge into one replay from the file's start to
    the furthest demo asked (cached demos are not replayed again)."""
    from pathlib import Path

    from mu0sim.policies.train_bc import _demo_range, _one_job_per_cache, feature_jobs

    config = TrainPolicyConfig(data=["d.hdf5"], mu0="m", out="o", episodes=10, skip_demos=30)
    (job,) = feature_jobs(config)
    assert (job.skip, job.episodes) == (30, 10)
    first = feature_jobs(TrainPolicyConfig(data=["d.hdf5"], mu0="m", out="o", episodes=20))
    (merged,) = _one_job_per_cache([job, *first])
    assert (merged.skip, merged.episodes) == (0, 40)
    names = [f"demo_{i}" for i in range(50)]
    assert _demo_range(names, 10, 30, Path("d.hdf5")) == names[30:40]
    assert _demo_range(names, None, 0, Path("d.hdf5")) == names
    with pytest.raises(ValueError, match="holds 50 demos, too few for 10 demos after skipping 45"):
        _demo_range(names, 10, 45, Path("d.hdf5"))
    with pytest.raises(ValueError, match="holds 50 demos, too few for 500 demos .*at most 50"):
        _demo_range(names, 500, 0, Path("d.hdf5"))  # never silently fewer demos than asked


def test_train_traces_picks_the_feature_cache_a_trace_expert_trains_on():
    """A trace expert trained on the demos' recorded futures reads gt-trace's cache (the same rows but the traces),
    and still acts on μ0's forecast: its expert config is the trace variant's."""
    from mu0sim.policies.train_bc import feature_jobs

    base = {"data": ["d.hdf5"], "mu0": "m", "out": "o"}
    assert [j.traces for j in feature_jobs(TrainPolicyConfig(**base))] == ["mu0"]
    assert [j.traces for j in feature_jobs(TrainPolicyConfig(**base, variant="gt-trace"))] == ["oracle"]
    recorded = TrainPolicyConfig(**base, train_traces="oracle")
    assert [j.traces for j in feature_jobs(recorded)] == ["oracle"]
    assert recorded.expert_config(robot="Panda", task="Lift", mu0_id="x").variant == "trace"


def test_input_noise_perturbs_varying_measurements_only():
    """A no-trace expert's constant trace columns and every label one-hot stay exact; what varies gets noise."""
    import torch

    from mu0sim.policies.action_expert import MOTION_SLICE, POINT_DIM, POINT_LABEL_SLICE, WRIST_LABEL_SLICE, \
        WRIST_POINT_DIM
    from mu0sim.policies.train_bc import noise_columns

    gen = torch.Generator().manual_seed(0)
    points = torch.randn(40, 6, POINT_DIM, generator=gen)
    points[..., MOTION_SLICE] = 0.0  # no-trace: zeros, normalized
    points[..., POINT_LABEL_SLICE] = (torch.rand(40, 6, 5, generator=gen) > 0.5).float()
    wrist_points = torch.randn(40, 4, WRIST_POINT_DIM, generator=gen)
    proprio = torch.randn(40, 9, generator=gen)
    proprio[:, 8] = 0.0  # a column that never moves in training (a gripper clock never started)
    masks = noise_columns({"points": points, "proprio": proprio, "wrist_points": wrist_points}, np.arange(30))
    assert set(masks) == {"points", "proprio", "wrist_points"}
    noisy_points = masks["points"].bool()
    assert not noisy_points[MOTION_SLICE].any() and not noisy_points[POINT_LABEL_SLICE].any()
    assert noisy_points[:9].all()  # world, uvz, in-gripper positions
    assert not masks["wrist_points"].bool()[WRIST_LABEL_SLICE].any() and masks["wrist_points"].bool()[:6].all()
    assert masks["proprio"].tolist() == [1.0] * 8 + [0.0]
    points[..., MOTION_SLICE] = torch.randn(40, 6, MOTION_SLICE.stop - MOTION_SLICE.start, generator=gen)  # trace
    assert noise_columns({"points": points}, np.arange(30))["points"].bool()[MOTION_SLICE].all()
    scene_only = noise_columns({"points": points}, np.arange(30), traces=False)["points"].bool()
    assert not scene_only[MOTION_SLICE].any() and scene_only[:9].all()


@pytest.mark.parametrize("head, options", [("regression", {}),
                                           ("flow", {"trace_skip": True, "trace_dropout": 0.5,
                                                     "grip_clock": True, "input_noise": 0.2,
                                                     "relative_inputs": True}),
                                           ("regression", {"forecast_only": True, "image_feature": False,
                                                           "wrist_features": False, "relative_inputs": True})])
def test_behaviour_cloning_end_to_end_and_checkpoint_refusals(tiny_mu0, tmp_path, head, options):
    ckpt, data = tiny_mu0
    out = tmp_path / "policy"
    summary = train_policy(TrainPolicyConfig(data=[str(data[0])], mu0=str(ckpt), out=str(out), head=head, steps=20,
                                             batch_size=16, num_points=16, **options), progress=False)
    assert summary["robot"] == "Panda" and summary["samples"] > 50 and np.isfinite(summary["val_loss"])
    policy = ActionExpert.from_pretrained(out, robot="Panda")
    assert policy.config.trace_skip == options.get("trace_skip", False)
    assert policy.config.grip_clock == options.get("grip_clock", False)
    outcomes = run_episodes(out, ckpt, "Lift", "Panda", seeds=[100], progress=False)
    assert len(outcomes) == 1 and outcomes[0].length > 0
    assert summarize(outcomes)["episodes"] == 1
    env, _ = expert_env(out, ckpt, "Lift")  # the wrist view's cells are encoded only for an expert that reads them
    assert ("wrist_tokens" in env.observation_space.spaces) == options.get("wrist_features", True)
    env.close()
    policy.reset()
    with pytest.raises(ValueError, match="trained for robot 'Panda'"):
        ActionExpert.from_pretrained(out, robot="Sawyer")
    with pytest.raises(ValueError, match="traces of μ0"):
        ActionExpert.from_pretrained(out, mu0_id="0123456789ab")
    with pytest.raises(FileNotFoundError, match="not an action-expert checkpoint"):
        ActionExpert.from_pretrained(tmp_path)
    meta = json.loads((out / "config.json").read_text())
    del meta["policy"]["inputs"]  # a checkpoint from before query-point labels
    (out / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="expert inputs version 1.*retrain"):
        ActionExpert.from_pretrained(out)


def test_interrupted_training_resumes_to_the_uninterrupted_result(tiny_mu0, tmp_path, monkeypatch):
    """Ctrl-C in the fine-tune stage of action-pretrained (flow head: torch's generator is in play too) stops after
    that step with its state saved; the rerun continues it and ends with the weights of a run never interrupted."""
    import os
    import signal

    import torch
    from safetensors.torch import load_file

    ckpt, (panda, sawyer) = tiny_mu0

    def config(out):
        return TrainPolicyConfig(data=[str(panda)], mu0=str(ckpt), out=str(out), variant="action-pretrained",
                                 pretrain_data=[str(sawyer)], head="flow", steps=6, pretrain_steps=6, batch_size=16,
                                 num_points=16)

    train_policy(config(tmp_path / "whole"), progress=False)
    step, calls = torch.optim.AdamW.step, []

    def ctrl_c_at_the_ninth_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 9:  # the third fine-tune step
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", ctrl_c_at_the_ninth_step)
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train_policy(config(out), progress=False)
    saved = torch.load(out / ".resume" / "state.pt", weights_only=False)
    assert (saved["stage_index"], saved["step"]) == (1, 3) and not (out / "config.json").exists()
    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    train_policy(config(out), progress=False)
    whole, resumed = load_file(str(tmp_path / "whole" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert not (out / ".resume").exists()
    history = json.loads((out / "config.json").read_text())["training"]["history"]
    assert [h["stage"] for h in history] == ["pretrain", "fine-tune"]


def test_an_ensemble_is_its_seeds_single_experts_averaged_and_resumes_between_members(tiny_mu0, tmp_path,
                                                                                      monkeypatch):
    """``ensemble=2`` trains the single experts of seeds 0 and 1 (bit-identical weights) into one checkpoint and acts
    on the mean of their chunks; Ctrl-C while the second member trains keeps the first, and the rerun ends where an
    uninterrupted one does."""
    import os
    import signal

    import torch
    from safetensors.torch import load_file

    ckpt, (panda, _) = tiny_mu0

    def train(out, **options):
        train_policy(TrainPolicyConfig(data=[str(panda)], mu0=str(ckpt), out=str(tmp_path / out), steps=6,
                                       batch_size=16, num_points=16, **options), progress=False)
        return tmp_path / out

    singles = [train(f"seed{seed}", seed=seed) for seed in (0, 1)]
    ensemble = train("ensemble", ensemble=2)
    weights = load_file(str(ensemble / "model.safetensors"))
    for i, single in enumerate(singles):
        for key, value in load_file(str(single / "model.safetensors")).items():
            assert torch.equal(weights[f"{i}.{key}"], value)
    training = json.loads((ensemble / "config.json").read_text())["training"]
    assert [h["stage"] for h in training["history"]] == ["train, member 0", "train, member 1"]
    assert np.isfinite(training["val_loss"])

    env, expert = expert_env(ensemble, ckpt, "Lift")
    obs, _ = env.reset(seed=3)
    members = [ActionExpert.from_pretrained(single) for single in singles]
    with torch.no_grad():
        mean = torch.stack([m.net(m.net.context(*m.tensors(obs))) for m in members]).mean(0)
    np.testing.assert_allclose(expert.predict_action_chunk(obs), mean.view(16, 7).clamp(-1, 1).numpy(), atol=1e-6)
    env.close()
    with pytest.raises(ValueError, match="ensemble of 2 networks"):
        expert.net  # noqa: B018  (what PPO fine-tunes: one network)
    flow = train("flow", ensemble=2, head="flow")  # each member samples its own chunk; the mean is played
    assert np.isfinite(json.loads((flow / "config.json").read_text())["training"]["val_loss"])
    chunk = ActionExpert.from_pretrained(flow).predict_action_chunk(obs)
    assert chunk.shape == (16, 7) and np.abs(chunk).max() <= 1.0

    step, calls = torch.optim.AdamW.step, []

    def ctrl_c_in_the_second_member(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 9:  # the second member's third step
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", ctrl_c_in_the_second_member)
    with pytest.raises(KeyboardInterrupt):
        train("interrupted", ensemble=2)
    saved = torch.load(tmp_path / "interrupted" / ".resume" / "state.pt", weights_only=False)
    assert (saved["member"], saved["step"], len(saved["finished"])) == (1, 3, 1)
    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    resumed = load_file(str(train("interrupted", ensemble=2) / "model.safetensors"))
    assert resumed.keys() == weights.keys() and all(torch.equal(weights[k], resumed[k]) for k in weights)


def test_gt_trace_and_action_pretrained_variants_train_and_run(tiny_mu0, tmp_path):
    """gt-trace: oracle futures in training (the demo's recording) and in closed loop (the expert rolled forward);
    action-pretrained: pooled robots first, then the target robot alone."""
    ckpt, (panda, sawyer) = tiny_mu0
    gt = train_policy(TrainPolicyConfig(data=[str(panda)], mu0=str(ckpt), out=str(tmp_path / "gt"), variant="gt-trace",
                                        steps=10, batch_size=16, num_points=16), progress=False)
    assert np.isfinite(gt["val_loss"])
    cache = next(panda.parent.glob(f"{panda.stem}.bc-*-keypoints16-oracle-*.npz"))
    traces = np.load(cache)["mu0_traces_world"]
    assert np.abs(traces).max() > 0.01  # something moves more than 1 cm in the recorded futures
    assert run_episodes(tmp_path / "gt", ckpt, "Lift", "Panda", seeds=[100], progress=False)[0].length > 0
    # the closed-loop oracle rolls forward the expert the demos were collected with, options included
    meta_path = tmp_path / "gt" / "config.json"
    meta = json.loads(meta_path.read_text())
    assert meta["data_collection"]["expert"] == "LiftExpert"
    meta["data_collection"]["expert_options"]["hover_m"] = 0.07
    meta_path.write_text(json.dumps(meta))
    env, _ = expert_env(tmp_path / "gt", ckpt, "Lift")
    assert env.oracle._expert.hover_m == 0.07
    env.close()
    pre = train_policy(TrainPolicyConfig(data=[str(panda)], mu0=str(ckpt), out=str(tmp_path / "pre"),
                                         variant="action-pretrained", pretrain_data=[str(sawyer)], steps=10,
                                         pretrain_steps=10, batch_size=16, num_points=16), progress=False)
    assert pre["pretrain_samples"] > 0 and pre["steps"] == 20
    history = json.loads((tmp_path / "pre" / "config.json").read_text())["training"]["history"]
    assert [h["stage"] for h in history] == ["pretrain", "fine-tune"]
    # trace-pretrained: the same two stages, reading μ0's traces (the feature caches above serve it)
    trace_pre = train_policy(TrainPolicyConfig(data=[str(panda)], mu0=str(ckpt), out=str(tmp_path / "tpre"),
                                               variant="trace-pretrained", pretrain_data=[str(sawyer)], steps=10,
                                               pretrain_steps=10, batch_size=16, num_points=16), progress=False)
    assert trace_pre["pretrain_samples"] == pre["pretrain_samples"] and trace_pre["steps"] == 20
    for variant in ("action-pretrained", "trace-pretrained"):
        with pytest.raises(ValueError, match="pretrain_data"):
            train_policy(TrainPolicyConfig(data=[str(panda)], mu0=str(ckpt), out=str(tmp_path / "x"),
                                           variant=variant, steps=1), progress=False)
    with pytest.raises(ValueError, match="pretrain_data"):  # and no other variant pools robots
        train_policy(TrainPolicyConfig(data=[str(panda)], mu0=str(ckpt), out=str(tmp_path / "x"), variant="trace",
                                       pretrain_data=[str(sawyer)], steps=1), progress=False)


def test_wrist_points_train_run_and_keep_older_configs(tiny_mu0, tmp_path):
    """wrist_points: an expert that also reads task-object points of the wrist view trains (its own feature cache),
    acts closed loop through the wrapper built from its checkpoint, and refuses observations without them. A
    training config saved before the option existed still equals one at its default (finished experts and study
    cells are kept)."""
    from dataclasses import asdict

    from mu0sim.policies.train_bc import same_train_config

    ckpt, (panda, _) = tiny_mu0
    config = TrainPolicyConfig(data=[str(panda)], mu0=str(ckpt), out=str(tmp_path / "wp"), steps=10, batch_size=16,
                               num_points=16, wrist_points=8, pooling="per-label")
    assert np.isfinite(train_policy(config, progress=False)["val_loss"])
    cache = next(panda.parent.glob(f"{panda.stem}.bc-*-keypoints16-robot0_eye_in_hand-wp8.npz"))
    with np.load(cache) as rows:
        assert rows["wrist_query_world"].shape[1:] == (8, 3) and rows["wrist_query_mask"].sum() > 0
    policy = ActionExpert.from_pretrained(tmp_path / "wp")
    assert policy.config.wrist_points == 8 and policy.norm.wrist_point_mean.shape == (3 + 3 + LABEL_SLOTS,)
    assert policy.config.pooling == "per-label"
    env, _ = expert_env(tmp_path / "wp", ckpt, "Lift")
    obs, _ = env.reset(seed=100)
    assert policy.predict_action_chunk(obs).shape == (16, 7)
    env.close()
    with pytest.raises(ValueError, match="wrist_points=8"):
        policy.predict_action_chunk({k: v for k, v in obs.items() if not k.startswith("wrist_query")})
    saved = asdict(TrainPolicyConfig(data=["a.hdf5"], mu0="m", out="o"))
    del saved["wrist_points"]  # written by a mu0sim without the option
    assert same_train_config(saved, TrainPolicyConfig(data=["a.hdf5"], mu0="m", out="o"))
    assert not same_train_config(saved, TrainPolicyConfig(data=["a.hdf5"], mu0="m", out="o", wrist_points=8))
    with pytest.raises(ValueError, match="needs a wrist_camera"):
        ActionExpertConfig(wrist_points=4, wrist_camera=None)
    with pytest.raises(ValueError, match="needs wrist_points > 0"):
        ActionExpertConfig(wrist_moments=True)
    # wrist_moments: the objects' orientation from the same points, into the trunk, end to end
    moments = TrainPolicyConfig(**{**asdict(config), "out": str(tmp_path / "wpm"), "wrist_moments": True})
    assert np.isfinite(train_policy(moments, progress=False)["val_loss"])
    policy = ActionExpert.from_pretrained(tmp_path / "wpm")
    assert policy.config.wrist_moments and policy.predict_action_chunk(obs).shape == (16, 7)
    assert policy.tensors(obs)[7].shape == (1, 12)
    # moments_from="pixels": the same moments of every object pixel, which only its wrapper adds and its own cache
    # keeps (the points-only cache above is not touched)
    pixels = TrainPolicyConfig(**{**asdict(moments), "out": str(tmp_path / "wpp"), "moments_from": "pixels"})
    assert np.isfinite(train_policy(pixels, progress=False)["val_loss"])
    with pytest.raises(ValueError, match="pixel_moments=True"):
        ActionExpert.from_pretrained(tmp_path / "wpp").tensors(obs)
    env, policy = expert_env(tmp_path / "wpp", ckpt, "Lift")
    pixel_obs, _ = env.reset(seed=100)
    env.close()
    np.testing.assert_array_equal(policy.tensors(pixel_obs)[7][0].numpy(), pixel_obs["wrist_object_moments"])
    with np.load(cache) as rows:
        assert "wrist_object_moments" not in rows.files
    pixel_cache = next(panda.parent.glob(f"{panda.stem}.bc-*-keypoints16-robot0_eye_in_hand-wp8-pm.npz"))
    with np.load(pixel_cache) as rows:
        assert rows["wrist_object_moments"].shape[1:] == (12,)
    with pytest.raises(ValueError, match="valid sources: points, pixels"):
        ActionExpertConfig(wrist_points=4, wrist_moments=True, moments_from="depth")
    with pytest.raises(ValueError, match="needs wrist_moments=true"):
        ActionExpertConfig(wrist_points=4, moments_from="pixels")


def test_point_tokens_train_run_and_start_from_the_trace_expert(tiny_mu0, tmp_path):
    """point_tokens: μ0's per-keypoint tokens join the query points' embeddings through a gate that starts closed
    (a new expert's context is the same whatever the tokens say); such an expert trains on its own feature cache
    (the tokens kept as float16), acts through the wrapper its checkpoint rebuilds, and refuses observations
    without the tokens. Only variants that read μ0's forecast may read them."""
    import torch

    from mu0sim.policies.action_expert import ActionExpertNet
    from mu0sim.policies.train_bc import noise_columns

    torch.manual_seed(0)
    net = ActionExpertNet(ActionExpertConfig(point_tokens=24, wrist_camera=None)).eval()
    points, mask = torch.randn(2, 6, POINT_DIM), torch.ones(2, 6)
    inputs = (mask, torch.randn(2, 8), torch.randn(2, 1280))
    with torch.no_grad():
        a = net.context(points, *inputs, point_tokens=torch.randn(2, 6, 24))
        b = net.context(points, *inputs, point_tokens=torch.randn(2, 6, 24))
        net.point_token_gate.fill_(0.5)
        c = net.context(points, *inputs, point_tokens=torch.randn(2, 6, 24))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    ungated = ActionExpertNet(ActionExpertConfig(point_tokens=24, point_token_gate=False, wrist_camera=None)).eval()
    with torch.no_grad():  # an input like any other from the start
        assert not torch.allclose(ungated.context(points, *inputs, point_tokens=torch.randn(2, 6, 24)),
                                  ungated.context(points, *inputs, point_tokens=torch.randn(2, 6, 24)))
    with pytest.raises(ValueError, match=r"point tokens, \(6, 24\) per observation; got \(6, 16\)"):
        net.context(points, *inputs, point_tokens=torch.randn(2, 6, 16))
    with pytest.raises(ValueError, match="read by variants trace, trace-2d, trace-pretrained; .* 'no-trace'"):
        ActionExpertConfig(variant="no-trace", point_tokens=24)
    with pytest.raises(ValueError, match="point_token_gate=false .* needs point_tokens"):
        train_policy(TrainPolicyConfig(data=["unread.hdf5"], mu0="m", out="o", point_token_gate=False))
    # the tokens carry the forecast: input_noise leaves them exact when it leaves the traces exact
    tokens = torch.randn(40, 6, 24)
    assert noise_columns({"point_tokens": tokens}, np.arange(30))["point_tokens"].all()
    assert not noise_columns({"point_tokens": tokens}, np.arange(30), traces=False)["point_tokens"].any()

    ckpt, (panda, _) = tiny_mu0
    config = TrainPolicyConfig(data=[str(panda)], mu0=str(ckpt), out=str(tmp_path / "tok"), steps=10, batch_size=16,
                               num_points=16, point_tokens=True, trace_dropout=0.5)
    assert np.isfinite(train_policy(config, progress=False)["val_loss"])
    cache = next(panda.parent.glob(f"{panda.stem}.bc-*-keypoints16-robot0_eye_in_hand-tok.npz"))
    policy = ActionExpert.from_pretrained(tmp_path / "tok")
    width = policy.config.point_tokens
    with np.load(cache) as rows:
        assert rows["mu0_point_tokens"].shape[1:] == (16, width) and rows["mu0_point_tokens"].dtype == np.float16
    assert width > 0 and policy.norm.point_token_mean.shape == (width,)
    env, _ = expert_env(tmp_path / "tok", ckpt, "Lift")
    obs, _ = env.reset(seed=100)
    env.close()
    assert obs["mu0_point_tokens"].shape == (16, width) and policy.predict_action_chunk(obs).shape == (16, 7)
    with pytest.raises(ValueError, match="point_tokens=True"):
        policy.predict_action_chunk({k: v for k, v in obs.items() if k != "mu0_point_tokens"})


def test_query_history_is_trained_and_evaluated_alike(tiny_mu0, tmp_path):
    """``query_history``: the feature replays behind the expert give μ0 its query points' past (a cache of their
    own), and the closed-loop env ``expert_env`` builds queries μ0 the same way; only for keypoint queries of
    variants that act on μ0's forecast."""
    ckpt, (panda, _) = tiny_mu0
    config = TrainPolicyConfig(data=[str(panda)], mu0=str(ckpt), out=str(tmp_path / "hist"), steps=5, batch_size=8,
                               num_points=16, query_history=True)
    train_policy(config, progress=False)
    assert next(panda.parent.glob(f"{panda.stem}.bc-*-keypoints16-robot0_eye_in_hand-hist.npz"))
    env, _ = expert_env(tmp_path / "hist", ckpt, "Lift")
    assert env.query_history
    env.close()
    env, _ = expert_env(tmp_path / "hist", ckpt, "Lift", query_history=False)  # a probe's override
    assert not env.query_history
    env.close()
    for variant, query in (("no-trace", "keypoints"), ("trace", "grid")):
        with pytest.raises(ValueError, match=f"query_history .* got variant '{variant}' with query '{query}'"):
            TrainPolicyConfig(data=["d.hdf5"], mu0="m", out="o", variant=variant, query=query,
                              query_history=True).check()


def test_per_label_pooling_ignores_how_many_points_other_objects_got():
    """pooling="per-label": a label slot's summary depends on that slot's points only (adding points on another
    object leaves it unchanged); an empty slot reads zero; the context grows by one pooled vector per slot."""
    import torch

    from mu0sim.policies.action_expert import ActionExpertNet

    torch.manual_seed(0)
    net = ActionExpertNet(ActionExpertConfig(pooling="per-label", wrist_camera=None)).eval()
    points, slots = torch.randn(1, 10, POINT_DIM), torch.tensor([[1, 1, 2, 2, 2, 3, 3, 3, 3, 3]])
    more = torch.cat([points, torch.randn(1, 6, POINT_DIM)], 1), torch.cat([slots, torch.full((1, 6), 3)], 1)
    with torch.no_grad():
        a = net._pool_per_slot(net.point(points), torch.zeros(1, 10, dtype=torch.bool), slots)
        b = net._pool_per_slot(net.point(more[0]), torch.zeros(1, 16, dtype=torch.bool), more[1])
        ctx = net.context(points, torch.ones(1, 10), torch.randn(1, 8), torch.randn(1, 1280), slots=slots)
    torch.testing.assert_close(a[:, 2], b[:, 2])
    assert not torch.allclose(a[:, 3], b[:, 3]) and not a[:, 0].any() and not a[:, 4].any()
    assert ctx.shape == (1, (3 + LABEL_SLOTS) * net.config.dim)
    with pytest.raises(ValueError, match="label slot"):
        net.context(points, torch.ones(1, 10), torch.randn(1, 8), torch.randn(1, 1280))
    with pytest.raises(ValueError, match="valid poolings"):
        ActionExpertConfig(pooling="mean")


def test_train_policy_cli_refusals(tiny_mu0, tmp_path, capsys):
    ckpt, data = tiny_mu0
    assert main(["train-policy", "--data", *map(str, data), "--mu0", str(ckpt), "--out", str(tmp_path / "p")]) == 2
    assert "per embodiment" in capsys.readouterr().err
    assert main(["train-policy", "--data", str(data[1]), "--mu0", str(ckpt), "--out", str(tmp_path / "p"),
                 "--robot", "Panda"]) == 2
    assert "holds Sawyer demos" in capsys.readouterr().err
    # the expert's input options (README) are settings of the command, checked before any work
    for option, message in (("--pooling=mean", "valid poolings: attention, per-label"),
                            ("--trace_dropout=1.5", "trace_dropout must be in [0, 1)")):
        assert main(["train-policy", "--data", str(data[0]), "--mu0", str(ckpt), "--out", str(tmp_path / "p"),
                     option]) == 2
        assert message in capsys.readouterr().err
    # any other --key=value is a config setting, checked against TrainPolicyConfig's fields
    assert main(["train-policy", "--data", str(data[0]), "--mu0", str(ckpt), "--out", str(tmp_path / "p"),
                 "--wrist_point=16"]) == 2
    err = capsys.readouterr().err
    assert "unknown setting 'wrist_point'" in err and "wrist_points" in err
    with pytest.raises(SystemExit):  # a setting without '=' is not guessed at
        main(["train-policy", "--data", str(data[0]), "--mu0", str(ckpt), "--out", str(tmp_path / "p"),
              "--wrist_points", "16"])
    assert "unrecognized arguments: --wrist_points 16" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # commands without a config refuse settings
        main(["collect", "--task", "Lift", "--robot", "Panda", "--episodes", "1", "--out", str(tmp_path / "d.hdf5"),
              "--wrist_points=16"])
    assert "only accepted by" in capsys.readouterr().err


def test_eval_writes_rows_and_resumes_without_redoing_episodes(tiny_mu0, tmp_path, capsys):

    ckpt, data = tiny_mu0
    policy = tmp_path / "policy"
    train_policy(TrainPolicyConfig(data=[str(data[0])], mu0=str(ckpt), out=str(policy), steps=5, batch_size=8,
                                   num_points=16), progress=False)
    out = tmp_path / "results"
    args = ["eval", "--policy", str(policy), "--task", "Lift", "--robots", "Panda", "--seed-start", "50",
            "--out", str(out)]
    assert main(args + ["--episodes", "1", "--videos", "1"]) == 0
    assert main(args + ["--episodes", "2"]) == 0  # resumes: only seed 51 runs
    assert len(list((out / "videos").glob("Lift_Panda_policy_seed50_*.mp4"))) == 1
    assert (out / "results.png").stat().st_size > 0
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert [e["seed"] for e in episodes] == [50, 51]
    assert all(e["first_grasp_step"] is None or 0 < e["first_grasp_step"] <= e["length"] for e in episodes)
    row = json.loads((out / "results.json").read_text())[0]
    assert row["episodes"] == 2 and row["robot"] == "Panda" and 0 <= row["wilson_low"] <= row["wilson_high"] <= 1
    assert set(row) == {"task", "robot", "policy", "episodes", "successes", "success_rate", "wilson_low",
                        "wilson_high", "mean_length", "steps_per_s"}
    capsys.readouterr()
    assert main(args[:-2] + ["--robots", "Sawyer", "--out", str(out)]) == 2
    assert "no policy was trained for robot(s) Sawyer" in capsys.readouterr().err
    assert main(args[:-2] + ["--robots", "Panda,Sawyer", "--out", str(out)]) == 2  # never a silently missing row
    err = capsys.readouterr().err
    assert "robot(s) Sawyer:" in err and f"Panda ({policy})" in err
    assert main(["eval", "--policy", str(policy), "--task", "Lfit", "--robots", "Panda"]) == 2
    assert "valid tasks" in capsys.readouterr().err


def test_feature_replay_over_worker_processes_matches_in_process(tiny_mu0, tmp_path):
    """prepare_features fills the caches train_policy reads (two datasets on two processes, one torch thread
    each); they hold the rows an in-process replay computes, and a second call has nothing left to do."""
    import shutil

    from mu0sim.model import Mu0
    from mu0sim.policies.train_bc import feature_jobs, mu0_fingerprint, prepare_features, replay_features

    ckpt, data = tiny_mu0
    copies = []
    for folder in ("pool", "local"):
        (tmp_path / folder).mkdir()
        copies.append([shutil.copy(d, tmp_path / folder / d.name) for d in data])
    configs = [TrainPolicyConfig(data=[str(d)], mu0=str(ckpt), out=str(tmp_path / d.stem), num_points=16,
                                 episodes=2, feature_every=2) for d in copies[0]]
    fewer = TrainPolicyConfig(data=[str(copies[0][0])], mu0=str(ckpt), out=str(tmp_path / "fewer"), num_points=16,
                              episodes=1, feature_every=2)  # same cache, fewer demos: one job for both
    assert prepare_features([fewer, *configs], workers=2, progress=False) == 2
    assert prepare_features(configs, workers=2, progress=False) == 0  # cached
    mu0 = Mu0.from_pretrained(ckpt)
    for pooled, local, config in zip(copies[0], copies[1], configs):
        (job,) = feature_jobs(config)
        args = (mu0, mu0_fingerprint(ckpt), job.query, job.num_points, job.episodes, False, job.traces,
                job.wrist_camera, job.every)
        a, b = replay_features(pooled, *args), replay_features(local, *args)
        assert set(a) == set(b) and sorted(set(a["episode"])) == [0, 1]  # float16 wrist tokens: rtol
        for key in a:
            np.testing.assert_allclose(a[key].astype(np.float32), b[key].astype(np.float32), rtol=2e-3, atol=2e-3,
                                       err_msg=key)


@pytest.mark.parametrize("head", ["regression", "flow"])
def test_trace_skip_maps_the_grippers_mean_trace_onto_the_chunk(head):
    """trace_skip: the gripper points' (robot slot) mean trace joins the context last and moves the output
    through the linear skip; traces of other points, padding and an all-zero (trace-less) input leave the skip at
    its bias."""
    import torch

    from mu0sim.policies.action_expert import MOTION_DIM, MOTION_SLICE, ActionExpertNet

    torch.manual_seed(0)
    net = ActionExpertNet(ActionExpertConfig(trace_skip=True, head=head, wrist_camera=None)).eval()
    points, slots = torch.randn(2, 6, POINT_DIM), torch.tensor([[1, 1, 2, 2, 0, 1]] * 2)
    mask = torch.tensor([[1.0, 1, 1, 1, 1, 0]] * 2)  # the last robot point is padding
    with torch.no_grad():
        ctx = net.context(points, mask, torch.randn(2, 8), torch.randn(2, 1280), slots=slots)
    torch.testing.assert_close(ctx[:, -MOTION_DIM:], points[:, :2, MOTION_SLICE].mean(1))
    assert ctx.shape == (2, 3 * net.config.dim + MOTION_DIM)
    still = points.clone()
    still[:, 2:, MOTION_SLICE] = torch.randn(2, 4, MOTION_DIM)  # only non-gripper points and padding move
    with torch.no_grad():
        torch.testing.assert_close(net._gripper_motion(still, mask, slots), ctx[:, -MOTION_DIM:])
        none = net._gripper_motion(points, mask, torch.full_like(slots, 2))
    assert not none.any()
    with pytest.raises(ValueError, match="label slot"):
        net.context(points, mask, torch.randn(2, 8), torch.randn(2, 1280))
    assert ActionExpertConfig.from_dict({"variant": "trace"}).trace_skip is False  # older checkpoints: no skip


def test_forecast_only_reads_each_label_slots_mean_forecast_and_nothing_of_where_things_are():
    """forecast_only: the context is the per-slot mean traces (padding and other columns ignored) + proprio
    (+ moments); moving a point's position, the image or a wrist cell changes nothing, moving a trace does; settings
    that add other inputs, or a variant without 3D traces, are refused by name."""
    import torch

    from mu0sim.policies.action_expert import MOTION_DIM, MOTION_SLICE, ActionExpertNet

    torch.manual_seed(0)
    config = ActionExpertConfig(forecast_only=True, image_feature=False, wrist_features=False, wrist_points=4,
                                wrist_moments=True)
    net = ActionExpertNet(config).eval()
    points, slots = torch.randn(2, 6, POINT_DIM), torch.tensor([[1, 1, 2, 2, 0, 1]] * 2)
    mask = torch.tensor([[1.0, 1, 1, 1, 1, 0]] * 2)  # the last robot point is padding
    means = net._slot_mean(points, mask, slots, MOTION_SLICE)
    assert means.shape == (2, LABEL_SLOTS, MOTION_DIM)
    torch.testing.assert_close(means[:, 1], points[:, :2, MOTION_SLICE].mean(1))
    torch.testing.assert_close(means[:, 2], points[:, 2:4, MOTION_SLICE].mean(1))
    assert not means[:, 3:].any()  # slots without a point

    def context(p, image=None):
        with torch.no_grad():
            return net.context(p, mask, torch.randn(2, 8, generator=torch.Generator().manual_seed(1)),
                               torch.randn(2, 1280) if image is None else image, slots=slots,
                               moments=torch.zeros(2, 12))

    ctx = context(points)
    assert ctx.shape == (2, 3 * config.dim)
    moved = points.clone()
    moved[..., :MOTION_SLICE.start] = torch.randn(2, 6, MOTION_SLICE.start)  # positions, labels: not read
    moved[:, 5, MOTION_SLICE] = 5.0  # padding's trace: not read
    torch.testing.assert_close(context(moved, torch.zeros(2, 1280)), ctx)
    moved[:, 0, MOTION_SLICE] += 1.0
    assert not torch.allclose(context(moved), ctx)
    with pytest.raises(ValueError, match="turn off image_feature, wrist_features"):
        ActionExpertConfig(forecast_only=True)
    with pytest.raises(ValueError, match="variant 'no-trace'"):
        ActionExpertConfig(forecast_only=True, variant="no-trace", image_feature=False, wrist_camera=None)
    with pytest.raises(ValueError, match="needs forecast_only"):
        ActionExpertConfig(slot_offsets=True)
    # slot_offsets: + each slot's mean in-gripper position, which a trace-less variant may act on
    offsets = ActionExpertNet(ActionExpertConfig(forecast_only=True, slot_offsets=True, variant="no-trace",
                                                 image_feature=False, wrist_camera=None)).eval()
    with torch.no_grad():
        base = offsets.context(points, mask, torch.zeros(2, 8), torch.zeros(2, 1280), slots=slots)
        shifted = points.clone()
        shifted[:, 2, 6:9] += 1.0  # a cube point's position relative to the fingers
        assert not torch.allclose(offsets.context(shifted, mask, torch.zeros(2, 8), torch.zeros(2, 1280),
                                                  slots=slots), base)
    assert ActionExpertConfig.from_dict({"variant": "trace"}).forecast_only is False  # older checkpoints


def test_grip_clock_counts_the_closed_commands_in_a_row_before_each_step():
    """The clock of a row: closed (> 0) commands in a row just before its step, within its episode; rows every few
    steps read the skipped steps' commands from their chunks and get the clock of every-step rows."""
    from mu0sim.policies.action_expert import grip_clock_feature, grip_clock_steps

    commands = np.array([-1, -1, 1, 1, 1, -1, 1, 1, 1, 1], np.float32)  # one episode's executed grip commands
    chunks = np.stack([np.pad(commands[t:], (0, t), constant_values=-1) for t in range(10)])[:, :4]
    step = np.arange(10)
    np.testing.assert_array_equal(grip_clock_steps(chunks, np.zeros(10), step), [0, 0, 0, 1, 2, 3, 0, 1, 2, 3])
    every2 = step % 2 == 0
    np.testing.assert_array_equal(grip_clock_steps(chunks[every2], np.zeros(5), step[every2]), [0, 0, 2, 0, 2])
    two = grip_clock_steps(np.concatenate([chunks, chunks]), np.repeat([0, 1], 10), np.concatenate([step, step]))
    np.testing.assert_array_equal(two[10:], two[:10])  # a new episode starts at zero
    np.testing.assert_allclose(grip_clock_feature(np.array([0, 12, 24, 100]))[:, 0], [0, 0.5, 1, 1])


def test_a_grip_clock_expert_counts_its_own_executed_gripper_commands(tmp_path):
    """What the expert reads is the count of its own executed close commands (reset by an open one and by
    ``reset``), appended to the proprioception; without the clock in the batch it refuses, and so does PPO (an SB3
    observation has no clock)."""
    import torch

    from mu0sim.policies.action_expert import (GRIP_CLOCK_KEY, PROPRIO_DIM, ActionExpertNet, Normalization,
                                               expert_inputs)

    config = ActionExpertConfig(grip_clock=True, wrist_camera=None)
    norm = Normalization(np.zeros(PROPRIO_DIM, np.float32), np.ones(PROPRIO_DIM, np.float32),
                         np.zeros(1280, np.float32), np.ones(1280, np.float32),
                         np.zeros(POINT_DIM, np.float32), np.ones(POINT_DIM, np.float32))
    expert = ActionExpert(ActionExpertNet(config), norm)
    obs = {**_obs(), "mu0_query_mask": np.ones(5, np.float32), "robot0_gripper_width": np.array([0.05]),
           "mu0_image": np.zeros(1280, np.float32)}
    chunk = np.zeros((16, 7), np.float32)
    chunk[:, 6] = [1, 1, 1, -1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    expert.predict_action_chunk = lambda _: chunk
    clocks = []
    for _ in range(16):
        clocks.append(float(expert.tensors(obs)[2][0, -1]) * 24)
        expert.select_action(obs)
    # execute = 8: the second chunk starts over with three closes and an open
    np.testing.assert_allclose(clocks, [0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3], atol=1e-5)
    expert.reset()
    assert float(expert.tensors(obs)[2][0, -1]) == 0.0
    with torch.no_grad():
        assert expert.members[0].context(*expert.tensors(obs)).shape == (1, 2 * config.dim + config.dim)
    with pytest.raises(ValueError, match="gripper clock"):
        expert_inputs({k: np.asarray(v)[None] for k, v in obs.items()}, config, norm)
    assert GRIP_CLOCK_KEY not in obs
    assert ActionExpertConfig.from_dict({"variant": "trace"}).grip_clock is False  # older checkpoints: no clock
    from mu0sim.policies.sb3 import ExpertFeatures

    expert.save(tmp_path / "clock")
    with pytest.raises(ValueError, match="gripper clock"):
        ExpertFeatures(None, str(tmp_path / "clock"))
