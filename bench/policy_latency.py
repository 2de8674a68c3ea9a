"""Per-step latency of a trace-conditioned action expert in closed loop (μ0 + expert), and its BC training
throughput, CPU.

    python bench/policy_latency.py --policy runs/policies/lift/Panda_trace [--episodes 3] [--threads 1]

Closed loop on Lift with the policy's robot, frozen μ0 queried at every chunk start (every ``execute`` steps).
Per step, reported separately: the policy's own time (``select_action``: the expert's forward on chunk starts, a
queue pop otherwise) and the wrapper's μ0 query (rendering the camera and wrist view + μ0 + wrist features) on
query steps; plus the physics step. Medians over all steps of ``--episodes`` episodes (seeds 3000..). Training
throughput: samples/s of ``train-policy``'s optimizer steps (batch 64) on random inputs of the real shapes.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True)
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--train-threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from mu0sim.policies.action_expert import POINT_DIM, ActionExpertNet, chunk_loss
    from mu0sim.policies.sb3 import make_expert_env

    meta = json.loads(open(f"{args.policy}/config.json").read())
    env, policy = make_expert_env(args.policy, meta["train_config"]["mu0"], "Lift")
    trace_env = env.env  # Mu0TraceObservation (ChunkedActions is only for SB3)
    expert_ms, query_ms, step_ms = [], [], []
    for episode in range(args.episodes):
        obs, _ = trace_env.reset(seed=3000 + episode)
        policy.reset()
        done = False
        while not done:
            start = time.perf_counter()
            action = policy.select_action(obs)
            expert_ms.append((time.perf_counter() - start) * 1000)
            queries = trace_env.queries
            start = time.perf_counter()
            obs, _, terminated, truncated, _ = trace_env.step(action)
            elapsed = (time.perf_counter() - start) * 1000
            (query_ms if trace_env.queries > queries else step_ms).append(elapsed)
            done = terminated or truncated
    execute = policy.config.execute
    chunk_starts = expert_ms[::execute]
    amortized = (np.sum(expert_ms) + np.sum(query_ms) + np.sum(step_ms)) / len(expert_ms)

    torch.set_num_threads(args.train_threads)
    net = ActionExpertNet(policy.config)
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    b = 64
    inputs = (torch.randn(b, 32, POINT_DIM), torch.ones(b, 32), torch.randn(b, 8), torch.randn(b, 1280),
              torch.randn(b, 64, 112) if policy.config.wrist_camera else None)
    target = torch.randn(b, policy.config.chunk * 7)
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
    print(json.dumps({
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads (train)",
        "policy": args.policy, "threads": args.threads, "steps": len(expert_ms),
        "expert_ms_median_chunk_start": round(float(np.median(chunk_starts)), 2),
        "mu0_query_ms_median": round(float(np.median(query_ms)), 2),
        "physics_step_ms_median": round(float(np.median(step_ms)), 2),
        "amortized_ms_per_step": round(float(amortized), 2),
        "train_samples_per_s": round(samples_per_s, 1)}, indent=1))


if __name__ == "__main__":
    main()
