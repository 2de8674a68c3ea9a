"""Closed-loop episodes over a local process pool, robust to crashed workers.

:class:`EpisodePool` starts ``workers`` processes (``spawn``: forked GL contexts deadlock) that live as long as the
pool, across every row (policy x task x robot) it runs. Seeds are handed out one at a time to whichever worker is
free, so a row's fixed seed list ends up spread evenly by work, not by count (Lift episodes vary 44-78 steps), and a
worker keeps the row's env, μ0 and policy built between episodes (start-up: importing torch and robosuite, building
the env, loading μ0 — seconds, paid once per worker, not once per row). An episode's outcome depends only on its seed
(env, μ0 sampling and policy are reseeded per episode, one torch thread everywhere), so results are the same for any
number of workers and any assignment. A worker that dies (segfault, OOM kill, ``os._exit``) is replaced: its
episode is retried at most ``max_retries`` times, then recorded as an error (a failure with its reason).
:func:`run_episodes_ray` does the same on Ray actors (a local instance or a cluster's ``address``).
"""

from __future__ import annotations

import itertools
import os
import queue as queue_module
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from mu0sim.rollouts.closed_loop import EpisodeOutcome

CRASH_HOOK = "MU0SIM_TEST_CRASH_ONCE"  # tests: "<seed>:<marker file>" makes a worker die once at that seed


@dataclass(frozen=True)
class EpisodeJob:
    """One episode for a worker: the row it belongs to, its seed, and where its video goes (None: no video)."""

    job_id: int
    policy_dir: str
    mu0: str
    task: str
    robot: str
    seed: int
    video_dir: str | None = None
    mu0_runtime: str = "torchscript"

    @property
    def row(self) -> tuple[str, str, str, str, str]:
        """What a worker builds once and keeps: ``EpisodeRunner(*row)``."""
        return self.policy_dir, self.mu0, self.task, self.robot, self.mu0_runtime


def _crash_hook() -> tuple[int, Path] | None:
    hook = os.environ.get(CRASH_HOOK, "")
    if not hook:
        return None
    seed, _, marker = hook.partition(":")
    return int(seed), Path(marker)


def _crash_if_hooked(hook: tuple[int, Path] | None, seed: int) -> None:
    if hook is not None and seed == hook[0] and not hook[1].exists():
        hook[1].touch()
        os._exit(13)


def _worker(inbox, results) -> None:
    """A pool process: runs the jobs of ``inbox`` until it reads None, keeping the last row's env and policy."""
    from mu0sim.io import exit_with_parent

    exit_with_parent()  # daemonic workers outlive a parent killed by a signal; this one must not
    os.environ.setdefault("LP_NUM_THREADS", "1")  # Mesa's software rasterizer: set before the first GL context
    import torch

    from mu0sim.rollouts.closed_loop import EpisodeRunner

    torch.set_num_threads(1)  # one core per worker: more threads per process oversubscribe the machine
    hook = _crash_hook()
    runner: EpisodeRunner | None = None
    row = None
    try:
        while (job := inbox.get()) is not None:
            if job.row != row:
                if runner is not None:
                    runner.close()
                runner, row = EpisodeRunner(*job.row), job.row
            _crash_if_hooked(hook, job.seed)
            results.put((job.job_id, asdict(runner.run(job.seed, job.video_dir))))
    finally:
        if runner is not None:
            runner.close()


class EpisodePool:
    """``workers`` persistent episode processes (see the module docstring). Use as a context manager; :meth:`run`
    yields each row's outcomes as episodes finish, in completion order."""

    def __init__(self, workers: int = 2, max_retries: int = 2) -> None:
        import multiprocessing as mp

        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.size, self.max_retries = workers, max_retries
        self._ctx = mp.get_context("spawn")
        self._results = self._ctx.Queue()
        self._procs: dict[int, tuple] = {}  # slot -> (process, inbox); started on first use
        self._job_ids = itertools.count()

    def __enter__(self) -> "EpisodePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _slot(self, slot: int):
        """The live process of ``slot`` (started, or restarted after a crash, on demand) and its inbox."""
        proc, inbox = self._procs.get(slot, (None, None))
        if proc is None or not proc.is_alive():
            inbox = self._ctx.Queue()
            proc = self._ctx.Process(target=_worker, args=(inbox, self._results), daemon=True)
            proc.start()
            self._procs[slot] = (proc, inbox)
        return self._procs[slot]

    def _kill(self, slot: int) -> None:
        proc, _ = self._procs.pop(slot, (None, None))
        if proc is not None and proc.is_alive():
            proc.kill()
            proc.join(5)

    def run(self, policy_dir: str | Path, mu0: str | Path, task: str, robot: str, seeds: list[int],
            video_dir: str | Path | None = None, video_seeds: list[int] = (),
            mu0_runtime: str = "torchscript") -> Iterator[EpisodeOutcome]:
        """Yield one :class:`EpisodeOutcome` per seed as episodes finish. Stopping early (an exception, Ctrl-C, a
        consumer that breaks off) kills the workers still busy; the pool restarts them on next use."""
        todo = deque(seeds)
        busy: dict[int, EpisodeJob] = {}  # slot -> the job it is running
        crashes: Counter = Counter()
        videos = set(video_seeds)

        def assign(slot: int, seed: int | None = None) -> None:
            if seed is None:
                if not todo:
                    return
                seed = todo.popleft()
            job = EpisodeJob(next(self._job_ids), str(policy_dir), str(mu0), task, robot, seed,
                             None if video_dir is None or seed not in videos else str(video_dir), mu0_runtime)
            busy[slot] = job
            self._slot(slot)[1].put(job)

        for slot in range(min(self.size, len(todo))):
            assign(slot)
        try:
            while busy:
                try:
                    job_id, outcome = self._results.get(timeout=0.5)
                except queue_module.Empty:
                    job_id = None
                if job_id is not None:
                    slot = next((s for s, j in busy.items() if j.job_id == job_id), None)
                    if slot is None:  # from a job abandoned earlier (its worker was killed): not this run's
                        continue
                    del busy[slot]
                    yield EpisodeOutcome(**outcome)
                    assign(slot)
                    continue
                for slot, job in list(busy.items()):
                    proc = self._procs[slot][0]
                    if proc.is_alive():
                        continue
                    crashes[job.seed] += 1
                    if crashes[job.seed] > self.max_retries:
                        del busy[slot]
                        yield EpisodeOutcome(job.seed, False, 0, f"worker crashed {crashes[job.seed]} times in "
                                                                 f"this episode (last exit code {proc.exitcode})")
                        assign(slot)
                    else:
                        assign(slot, job.seed)  # a fresh process retries it
        finally:
            for slot in list(busy):
                self._kill(slot)

    def close(self) -> None:
        for slot, (proc, inbox) in list(self._procs.items()):
            if proc.is_alive():
                inbox.put(None)
        for slot, (proc, _) in list(self._procs.items()):
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        self._procs.clear()


def run_episodes_parallel(policy_dir: str | Path, mu0: str | Path, task: str, robot: str, seeds: list[int],
                          workers: int = 2, max_retries: int = 2, video_dir: str | Path | None = None,
                          video_seeds: list[int] = (), mu0_runtime: str = "torchscript") -> Iterator[EpisodeOutcome]:
    """One row on a pool of its own (:class:`EpisodePool` to share the workers across rows)."""
    with EpisodePool(workers, max_retries) as pool:
        yield from pool.run(policy_dir, mu0, task, robot, seeds, video_dir, video_seeds, mu0_runtime)


class _RayEpisodeRunner:
    """A Ray actor: builds the row's env, μ0 and policy on first use and keeps them; one episode per call."""

    def __init__(self, policy_dir: str, mu0: str, task: str, robot: str, video_dir: str | None,
                 video_seeds: list[int], mu0_runtime: str = "torchscript") -> None:
        os.environ.setdefault("LP_NUM_THREADS", "1")  # as in the process pool: one core per actor
        import torch

        torch.set_num_threads(1)
        self.args = (policy_dir, mu0, task, robot, mu0_runtime)
        self.video = (video_dir, set(video_seeds))
        self.runner = None

    def run(self, seed: int) -> dict:
        from mu0sim.rollouts.closed_loop import EpisodeRunner

        _crash_if_hooked(_crash_hook(), seed)
        if self.runner is None:
            self.runner = EpisodeRunner(*self.args)
        # one episode per call: a crash loses only that episode, and any actor can take any seed
        video_dir = self.video[0] if seed in self.video[1] else None
        return asdict(self.runner.run(seed, video_dir))


def run_episodes_ray(policy_dir: str | Path, mu0: str | Path, task: str, robot: str, seeds: list[int],
                     workers: int = 2, address: str | None = None, max_retries: int = 2,
                     video_dir: str | Path | None = None, video_seeds: list[int] = (),
                     mu0_runtime: str = "torchscript") -> Iterator[EpisodeOutcome]:
    """Like :func:`run_episodes_parallel` on Ray actors (``address``: an existing cluster; None starts a local
    instance). Paths must be readable by every node (shared storage on a cluster)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {k: v for k, v in os.environ.items()
                                           if k in ("MUJOCO_GL", CRASH_HOOK)}})
    runner = ray.remote(num_cpus=1)(_RayEpisodeRunner)
    args = (str(policy_dir), str(mu0), task, robot, None if video_dir is None else str(video_dir), list(video_seeds),
            mu0_runtime)
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


__all__ = ["EpisodeJob", "EpisodePool", "run_episodes_parallel", "run_episodes_ray"]
