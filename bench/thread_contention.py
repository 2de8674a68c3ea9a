"""Two torch processes on a 2-core machine: how OpenMP's waiting policy and the thread count change their speed.

Each process runs a small MLP's training steps (batch 64, 256-512-256, Adam: about the size of an action expert)
for ``--seconds``; steps/s is reported for one process alone and for two at once, under OpenMP's default waiting
(threads spin for a while before sleeping), ``OMP_WAIT_POLICY=PASSIVE`` (they sleep at once) and one thread per
process. Why it matters here: `make test` runs two pytest workers, and a study training in the background
competes with whatever else runs.

    python bench/thread_contention.py --seconds 8
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

WORKLOAD = """
import time, torch
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256))
opt = torch.optim.Adam(net.parameters())
x = torch.randn(64, 256)
start, steps = time.perf_counter(), 0
while time.perf_counter() - start < {seconds}:
    loss = net(x).square().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    steps += 1
print(steps / (time.perf_counter() - start))
"""

SETTINGS = {  # name -> environment overrides
    "default (2 threads)": {},
    "OMP_WAIT_POLICY=PASSIVE (2 threads)": {"OMP_WAIT_POLICY": "PASSIVE"},
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
}


def run(copies: int, env_overrides: dict[str, str], seconds: float) -> list[float]:
    """Start ``copies`` workload processes at once; their steps/s."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env.update(env_overrides)
    procs = [subprocess.Popen([sys.executable, "-c", WORKLOAD.format(seconds=seconds)], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    return [float(p.communicate()[0]) for p in procs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each measurement")
    args = parser.parse_args()
    print("| setting | 1 process, steps/s | 2 processes, steps/s each | 2 processes, total |")
    print("|---|---:|---:|---:|")
    for name, overrides in SETTINGS.items():
        alone = run(1, overrides, args.seconds)[0]
        pair = run(2, overrides, args.seconds)
        print(f"| {name} | {alone:.0f} | {' / '.join(f'{s:.0f}' for s in pair)} | {sum(pair):.0f} |")


if __name__ == "__main__":
    main()
