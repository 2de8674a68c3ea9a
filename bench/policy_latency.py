"""Per-step latency of a trace-conditioned action expert in closed loop (μ0 + expert), and its BC training
throughput, CPU.

    python bench/policy_latency.py --policy runs/policies/lift/Panda_trace [--episodes 3] [--threads 1]
    python bench/policy_latency.py --policy results/cross_embodiment_mu0v3/policies/Stack_Panda_trace_10demos \
        --train-steps 0

Closed loop on the policy's own task and robot (``--task`` for another), frozen μ0 queried at every chunk start
(every ``execute`` steps). Per step, reported separately: the policy's own time (``select_action``: the expert's
forward on chunk starts, a queue pop otherwise) and the wrapper's μ0 query (rendering the camera and wrist view + μ0
+ wrist features) on query steps; plus the physics step. Medians over all steps of ``--episodes`` episodes (seeds
3000..). For an expert with a wrist camera that does not read the view's feature cells (Stack's recipe), the same
episodes also run in a wrapper that encodes them anyway (as every wrapper did before), episode by episode beside the
expert's own: the query step's median of each and their ratio. Training throughput: samples/s of ``train-policy``'s
optimizer steps (batch 64) of a fresh expert of the same config on 64 of the episodes' own observations (random
targets; ``--train-steps 0`` skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from env_throughput import machine_description  # noqa: E402


def run_episode(trace_env, policy, seed: int, expert_ms: list, query_ms: list, step_ms: list,
                chunk_start_ms: list, observations: list | None = None) -> None:
    """One closed-loop episode, appending each step's times (ms) to the lists (``chunk_start_ms``: the expert's
    time on the steps that start a chunk, its forward pass) and its observations to ``observations``."""
    first = len(expert_ms)
    obs, _ = trace_env.reset(seed=seed)
    policy.reset()
    done = False
    while not done:
        if observations is not None:
            observations.append(obs)
        start = time.perf_counter()
        action = policy.select_action(obs)
        expert_ms.append((time.perf_counter() - start) * 1000)
        queries = trace_env.queries
        start = time.perf_counter()
        obs, _, terminated, truncated, _ = trace_env.step(action)
        elapsed = (time.perf_counter() - start) * 1000
        (query_ms if trace_env.queries > queries else step_ms).append(elapsed)
        done = terminated or truncated
    chunk_start_ms.extend(expert_ms[first::policy.config.execute])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True)
    parser.add_argument("--task", default=None, help="default: the policy's own task")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-steps", type=int, default=60, help="0: skip the training throughput")
    parser.add_argument("--train-threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from mu0sim.policies.action_expert import GRIP_CLOCK_KEY, ActionExpertNet, chunk_loss, expert_inputs
    from mu0sim.policies.sb3 import make_expert_env
    from mu0sim.policies.trace_observation import Mu0TraceObservation

    meta = json.loads(open(f"{args.policy}/config.json").read())
    task = args.task or meta["policy"]["task"]
    env, policy = make_expert_env(args.policy, meta["train_config"]["mu0"], task)
    trace_env = env.env  # Mu0TraceObservation (ChunkedActions is only for SB3)
    # the wrapper as it was before it skipped unread wrist cells, on the same inner env (episodes alternate)
    encode_all = None
    if policy.config.wrist_camera is not None and not policy.config.reads_wrist_tokens:
        encode_all = Mu0TraceObservation(trace_env.env, **{**trace_env._saved_kwargs, "wrist_features": True})
    expert_ms, query_ms, step_ms, chunk_starts, query_all_ms, observations = [], [], [], [], [], []
    for episode in range(args.episodes):
        run_episode(trace_env, policy, 3000 + episode, expert_ms, query_ms, step_ms, chunk_starts,
                    observations if args.train_steps > 0 else None)  # kept only for the training batch
        if encode_all is not None:
            run_episode(encode_all, policy, 3000 + episode, [], query_all_ms, [], [])
    amortized = (np.sum(expert_ms) + np.sum(query_ms) + np.sum(step_ms)) / len(expert_ms)
    report = {
        "machine": machine_description(), "train_threads": args.train_threads,
        "policy": args.policy, "task": task, "threads": args.threads, "steps": len(expert_ms),
        "expert_ms_median_chunk_start": round(float(np.median(chunk_starts)), 2),
        "mu0_query_ms_median": round(float(np.median(query_ms)), 2),
        "physics_step_ms_median": round(float(np.median(step_ms)), 2),
        "amortized_ms_per_step": round(float(amortized), 2)}
    if encode_all is not None:
        all_median = float(np.median(query_all_ms))
        report.update({"mu0_query_ms_median_encoding_unread_wrist_cells": round(all_median, 2),
                       "query_ms_saved": round(all_median - float(np.median(query_ms)), 2),
                       "query_speedup_skipping_them": round(all_median / float(np.median(query_ms)), 3),
                       "queries_each": [len(query_ms), len(query_all_ms)]})
    if args.train_steps <= 0:
        print(json.dumps(report, indent=1))
        return

    torch.set_num_threads(args.train_threads)
    # a batch of the episodes' own observations: the expert's real inputs, whatever its recipe reads
    b = 64
    picked = [observations[i] for i in np.linspace(0, len(observations) - 1, b).astype(int)]
    batch = {key: np.stack([o[key] for o in picked]) for key in picked[0]}
    batch[GRIP_CLOCK_KEY] = np.zeros(b, np.int64)  # select_action's own state; only a grip_clock expert reads it
    inputs = expert_inputs(batch, policy.config, policy.norm)
    net = ActionExpertNet(policy.config)
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    target = torch.randn(b, policy.config.chunk * policy.config.action_dim)
    valid = torch.ones_like(target)

    def train_step():
        loss = chunk_loss(net, net.context(*inputs), target, valid)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(5):
        train_step()
    start = time.perf_counter()
    for _ in range(args.train_steps):
        train_step()
    samples_per_s = args.train_steps * b / (time.perf_counter() - start)
    report["train_samples_per_s"] = round(samples_per_s, 1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
