"""LeRobot v3.0 export, checked against the published layout (LeRobot itself would replace our pinned torch)."""

import json
from pathlib import Path

import h5py
import imageio.v2 as imageio
import numpy as np
import pandas as pd
import pytest

from mu0sim.datasets.lerobot import export_lerobot
from mu0sim.rollouts.collect import CollectConfig, collect


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("lerobot")
    dataset = root / "lift.hdf5"
    collect(CollectConfig(task="Lift", robot="Sawyer", episodes=3, out=dataset, cameras=("agentview",),
                          image_size=32), progress=False)
    out = root / "lift_lerobot"
    summary = export_lerobot(dataset, out, episodes_per_file=2, progress=False)
    return dataset, out, summary


def test_info_json_follows_v3(exported):
    _, out, summary = exported
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 20 and info["robot_type"] == "Sawyer"
    assert info["total_episodes"] == 3 == summary["episodes"] and info["total_tasks"] == 1
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index", "observation.state", "action",
                "next.reward", "next.done", "observation.images.agentview"):
        assert {"dtype", "shape", "names"} <= set(info["features"][key])
    assert info["features"]["observation.images.agentview"]["dtype"] == "video"
    assert info["features"]["observation.images.agentview"]["shape"] == [32, 32, 3]


def test_frames_episodes_and_tasks_are_consistent(exported):
    dataset, out, _ = exported
    info = json.loads((out / "meta/info.json").read_text())
    episodes = pd.read_parquet(out / "meta/episodes/chunk-000/file-000.parquet")
    tasks = pd.read_parquet(out / "meta/tasks.parquet")
    assert tasks.index.name == "task" and tasks.loc["lift the red cube", "task_index"] == 0
    frames = pd.concat([pd.read_parquet(out / info["data_path"].format(chunk_index=0, file_index=i)) for i in (0, 1)])
    assert len(frames) == info["total_frames"] and frames["index"].tolist() == list(range(len(frames)))
    with h5py.File(dataset, "r") as f:
        for _, ep in episodes.iterrows():
            rows = frames.iloc[ep["dataset_from_index"]:ep["dataset_to_index"]]
            assert len(rows) == ep["length"] == f[f"data/demo_{ep['episode_index']}"].attrs["num_samples"]
            assert (rows["episode_index"] == ep["episode_index"]).all() and list(ep["tasks"]) == ["lift the red cube"]
            np.testing.assert_allclose(rows["timestamp"], rows["frame_index"] / info["fps"], atol=1e-6)
            np.testing.assert_array_equal(np.stack(rows["action"]), f[f"data/demo_{ep['episode_index']}/actions"][()])
            assert rows["next.done"].iloc[-1] and rows["next.success"].iloc[-1]
            data_file = out / info["data_path"].format(chunk_index=ep["data/chunk_index"],
                                                        file_index=ep["data/file_index"])
            assert data_file.exists()
    stats = json.loads((out / "meta/stats.json").read_text())
    for key in ("observation.state", "action", "observation.images.agentview"):
        assert {"min", "max", "mean", "std", "count"} <= set(stats[key])
    assert np.array(stats["observation.images.agentview"]["mean"]).shape == (3, 1, 1)


def test_videos_hold_each_episode_at_its_timestamps(exported):
    dataset, out, _ = exported
    info = json.loads((out / "meta/info.json").read_text())
    episodes = pd.read_parquet(out / "meta/episodes/chunk-000/file-000.parquet")
    key = "observation.images.agentview"
    with h5py.File(dataset, "r") as f:
        for _, ep in episodes.iterrows():
            path = out / info["video_path"].format(video_key=key, chunk_index=ep[f"videos/{key}/chunk_index"],
                                                   file_index=ep[f"videos/{key}/file_index"])
            frames = np.stack(imageio.mimread(path, memtest=False))
            start = round(ep[f"videos/{key}/from_timestamp"] * info["fps"])
            stop = round(ep[f"videos/{key}/to_timestamp"] * info["fps"])
            original = f[f"data/demo_{ep['episode_index']}/obs/agentview_image"][()]
            assert stop - start == len(original) and stop <= len(frames)
            error = np.abs(frames[start:stop].astype(int) - original.astype(int)).mean()
            assert error < 6, f"episode {ep['episode_index']}: mean abs pixel error {error:.1f} (H.264 is lossy)"


def test_export_refuses_an_existing_folder(exported):
    dataset, out, _ = exported
    with pytest.raises(FileExistsError, match="exists"):
        export_lerobot(dataset, out, progress=False)


def test_dart_export_labels_with_the_experts_actions_and_keeps_the_executed(tmp_path):
    dataset = tmp_path / "dart.hdf5"
    collect(CollectConfig(task="Lift", robot="Panda", episodes=2, out=dataset, execution_noise_std=0.2),
            progress=False)
    out = tmp_path / "dart_lerobot"
    export_lerobot(dataset, out, progress=False)
    info = json.loads((out / "meta/info.json").read_text())
    assert info["features"]["action.executed"]["shape"] == [7] and info["video_path"] is None
    frames = pd.read_parquet(out / info["data_path"].format(chunk_index=0, file_index=0))
    with h5py.File(dataset, "r") as f:
        n = f["data/demo_0"].attrs["num_samples"]
        rows = frames[frames["episode_index"] == 0]
        np.testing.assert_array_equal(np.stack(rows["action"]), f["data/demo_0/expert_actions"][()])
        np.testing.assert_array_equal(np.stack(rows["action.executed"]), f["data/demo_0/actions"][()])
        assert len(rows) == n
    assert "action.executed" in json.loads((out / "meta/stats.json").read_text())
