"""``mu0sim eval``: closed-loop success of action experts, one row per task x robot x policy.

Every finished episode is appended to ``OUT/episodes.jsonl`` at once, so Ctrl-C keeps it and a rerun resumes with
the episodes still missing. The tables cover every (task, robot, policy) the folder's log holds. Rows of
``results.json``: ``task, robot, policy, episodes, successes, success_rate, wilson_low, wilson_high, mean_length,
steps_per_s``; ``results.md`` is the same table, ``results.png`` a bar chart with the 95% intervals, and
``videos/`` the first ``videos`` episodes of each row with μ0's predicted traces drawn.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mu0sim.envs.catalog import ROBOTS, TASKS, check_choice
from mu0sim.io import atomic_write_text, checkpoint_fingerprint


BACKENDS = ("local", "ray")


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    # at p = 0 or 1 the bound equals p only up to rounding (e.g. 0.9999999999999999 for 6/6), and a plot's error bar
    # (p - low, high - p) must not go negative
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


def sign_test_p(only_a: int, only_b: int) -> float:
    """Two-sided exact sign test on the discordant seeds of two policies evaluated on the same seeds (those only one
    of them succeeds on): the chance of a split at least this uneven if neither policy were better."""
    n, k = only_a + only_b, max(only_a, only_b)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n)


@dataclass(frozen=True)
class PairedOutcomes:
    """Two policies on the seeds both played: how many each succeeds on, together and alone."""

    seeds: int
    both: int
    only_a: int
    only_b: int

    @property
    def p_value(self) -> float:
        return sign_test_p(self.only_a, self.only_b)


def paired_outcomes(a: list[dict], b: list[dict]) -> PairedOutcomes:
    """Compare two policies' episode records (``episodes.jsonl`` rows: ``seed``, ``success``) seed by seed."""
    success_a = {r["seed"]: bool(r["success"]) for r in a}
    success_b = {r["seed"]: bool(r["success"]) for r in b}
    seeds = success_a.keys() & success_b.keys()
    return PairedOutcomes(seeds=len(seeds), both=sum(success_a[s] and success_b[s] for s in seeds),
                          only_a=sum(success_a[s] and not success_b[s] for s in seeds),
                          only_b=sum(success_b[s] and not success_a[s] for s in seeds))


@dataclass
class EvalConfig:
    policies: list[str]
    task: str
    robots: list[str]
    episodes: int = 50
    seed_start: int = 1000
    out: str = "results"
    mu0: str | None = None  # default: the μ0 each policy was trained with
    videos: int = 0  # episodes per row written as MP4 with the predicted traces (the first seeds)
    workers: int = 1  # worker processes (local) or actors (Ray); outcomes do not depend on it
    backend: str = "local"  # "local" (this process, or a process pool) or "ray"
    address: str | None = None  # Ray cluster address; None starts a local Ray instance
    # how μ0 runs in every episode (Mu0.from_pretrained's runtime): "onnxruntime" is 1.4-1.5x faster per query, but
    # its float rounding differs, so an episode may end otherwise than with "torchscript" (= "eager")
    mu0_runtime: str = "torchscript"


def policy_id(policy: str | Path) -> str:
    """What an episode of the checkpoint folder ``policy`` is tied to: its weights' fingerprint, and for a variant
    whose closed-loop traces come from the ground-truth oracle, the oracle's version past the first (its futures
    play the episode as much as the weights do: a changed oracle must not reuse the old oracle's episodes; ids
    recorded before versions existed are those of version 1)."""
    from mu0sim.policies.train_bc import oracle_version

    meta = json.loads((Path(policy) / "config.json").read_text())["policy"]
    version = oracle_version(meta["variant"], meta["task"])
    fingerprint = checkpoint_fingerprint(policy)
    return fingerprint if version in (None, 1) else f"{fingerprint}+oracle{version}"


def current_episodes(records: list[dict]) -> list[dict]:
    """The records of the checkpoints now at their paths: an episode carries its policy's id (:func:`policy_id`),
    and one played by a checkpoint since retrained in place (or recorded without a fingerprint, or with another
    oracle) no longer counts. Records of a checkpoint that is gone are kept."""
    ids = {}
    for policy in {r["policy"] for r in records}:
        ids[policy] = policy_id(policy) if (Path(policy) / "model.safetensors").exists() else None
    return [r for r in records if ids[r["policy"]] is None or r.get("policy_id") == ids[r["policy"]]]


def outcome_class(runtime: str) -> str:
    """μ0 runtimes that play identical episodes share a class: eager and TorchScript give bit-identical outputs."""
    return "torchscript" if runtime == "eager" else runtime


def played_with(record: dict) -> str:
    """The outcome class of the μ0 runtime an episode record was played with; records from before the runtime was
    recorded are TorchScript's."""
    return outcome_class(record.get("mu0_runtime", "torchscript"))


def _policy_robot(policy: str) -> tuple[str, str]:
    meta = json.loads((Path(policy) / "config.json").read_text())
    return meta["policy"]["robot"], meta["train_config"]["mu0"]


def evaluate(config: EvalConfig, progress: bool = True) -> dict:
    check_choice("task", config.task, TASKS)
    for robot in config.robots:
        check_choice("robot", robot, ROBOTS)
    if config.episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {config.episodes}")
    if config.workers < 1:
        raise ValueError(f"workers must be >= 1, got {config.workers}")
    check_choice("backend", config.backend, BACKENDS)
    from mu0sim.model.inference_graph import RUNTIMES  # here, not at the top: the statistics above need no torch

    check_choice("mu0_runtime", config.mu0_runtime, RUNTIMES)
    runtime = outcome_class(config.mu0_runtime)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "episodes.jsonl"
    done = current_episodes([json.loads(line) for line in log.read_text().splitlines() if line.strip()]
                            if log.exists() else [])
    seeds = list(range(config.seed_start, config.seed_start + config.episodes))
    jobs, trained_for = [], {}
    for policy in config.policies:
        if not (Path(policy) / "config.json").exists():
            raise FileNotFoundError(f"policy checkpoint {policy} not found (expected {policy}/config.json)")
        robot, mu0 = _policy_robot(policy)
        trained_for[policy] = robot
        if robot in config.robots:  # --robots picks rows among the policies given
            jobs.append((policy, robot, config.mu0 or mu0))
    # a robot asked for and played by none of them would silently drop out of the table
    missing = [r for r in config.robots if r not in trained_for.values()]
    if missing:
        raise ValueError(f"no policy was trained for robot(s) {', '.join(missing)}: each policy runs on its own "
                         f"robot; the policies given are for "
                         f"{', '.join(f'{r} ({p})' for p, r in trained_for.items())}")
    for policy, robot, _ in jobs:  # one row's episodes are all played alike, or its table would mix two runtimes
        other = {played_with(r) for r in done
                 if (r["policy"], r["robot"], r["task"]) == (policy, robot, config.task)} - {runtime}
        if other:
            raise ValueError(f"{log} holds episodes of {policy} on {config.task}/{robot} played with μ0 runtime "
                             f"{', '.join(sorted(other))}, not {config.mu0_runtime}: evaluate into another --out, "
                             f"or resume with --mu0-runtime {sorted(other)[0]}")
    pool = None
    if config.backend == "local" and config.workers > 1:
        from mu0sim.rollouts.workers import EpisodePool

        pool = EpisodePool(config.workers)  # one pool for every row: workers start once per call
    try:
        for policy, robot, mu0 in jobs:
            finished = {r["seed"] for r in done
                        if (r["policy"], r["robot"], r["task"]) == (policy, robot, config.task)}
            todo = [s for s in seeds if s not in finished]
            if todo:
                done.extend(_run_row(config, pool, policy, robot, mu0, todo, sorted(set(seeds[:config.videos]) &
                                                                                   set(todo)), log, progress))
    finally:
        if pool is not None:
            pool.close()
    # one row per (task, robot, policy) in the folder's log: a folder evaluated piece by piece keeps one table
    rows = []
    keys = sorted({(r["task"], r["robot"], r["policy"]) for r in done})
    for task, robot, policy in keys:
        eps = [r for r in done if (r["task"], r["robot"], r["policy"]) == (task, robot, policy)]
        k, n = sum(r["success"] for r in eps), len(eps)
        low, high = wilson_interval(k, n)
        steps, wall = sum(r["length"] for r in eps), sum(r["wall_s"] for r in eps)
        rows.append({"task": task, "robot": robot, "policy": policy, "episodes": n, "successes": k,
                     "success_rate": k / n if n else None, "wilson_low": low, "wilson_high": high,
                     "mean_length": steps / n if n else None, "steps_per_s": steps / wall if wall else None})
    atomic_write_text(out / "results.json", json.dumps(rows, indent=1))
    atomic_write_text(out / "results.md", results_table(rows))
    plot_results(rows, out / "results.png")
    return {"out": str(out), "rows": [{k: r[k] for k in ("task", "robot", "policy", "success_rate")} for r in rows
                                      if (r["robot"], r["policy"]) in {(j[1], j[0]) for j in jobs}]}


def _run_row(config: EvalConfig, pool, policy: str, robot: str, mu0: str, seeds: list[int], video_seeds: list[int],
             log: Path, progress: bool) -> Iterator[dict]:
    """Run one row's missing ``seeds`` (in this process, on ``pool``, or on Ray), appending each finished episode
    to ``log`` at once (Ctrl-C or a crash keeps it) and yielding its record."""
    from tqdm import tqdm

    from mu0sim.rollouts.closed_loop import iter_episodes

    video_dir = Path(config.out) / "videos"
    if pool is None and config.backend == "local":
        outcomes = iter_episodes(policy, mu0, config.task, robot, seeds, progress=progress, video_dir=video_dir,
                                 video_seeds=set(video_seeds), mu0_runtime=config.mu0_runtime)
    else:
        if pool is not None:
            outcomes = pool.run(policy, mu0, config.task, robot, seeds, video_dir, video_seeds, config.mu0_runtime)
        else:
            from mu0sim.rollouts.workers import run_episodes_ray

            outcomes = run_episodes_ray(policy, mu0, config.task, robot, seeds, workers=config.workers,
                                        address=config.address, video_dir=video_dir, video_seeds=video_seeds,
                                        mu0_runtime=config.mu0_runtime)
        outcomes = tqdm(outcomes, total=len(seeds), unit="ep", disable=not progress, dynamic_ncols=True,
                        desc=f"eval {config.task}/{robot} ({config.workers} {config.backend} workers)")
    played_by = policy_id(policy)
    for outcome in outcomes:
        record = {"policy": policy, "policy_id": played_by, "task": config.task, "robot": robot,
                  "seed": outcome.seed, "success": outcome.success, "length": outcome.length,
                  "sim_error": outcome.sim_error, "wall_s": outcome.wall_s,
                  "first_grasp_step": outcome.first_grasp_step, "mu0_runtime": config.mu0_runtime}
        with open(log, "a") as f:  # at once: Ctrl-C or a crash keeps every finished episode
            f.write(json.dumps(record) + "\n")
        yield record


def plot_results(rows: list[dict], path: Path) -> None:
    """Bar chart of success rates with their 95% Wilson intervals, one bar per (task, robot, policy) row."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['task']}/{r['robot']}\n{Path(r['policy']).name}" for r in rows]
    rates = [r["success_rate"] for r in rows]
    err = [[r["success_rate"] - r["wilson_low"] for r in rows], [r["wilson_high"] - r["success_rate"] for r in rows]]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(rows) + 1.5), 3.6))
    ax.bar(range(len(rows)), rates, yerr=err, capsize=4, color="#4C72B0")
    for i, r in enumerate(rows):
        ax.text(i, 0.02, f"{r['successes']}/{r['episodes']}", ha="center", color="white", fontsize=8)
    ax.set_xticks(range(len(rows)), labels, fontsize=7, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (95% Wilson)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def results_table(rows: list[dict]) -> str:
    lines = ["| task | robot | policy | success | 95% Wilson | mean length | steps/s |",
             "|---|---|---|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['robot']} | {r['policy']} | {r['successes']}/{r['episodes']} | "
                     f"{r['wilson_low']:.2f}-{r['wilson_high']:.2f} | {r['mean_length']:.1f} | "
                     f"{r['steps_per_s']:.1f} |")
    return "\n".join(lines) + "\n"

