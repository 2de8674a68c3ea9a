"""μ0 inference latency (one policy query) and trace-expert training throughput, CPU.

    python bench/mu0_latency.py [--ckpt checkpoints/mu0-sim] [--compare CKPT ...] [--keypoints 64] [--queries 50]
                                [--threads 1]

A query is what a policy does at each μ0 step: encode one 128 px RGB image and its depth with the frozen backbone,
then the trace expert (encoder + 4 Euler steps of the flow head) for ``--keypoints`` query points. Reports the median
and p90 over ``--queries`` (after 5 warm-ups) of the query in each inference runtime (eager, TorchScript graphs —
the default — and ONNX Runtime: mu0sim.model.inference_graph), the TorchScript query with one keypoint padded
(attention then needs its mask), all interleaved query by query (``--compare``: other checkpoints' queries too,
e.g. a variant with fewer flow steps), then the backbone alone in each runtime, interleaved the same way; the
expert's share is the difference of medians. Training throughput: samples/s of the trace expert's optimizer steps
(batch 32 anchors x 64 keypoints) on backbone features of the same shape.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from mu0sim.model import RUNTIMES, Mu0, TraceModel
from mu0sim.model.networks import TraceBatch


def _timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="checkpoints/mu0-sim")
    parser.add_argument("--compare", nargs="*", default=[],
                        help="other checkpoints whose queries run interleaved with --ckpt's (side by side)")
    parser.add_argument("--keypoints", type=int, default=64)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--train-threads", type=int, default=2, help="threads for the training measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # one μ0 per inference runtime (mu0sim.model.inference_graph); `mu0` is the default, TorchScript
    runtimes = {runtime: Mu0.from_pretrained(args.ckpt, runtime=runtime) for runtime in RUNTIMES}
    mu0 = runtimes["torchscript"]
    size, k = mu0.image_size, args.keypoints
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (1, size, size, 3), dtype=np.uint8)
    depth = rng.uniform(0.8, 1.6, (1, size, size)).astype(np.float32)
    query = rng.uniform(0, size, (1, k, 2)).astype(np.float32)
    instruction = mu0.instructions.texts[0]
    one_padded = np.ones((1, k), bool)
    one_padded[0, -1] = False

    variants = {f"query, {runtime}": (lambda m=m: m.predict_traces(rgb, depth, query, instruction, seed=0))
                for runtime, m in runtimes.items()}
    # the masked-attention path, taken only when some query point is padding (its expert runs eagerly)
    variants[f"query, torchscript, 1 of {k} keypoints padded"] = lambda: mu0.predict_traces(
        rgb, depth, query, instruction, query_mask=one_padded, seed=0)
    for path in args.compare:
        other = Mu0.from_pretrained(path)
        label = f"query, {path} ({other.model.config.flow_steps} flow steps)"
        variants[label] = lambda other=other: other.predict_traces(rgb, depth, query, instruction, seed=0)
    backbones = {f"backbone only, {runtime}": (lambda m=m: m.encode_images(rgb, depth))
                 for runtime, m in runtimes.items()}
    for _ in range(5):
        for fn in [*variants.values(), *backbones.values()]:
            fn()
    times = {name: [] for name in [*variants, *backbones]}
    for group in (variants, backbones):
        for _ in range(args.queries):  # interleaved, so that the machine's drift hits every variant alike
            for name, fn in group.items():
                times[name] += _timed(fn, 1)

    # training throughput of the trace expert on features of the real shapes
    model = TraceModel(mu0.model.config, mu0.model.normalizer)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    b, h16, h32 = 32, size // 16, size // 32
    batch = TraceBatch(rgb_map=torch.randn(b, 112, h16, h16).half(), depth_map=torch.randn(b, 112, h16, h16).half(),
                       rgb_tokens=torch.randn(b, 1280, h32, h32).half(), depth_tokens=torch.randn(b, 1280).half(),
                       text=torch.randn(b, 384), current=torch.rand(b, k, 3), history=torch.randn(b, k, 8, 3) * 0.1,
                       history_valid=torch.ones(b, k, 8, dtype=torch.bool),
                       keypoint_mask=torch.ones(b, k, dtype=torch.bool))
    future = batch.current[:, :, None] + torch.randn(b, k, 32, 3) * 0.01
    valid = torch.ones(b, k, 32, dtype=torch.bool)
    controls = torch.randn(b, k, model.config.num_control, 3)
    ok = torch.ones(b, k, dtype=torch.bool)
    torch.set_num_threads(args.train_threads)

    def step():
        loss = model.loss(batch, future, valid, controls, ok)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    step_ms = _timed(step, args.train_steps)
    result = {name: {"median_ms": round(float(np.median(t)), 2), "p90_ms": round(float(np.percentile(t, 90)), 2)}
              for name, t in times.items()}
    for runtime in RUNTIMES:
        result[f"trace expert only, {runtime} (difference of medians)"] = {"median_ms": round(
            result[f"query, {runtime}"]["median_ms"] - result[f"backbone only, {runtime}"]["median_ms"], 2)}
    result["training"] = {"step_ms_median": round(float(np.median(step_ms)), 1),
                          "samples_per_s": round(b / (np.median(step_ms) / 1000), 1), "batch": b, "keypoints": k,
                          "threads": args.train_threads}
    print(f"μ0 ({args.ckpt}, {mu0.model.config.flow_steps} flow steps), {k} keypoints, {size} px, "
          f"threads={args.threads}, {platform.processor() or 'cpu'}")
    print("| measurement | median ms | p90 ms |\n|---|---:|---:|")
    for name, row in result.items():
        if "median_ms" in row:
            print(f"| {name} | {row['median_ms']} | {row.get('p90_ms', '')} |")
    median = {name: row["median_ms"] for name, row in result.items() if "median_ms" in row}
    result["speed-ups"] = {
        "torchscript vs eager, query": round(median["query, eager"] / median["query, torchscript"], 2),
        "onnxruntime vs torchscript, query": round(median["query, torchscript"] / median["query, onnxruntime"], 2),
        "onnxruntime vs torchscript, backbone": round(
            median["backbone only, torchscript"] / median["backbone only, onnxruntime"], 2)}
    print()
    for name, ratio in result["speed-ups"].items():
        print(f"{name}: {ratio:.2f}x")
    print(f"\ntraining ({args.train_threads} threads): {result['training']['step_ms_median']} ms per step of {b} anchors x {k} keypoints = "
          f"{result['training']['samples_per_s']} anchor samples/s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
