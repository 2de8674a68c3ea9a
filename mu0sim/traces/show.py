"""Pictures of extracted traces: an MP4 with each keypoint's future drawn on the frames, and a 3D plot."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from mu0sim.datasets.hdf5 import demo_names, make_env_from_dataset, open_dataset
from mu0sim.traces.extract import load_traces
from mu0sim.traces.keypoints import CATEGORIES

CATEGORY_BGR = {"object": (60, 60, 230), "gripper": (230, 160, 40), "contact": (40, 220, 240), "grid": (180, 180, 180)}


def time_colours(steps: int) -> np.ndarray:
    """(steps, 3) uint8 RGB colours from near (yellow) to far future (purple): matplotlib's viridis, reversed."""
    from matplotlib import colormaps

    return (colormaps["viridis"](np.linspace(1.0, 0.0, steps))[:, :3] * 255).astype(np.uint8)


def draw_traces(frame_rgb: np.ndarray, uv_future: np.ndarray, valid_future: np.ndarray, categories: np.ndarray,
                scale: int = 3) -> np.ndarray:
    """Upscale ``frame_rgb`` and draw each keypoint's future (K, H, 2 pixels) coloured by time, its current
    position as a dot coloured by category."""
    h, w = frame_rgb.shape[:2]
    canvas = cv2.resize(frame_rgb, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    colours = time_colours(uv_future.shape[1])
    for k in range(uv_future.shape[0]):
        points = (uv_future[k] * scale).astype(np.int32)
        for i in range(len(points) - 1):
            if valid_future[k, i] and valid_future[k, i + 1]:
                cv2.line(canvas, tuple(map(int, points[i])), tuple(map(int, points[i + 1])),
                         tuple(int(c) for c in colours[i]), 1, cv2.LINE_AA)
        if valid_future[k, 0]:
            bgr = CATEGORY_BGR[CATEGORIES[int(categories[k])]]
            cv2.circle(canvas, tuple(map(int, points[0])), 2, bgr[::-1], -1, cv2.LINE_AA)
    return canvas


def show_traces(dataset: str | os.PathLike, episode: int, out: str | os.PathLike, mode: str = "sim",
                horizon: int = 32, traces_path: str | os.PathLike | None = None) -> dict:
    """Write ``out`` (MP4) and ``out`` with suffix ``.png`` (3D plot) for one demo; returns the paths."""
    import imageio.v2 as imageio
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dataset = Path(dataset)
    traces_path = Path(traces_path or dataset.with_name(f"{dataset.stem}.traces-{mode}.hdf5"))
    if not traces_path.exists():
        raise FileNotFoundError(f"{traces_path}: no traces; run `mu0sim extract {dataset} --mode {mode}` first")
    with open_dataset(dataset) as f:
        names = demo_names(f)
        if not 0 <= episode < len(names):
            raise ValueError(f"episode {episode} out of range; {dataset} has episodes 0..{len(names) - 1}")
        name = names[episode]
    traces = load_traces(traces_path, name)
    camera = traces["attrs"]["camera"]
    with open_dataset(dataset) as f:
        group = f[f"data/{name}"]
        if f"{camera}_image" in group["obs"]:
            frames = group[f"obs/{camera}_image"][()]
        else:  # state-only dataset: render the camera from the recorded states
            env = make_env_from_dataset(dataset, cameras=(camera,))
            env.unwrapped.reset_to_state(group["states"][0], group.attrs["model_file"])
            frames = np.stack([env.unwrapped.observe_state(s)[f"{camera}_image"] for s in group["states"][()]])
            env.close()
    uv, valid = traces["traces/uv_px"], traces["traces/visible"] & traces["traces/valid"]
    categories = traces["keypoints/category"]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.mp4")
    with imageio.get_writer(tmp, fps=20, codec="libx264", macro_block_size=1, quality=8) as video:
        for t in range(len(frames)):
            future = slice(t, min(t + horizon, len(frames)))
            video.append_data(draw_traces(frames[t], uv[future].transpose(1, 0, 2), valid[future].T, categories))
    os.replace(tmp, out)

    world = traces["traces/world"]
    fig = plt.figure(figsize=(6, 5))
    ax = fig.add_subplot(projection="3d")
    times = np.broadcast_to(np.arange(len(world))[:, None], world.shape[:2])
    for k in range(world.shape[1]):
        ax.plot(world[:, k, 0], world[:, k, 1], world[:, k, 2], color="0.8", linewidth=0.5)
    scatter = ax.scatter(world[..., 0].ravel(), world[..., 1].ravel(), world[..., 2].ravel(), c=times.ravel(),
                         cmap="viridis_r", s=2)
    fig.colorbar(scatter, ax=ax, shrink=0.6, label="frame")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_zlabel("z (m)")
    ax.set_title(f"{dataset.name} {name}: {world.shape[1]} keypoints ({mode})", fontsize=9)
    png = out.with_suffix(".png")
    tmp_png = png.with_name(f".{png.name}.tmp.png")
    fig.savefig(tmp_png, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp_png, png)
    return {"video": str(out), "plot": str(png), "episode": name, "keypoints": int(world.shape[1])}
