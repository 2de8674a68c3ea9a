"""TraceExtract: keypoints on the right bodies, exact sim traces, video tracking vs ground truth, segments."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from mu0sim.traces import ExtractConfig, extract_dataset, load_traces
from mu0sim.traces.keypoints import CATEGORIES
from mu0sim.traces.segments import PRIMITIVE, SUBTASK, TASK, describe_motion
from mu0sim.traces.show import show_traces
from mu0sim.rollouts.collect import CollectConfig, collect


@pytest.fixture(scope="module")
def lift_rgbd(tmp_path_factory):
    path = tmp_path_factory.mktemp("traces") / "lift.hdf5"
    collect(CollectConfig(task="Lift", robot="Panda", episodes=2, out=path, cameras=("agentview",),
                          image_size=128, depth=True), progress=False)
    return path


@pytest.fixture(scope="module")
def sim_summary(lift_rgbd):
    return extract_dataset(ExtractConfig(dataset=lift_rgbd, mode="sim"), progress=False)


def test_sim_traces_follow_the_bodies_exactly(lift_rgbd, sim_summary):
    assert sim_summary["episodes"] == 2 and sim_summary["spline_fit_ade_mm_D10"]["mean"] < 2.0
    traces = load_traces(Path(sim_summary["out"]), "demo_0")
    world, category = traces["traces/world"], traces["keypoints/category"]
    names = [CATEGORIES[c] for c in category]
    assert {"object", "gripper", "contact"} <= set(names)
    with h5py.File(lift_rgbd, "r") as f:
        cube = f["data/demo_0/obs/object"][()][:, :3]  # cube_pos: the object points move with it
        eef = f["data/demo_0/obs/robot0_eef_pos"][()]
    on_cube = np.array([n in ("object", "contact") for n in names])
    offsets = world[:, on_cube] - cube[:, None, :]
    assert np.abs(offsets - offsets[:1]).max() < 2e-3  # rigid: constant offset (up to the cube's rotation)
    assert np.linalg.norm(offsets, axis=-1).max() < 0.04  # within the cube (half size <= 2.2 cm, diagonal)
    grip = world[:, np.array(names) == "gripper"]
    assert np.linalg.norm(grip.mean(1) - eef, axis=-1).max() < 0.03  # finger pads around the grip site
    assert traces["traces/visible"][0, on_cube].mean() > 0.5 and traces["traces/valid"].all()


def test_video_tracking_scored_against_sim(lift_rgbd, sim_summary):
    summary = extract_dataset(ExtractConfig(dataset=lift_rgbd, mode="video"), progress=False)
    assert summary["median_err_m"] < 0.01 and summary["p90_err_m"] < 0.05 and summary["survival"] > 0.5
    traces = load_traces(Path(summary["out"]), "demo_1")
    error = traces["traces/gt_error_m"]
    assert np.isnan(error[~(traces["traces/visible"])]).all()  # only comparable where the tracker sees the point


def test_segments_form_a_caption_hierarchy(sim_summary):
    segments = load_traces(Path(sim_summary["out"]), "demo_0")["segments"]
    task = [s for s in segments if s.level == TASK]
    subtasks = [s for s in segments if s.level == SUBTASK]
    assert len(task) == 1 and task[0].caption == "lift the red cube"
    assert [s.caption for s in subtasks][:3] == ["reach the red cube", "grasp the red cube", "lift the red cube"]
    assert subtasks[0].start == 0 and subtasks[-1].end == task[0].end
    assert all(a.end == b.start for a, b in zip(subtasks, subtasks[1:]))  # contiguous
    for sub in subtasks:  # primitives tile each subtask
        prims = [s for s in segments if s.level == PRIMITIVE and sub.start <= s.start < sub.end]
        assert prims[0].start == sub.start and prims[-1].end == sub.end
    assert any("toward the red cube" in s.caption for s in segments if s.level == PRIMITIVE)


def test_describe_motion_words():
    assert describe_motion(np.array([0.0, 0.0, -0.10]), "the gripper", "red cube", True) == \
        "move the gripper down 10 cm toward the red cube"
    assert describe_motion(np.array([0.05, -0.05, 0.0]), "the can") == "move the can forward and right 7 cm"


def test_rerun_skips_done_demos_and_refuses_other_settings(lift_rgbd, sim_summary):
    again = extract_dataset(ExtractConfig(dataset=lift_rgbd, mode="sim"), progress=False)
    assert again["frames_this_run"] == 0 and again["episodes"] == 2
    with pytest.raises(ValueError, match="extracted with other settings"):
        extract_dataset(ExtractConfig(dataset=lift_rgbd, mode="sim", points_per_object=4), progress=False)


def test_show_traces_writes_video_and_plot(lift_rgbd, sim_summary, tmp_path):
    result = show_traces(lift_rgbd, 0, tmp_path / "t.mp4")
    assert Path(result["video"]).stat().st_size > 1000 and Path(result["plot"]).stat().st_size > 1000
    with pytest.raises(ValueError, match="out of range"):
        show_traces(lift_rgbd, 5, tmp_path / "x.mp4")
    with pytest.raises(FileNotFoundError, match="run `mu0sim extract"):
        show_traces(lift_rgbd, 0, tmp_path / "x.mp4", mode="video", traces_path=tmp_path / "none.hdf5")
