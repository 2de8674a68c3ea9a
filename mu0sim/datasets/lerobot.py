"""Export a mu0sim dataset to the LeRobot v3.0 layout (parquet + MP4 + meta), for Hub sharing and VLA training.

    OUT/meta/info.json          codebase_version v3.0, fps, robot_type, features, totals, path templates
    OUT/meta/stats.json         per feature: min, max, mean, std, count (images: per channel, in [0, 1])
    OUT/meta/tasks.parquet      task (index) -> task_index
    OUT/meta/episodes/chunk-000/file-000.parquet   one row per episode: episode_index, tasks, length,
                                data/{chunk,file}_index, dataset_{from,to}_index,
                                videos/<key>/{chunk_index,file_index,from_timestamp,to_timestamp}
    OUT/data/chunk-000/file-NNN.parquet            one row per frame: observation.state,
                                observation.environment_state, action, next.reward, next.done, next.success,
                                timestamp, frame_index, episode_index, index, task_index
    OUT/videos/observation.images.<cam>/chunk-000/file-NNN.mp4   episodes concatenated, H.264 yuv420p

Each episode contributes its N recorded frames (the observations before each action). Depth and segmentation
are not exported (LeRobot has no standard encoding for metric depth); RGB cameras become videos.

DART files (collected with ``--execution-noise-std``): ``action`` is the expert's clean command
(``expert_actions``), what a policy trained on the export should imitate, as mu0sim's own behaviour cloning does;
the executed (noisy) actions, which replay the states, are the extra feature ``action.executed``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from mu0sim.datasets.hdf5 import demo_names, open_dataset

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
STATE_KEYS = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_width", "robot0_joint_pos")


def _state_names(obs_group, key: str) -> list[str]:
    width = obs_group[key].shape[1]
    labels = {"robot0_eef_pos": ["x", "y", "z"], "robot0_eef_quat": ["qx", "qy", "qz", "qw"],
              "robot0_gripper_width": ["width"]}.get(key, [str(i) for i in range(width)])
    return [f"{key}.{label}" for label in labels]


def _stats(values: np.ndarray) -> dict[str, list]:
    values = values.astype(np.float64)
    return {"min": values.min(0).tolist(), "max": values.max(0).tolist(), "mean": values.mean(0).tolist(),
            "std": values.std(0).tolist(), "count": [len(values)]}


def _image_stats(sum_c, sq_c, min_c, max_c, pixels: int, frames: int) -> dict[str, list]:
    mean = sum_c / pixels
    std = np.sqrt(np.maximum(sq_c / pixels - mean**2, 0.0))

    def shaped(v):
        return np.asarray(v, dtype=np.float64).reshape(3, 1, 1).tolist()

    return {"min": shaped(min_c), "max": shaped(max_c), "mean": shaped(mean), "std": shaped(std), "count": [frames]}


def export_lerobot(dataset: str | os.PathLike, out: str | os.PathLike, episodes_per_file: int = 500,
                   progress: bool = True) -> dict:
    """Write ``out`` (must not exist) as a LeRobot v3.0 dataset; returns a summary dict."""
    import imageio.v2 as imageio
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; export writes a new folder (remove it or choose another path)")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    with open_dataset(dataset) as f:
        env_args = json.loads(f["data"].attrs["env_args"])
        kwargs = env_args.get("mu0sim", {}).get("kwargs", {})
        fps = float(kwargs.get("control_freq", 20))
        names = demo_names(f)
        if not names:
            raise ValueError(f"{dataset}: no demos to export")
        first_obs = f[f"data/{names[0]}/obs"]
        state_keys = [k for k in STATE_KEYS if k in first_obs]
        cameras = [k[: -len("_image")] for k in first_obs if k.endswith("_image")]
        state_names = [n for k in state_keys for n in _state_names(first_obs, k)]
        video_keys = {cam: f"observation.images.{cam}" for cam in cameras}
        tasks: dict[str, int] = {}
        episode_rows, state_all, env_all, action_all, executed_all = [], [], [], [], []
        image_acc = {cam: [np.zeros(3), np.zeros(3), np.full(3, np.inf), np.full(3, -np.inf), 0] for cam in cameras}
        global_index, file_index = 0, -1
        writers: dict[str, object] = {}
        data_rows: list[dict] = []
        video_time = {cam: 0.0 for cam in cameras}

        def flush_data():
            if data_rows:
                path = tmp / DATA_PATH.format(chunk_index=0, file_index=file_index)
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(pa.Table.from_pylist(data_rows), path)
                data_rows.clear()

        try:
            for episode_index, name in enumerate(tqdm(names, desc="export-lerobot", unit="demo",
                                                      disable=not progress, dynamic_ncols=True)):
                if episode_index % episodes_per_file == 0:  # roll over to a new data file and video files
                    flush_data()
                    for writer in writers.values():
                        writer.close()
                    writers.clear()
                    file_index += 1
                    video_time = {cam: 0.0 for cam in cameras}
                    for cam, key in video_keys.items():
                        path = tmp / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=file_index)
                        path.parent.mkdir(parents=True, exist_ok=True)
                        writers[cam] = imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1,
                                                          quality=8, pixelformat="yuv420p")
                group = f[f"data/{name}"]
                n = int(group.attrs["num_samples"])
                instruction = str(group.attrs.get("instruction", "")) or env_args["env_name"]
                task_index = tasks.setdefault(instruction, len(tasks))
                state = np.concatenate([group[f"obs/{k}"][()].reshape(n, -1) for k in state_keys], axis=1)
                env_state = group["obs/object"][()].reshape(n, -1) if "object" in group["obs"] else np.zeros((n, 0))
                executed = group["actions"][()].astype(np.float32)
                dart = "expert_actions" in group  # the labels to imitate differ from what was executed
                actions = group["expert_actions"][()].astype(np.float32) if dart else executed
                rewards = group["rewards"][()].astype(np.float32)
                dones = group["dones"][()].astype(bool)
                success = bool(group.attrs.get("success", dones[-1]))
                state_all.append(state)
                env_all.append(env_state)
                action_all.append(actions)
                if dart:
                    executed_all.append(executed)
                row = {"episode_index": episode_index, "tasks": [instruction], "length": n,
                       "data/chunk_index": 0, "data/file_index": file_index,
                       "dataset_from_index": global_index, "dataset_to_index": global_index + n,
                       "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
                for cam, key in video_keys.items():
                    frames = group[f"obs/{cam}_image"][()]
                    for frame in frames:
                        writers[cam].append_data(frame)
                    acc = image_acc[cam]
                    pixels = frames.reshape(-1, 3).astype(np.float64) / 255.0
                    acc[0] += pixels.sum(0)
                    acc[1] += (pixels**2).sum(0)
                    acc[2] = np.minimum(acc[2], pixels.min(0))
                    acc[3] = np.maximum(acc[3], pixels.max(0))
                    acc[4] += len(pixels)
                    row.update({f"videos/{key}/chunk_index": 0, f"videos/{key}/file_index": file_index,
                                f"videos/{key}/from_timestamp": video_time[cam],
                                f"videos/{key}/to_timestamp": video_time[cam] + n / fps})
                    video_time[cam] += n / fps
                episode_rows.append(row)
                for t in range(n):
                    data_rows.append({
                        "observation.state": state[t].astype(np.float32).tolist(),
                        "observation.environment_state": env_state[t].astype(np.float32).tolist(),
                        "action": actions[t].tolist(), "next.reward": float(rewards[t]), "next.done": bool(dones[t]),
                        "next.success": bool(success and t == n - 1), "timestamp": np.float32(t / fps).item(),
                        "frame_index": t, "episode_index": episode_index, "index": global_index + t,
                        "task_index": task_index})
                    if dart:
                        data_rows[-1]["action.executed"] = executed[t].tolist()
                global_index += n
            flush_data()
        finally:
            for writer in writers.values():
                writer.close()

    states, env_states, actions = (np.concatenate(a) for a in (state_all, env_all, action_all))
    total_frames = global_index
    action_names = ["dx", "dy", "dz", "ax", "ay", "az", "grip"]
    features = {
        "observation.state": {"dtype": "float32", "shape": [states.shape[1]], "names": state_names},
        "observation.environment_state": {"dtype": "float32", "shape": [env_states.shape[1]], "names": None},
        "action": {"dtype": "float32", "shape": [actions.shape[1]], "names": action_names},
        "next.reward": {"dtype": "float32", "shape": [1], "names": None},
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
        "next.success": {"dtype": "bool", "shape": [1], "names": None},
    }
    h, w = (int(v) for v in kwargs.get("image_size", [0, 0]))
    for cam, key in video_keys.items():
        features[key] = {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                         "info": {"video.height": h, "video.width": w, "video.codec": "h264",
                                  "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps,
                                  "video.channels": 3, "has_audio": False}}
    for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                       ("index", "int64"), ("task_index", "int64")):
        features[key] = {"dtype": dtype, "shape": [1], "names": None}
    info = {
        "codebase_version": CODEBASE_VERSION, "robot_type": kwargs.get("robot"),
        "total_episodes": len(names), "total_frames": total_frames, "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": fps,
        "splits": {"train": f"0:{len(names)}"}, "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if cameras else None, "features": features,
    }
    stats = {"observation.state": _stats(states), "observation.environment_state": _stats(env_states),
             "action": _stats(actions)}
    if executed_all:
        if len(executed_all) != len(names):
            raise ValueError(f"{dataset}: only some demos hold expert_actions (DART labels); cannot export one "
                             "action feature for all")
        features["action.executed"] = {"dtype": "float32", "shape": [actions.shape[1]], "names": action_names}
        stats["action.executed"] = _stats(np.concatenate(executed_all))
    for cam, key in video_keys.items():
        sum_c, sq_c, min_c, max_c, pixels = image_acc[cam]
        stats[key] = _image_stats(sum_c, sq_c, min_c, max_c, pixels, total_frames)
    (tmp / "meta").mkdir(parents=True, exist_ok=True)
    (tmp / "meta/info.json").write_text(json.dumps(info, indent=4))
    (tmp / "meta/stats.json").write_text(json.dumps(stats, indent=4))
    # LeRobot reads this with pandas and takes the task strings from the index
    pd.DataFrame({"task_index": list(tasks.values())}, index=pd.Index(list(tasks), name="task")).to_parquet(
        tmp / "meta/tasks.parquet")
    episodes_path = tmp / EPISODES_PATH.format(chunk_index=0, file_index=0)
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(episode_rows), episodes_path)
    os.replace(tmp, out)
    return {"episodes": len(names), "frames": total_frames, "tasks": len(tasks), "cameras": cameras, "out": str(out)}
