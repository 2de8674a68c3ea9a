"""Closed-loop episodes over a local process pool, robust to crashed workers.

The seed list is split evenly over ``workers`` processes (started with ``spawn``: forked GL contexts deadlock),
each builds its env, μ0 and policy once and streams every finished episode back at once. An episode's outcome
depends only on its seed (env, μ0 sampling and policy are reseeded per episode), so results are the same for any
number of workers. A worker that dies (segfault, OOM kill, ``os._exit``) is replaced: the episode it was running
is retried at most ``max_retries`` times, then recorded as an error (a failure with its reason), and its remaining
seeds go to the new worker. :func:`run_episodes_ray` does the same on Ray actors (a local instance or a
cluster's ``address``), one episode per task.
"""

from __future__ import annotations

import os
import queue as queue_module
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from mu0sim.rollouts.closed_loop import EpisodeOutcome

CRASH_HOOK = "MU0SIM_TEST_CRASH_ONCE"  # tests: "<seed>:<marker file>" makes a worker die once at that seed


def split_seeds(seeds: list[int], workers: int) -> list[list[int]]:
    """Contiguous, even split (sizes differ by at most one); empty parts dropped."""
    n = max(1, min(workers, len(seeds)))
    size, extra = divmod(len(seeds), n)
    parts, start = [], 0
    for i in range(n):
        end = start + size + (i < extra)
        parts.append(seeds[start:end])
        start = end
    return [p for p in parts if p]


def _worker(policy_dir: str, mu0: str, task: str, robot: str, seeds: list[int], results, video_dir: str | None,
            video_seeds: list[int]) -> None:
    os.environ.setdefault("LP_NUM_THREADS", "1")  # Mesa's software rasterizer: set before the first GL context
    import torch

    from mu0sim.rollouts.closed_loop import iter_episodes

    torch.set_num_threads(1)  # one core per worker: more threads per process oversubscribe the machine
    hook = os.environ.get(CRASH_HOOK, "")
    crash_seed, _, marker = hook.partition(":")
    for outcome in iter_episodes(policy_dir, mu0, task, robot, seeds, progress=False, video_dir=video_dir,
                                 video_seeds=set(video_seeds), before_episode=(
                                     _crash_once(int(crash_seed), Path(marker)) if hook else None)):
        results.put(asdict(outcome))


def _crash_once(seed: int, marker: Path):
    def before(episode_seed: int) -> None:
        if episode_seed == seed and not marker.exists():
            marker.touch()
            os._exit(13)
    return before


def run_episodes_parallel(policy_dir: str | Path, mu0: str | Path, task: str, robot: str, seeds: list[int],
                          workers: int = 2, max_retries: int = 2, video_dir: str | Path | None = None,
                          video_seeds: list[int] = ()) -> Iterator[EpisodeOutcome]:
    """Yield one :class:`EpisodeOutcome` per seed as episodes finish (in completion order)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    args = (str(policy_dir), str(mu0), task, robot)
    video = (None if video_dir is None else str(video_dir), list(video_seeds))
    running: dict = {}  # process -> its seed list
    finished: set[int] = set()
    crashes: Counter = Counter()

    def start(part: list[int]) -> None:
        proc = ctx.Process(target=_worker, args=(*args, part, results, *video), daemon=True)
        proc.start()
        running[proc] = part

    for part in split_seeds(list(seeds), workers):
        start(part)
    try:
        while running:
            try:
                outcome = EpisodeOutcome(**results.get(timeout=0.5))
                finished.add(outcome.seed)
                yield outcome
                continue
            except queue_module.Empty:
                pass
            for proc in [p for p in running if not p.is_alive()]:
                part = running.pop(proc)
                yield from _drain(results, finished)  # outcomes it sent just before exiting
                left = [s for s in part if s not in finished]
                if not left:
                    continue
                crashed = left[0]  # a worker runs its seeds in order: it died in the first unfinished one
                crashes[crashed] += 1
                if crashes[crashed] > max_retries:
                    finished.add(crashed)
                    yield EpisodeOutcome(crashed, False, 0, f"worker crashed {crashes[crashed]} times in this "
                                                            f"episode (last exit code {proc.exitcode})")
                    left = left[1:]
                if left:
                    start(left)
    finally:
        for proc in running:
            proc.kill()


def _drain(results, finished: set[int]) -> Iterator[EpisodeOutcome]:
    while True:
        try:
            outcome = EpisodeOutcome(**results.get(timeout=0.2))
        except queue_module.Empty:
            return
        finished.add(outcome.seed)
        yield outcome



class _RayEpisodeRunner:
    """A Ray actor: builds env, μ0 and policy once (on first use), then runs one episode per call."""

    def __init__(self, policy_dir: str, mu0: str, task: str, robot: str, video_dir: str | None,
                 video_seeds: list[int]) -> None:
        os.environ.setdefault("LP_NUM_THREADS", "1")  # as in the process pool: one core per actor
        import torch

        torch.set_num_threads(1)
        self.args = (policy_dir, mu0, task, robot)
        self.video = (video_dir, set(video_seeds))

    def run(self, seed: int) -> dict:
        from mu0sim.rollouts.closed_loop import iter_episodes

        hook = os.environ.get(CRASH_HOOK, "")
        crash_seed, _, marker = hook.partition(":")
        before = _crash_once(int(crash_seed), Path(marker)) if hook else None
        # one episode per call: a crash loses only that episode, and any actor can take any seed
        (outcome,) = iter_episodes(*self.args, [seed], progress=False, video_dir=self.video[0],
                                   video_seeds=self.video[1], before_episode=before)
        return asdict(outcome)


def run_episodes_ray(policy_dir: str | Path, mu0: str | Path, task: str, robot: str, seeds: list[int],
                     workers: int = 2, address: str | None = None, max_retries: int = 2,
                     video_dir: str | Path | None = None, video_seeds: list[int] = ()) -> Iterator[EpisodeOutcome]:
    """Like :func:`run_episodes_parallel` on Ray actors (``address``: an existing cluster; None starts a local
    instance). Paths must be readable by every node (shared storage on a cluster)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {k: v for k, v in os.environ.items()
                                           if k in ("MUJOCO_GL", CRASH_HOOK)}})
    runner = ray.remote(num_cpus=1)(_RayEpisodeRunner)
    args = (str(policy_dir), str(mu0), task, robot, None if video_dir is None else str(video_dir), list(video_seeds))
    actors = [runner.remote(*args) for _ in range(max(1, min(workers, len(seeds))))]
    todo = list(seeds)
    crashes: Counter = Counter()
    in_flight: dict = {}  # ObjectRef -> (actor index, seed)

    def submit(index: int) -> None:
        if todo:
            seed = todo.pop(0)
            in_flight[actors[index].run.remote(seed)] = (index, seed)

    for i in range(len(actors)):
        submit(i)
    try:
        while in_flight:
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            index, seed = in_flight.pop(ref)
            try:
                yield EpisodeOutcome(**ray.get(ref))
            except ray.exceptions.RayActorError as err:  # the actor's process died: replace it
                actors[index] = runner.remote(*args)
                crashes[seed] += 1
                if crashes[seed] > max_retries:
                    yield EpisodeOutcome(seed, False, 0, f"Ray worker crashed {crashes[seed]} times in this "
                                                         f"episode ({type(err).__name__})")
                else:
                    todo.insert(0, seed)
            submit(index)
    finally:
        for actor in actors:
            ray.kill(actor)


__all__ = ["run_episodes_parallel", "run_episodes_ray", "split_seeds"]
