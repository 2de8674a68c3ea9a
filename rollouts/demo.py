"""``mu0sim demo``: the whole idea on a laptop CPU — frozen μ0's traces condition per-robot action experts.

Stages (each reuses what a previous run finished, so a rerun after Ctrl-C picks up where it stopped):

1. load the shipped frozen μ0 (and note which robots it never saw),
2. collect scripted demos per task x robot (``mu0sim collect``; resumable files),
3. behaviour-clone one trace-conditioned action expert per task x robot (``mu0sim train-policy``; μ0's features
   over the demos are computed once and cached),
4. evaluate them in closed loop with μ0 in the loop (``mu0sim eval``; every episode appended as it ends),
5. write ``OUT/report.md`` (success table, bar chart, a video per robot with μ0's predicted traces drawn).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mu0sim.io import atomic_write_text


@dataclass
class DemoConfig:
    """Options of ``mu0sim demo``. ``demos``: scripted demos per task x robot (seeds 0..demos-1); ``episodes``:
    evaluation episodes per task x robot (seeds ``seed_start``..); ``steps``: behaviour-cloning steps."""

    out: str = "runs/demo"
    mu0: str = "checkpoints/mu0-sim"
    tasks: list[str] = field(default_factory=lambda: ["Lift"])
    robots: list[str] = field(default_factory=lambda: ["Panda", "UR5e", "Kinova3"])  # Kinova3: unseen by μ0
    variant: str = "trace"
    demos: int = 40
    episodes: int = 20
    seed_start: int = 1000
    steps: int = 1500
    feature_every: int = 2  # μ0 features on every 2nd demo step: half the replay time of the 10-minute budget
    videos: int = 1
    workers: int = 2  # processes for the μ0 feature replay and the evaluation (outcomes do not depend on it)

    def check(self) -> None:
        from mu0sim.policies.action_expert import PRETRAINED_VARIANTS, VARIANTS
        from mu0sim.rollouts.ablate import check_collectable

        check_collectable(self.tasks, self.robots)
        if self.variant not in VARIANTS or self.variant in PRETRAINED_VARIANTS:  # the demo trains on one robot's data
            valid = [v for v in VARIANTS if v not in PRETRAINED_VARIANTS]
            raise ValueError(f"unknown demo variant {self.variant!r}; valid variants: {', '.join(valid)}")
        for name in ("demos", "episodes", "steps", "feature_every", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (Path(self.mu0) / "config.json").exists():
            raise FileNotFoundError(f"μ0 checkpoint {self.mu0} not found (expected {self.mu0}/config.json)")


def _stage(index: int, title: str) -> float:
    print(f"\n== [{index}/5] {title} ==", flush=True)
    return time.perf_counter()


def run_demo(config: DemoConfig, progress: bool = True) -> dict:
    """Run (or finish) the demo; returns the summary that ``OUT/summary.json`` holds."""
    from mu0sim.model import Mu0
    from mu0sim.policies.train_bc import TrainPolicyConfig, mu0_fingerprint
    from mu0sim.rollouts.ablate import ensure_dataset, ensure_policies
    from mu0sim.rollouts.evaluate import EvalConfig, evaluate

    config.check()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    t = _stage(1, f"frozen μ0 from {config.mu0}")
    mu0 = Mu0.from_pretrained(config.mu0)
    seen = json.loads((Path(config.mu0) / "config.json").read_text()).get("robots_seen", [])
    unseen = [r for r in config.robots if r not in seen]
    print(f"μ0 {mu0_fingerprint(config.mu0)}: trained on {', '.join(seen)}; never saw {', '.join(unseen) or '-'}")
    del mu0
    timings["load_mu0_s"] = time.perf_counter() - t

    t = _stage(2, f"collect {config.demos} scripted demos per task x robot")
    datasets = {(task, robot): ensure_dataset(out / "data" / f"{task}_{robot}.hdf5", task, robot, config.demos,
                                              progress)
                for task in config.tasks for robot in config.robots}
    timings["collect_s"] = time.perf_counter() - t

    t = _stage(3, f"train {config.variant} action experts on frozen μ0's traces ({config.steps} steps each)")
    trains = {f"{task}/{robot}": TrainPolicyConfig(data=[str(path)], mu0=config.mu0, variant=config.variant,
                                                   out=str(out / "policies" / f"{task}_{robot}_{config.variant}"),
                                                   episodes=config.demos, steps=config.steps,
                                                   feature_every=config.feature_every)
              for (task, robot), path in datasets.items()}
    trained = ensure_policies(trains, config.workers, progress)
    policies = {(task, robot): trained[f"{task}/{robot}"] for task, robot in datasets}
    timings["train_s"] = time.perf_counter() - t

    t = _stage(4, f"closed-loop evaluation, {config.episodes} episodes per task x robot, μ0 in the loop")
    for task in config.tasks:
        evaluate(EvalConfig(policies=[str(policies[task, r]) for r in config.robots], task=task,
                            robots=list(config.robots), episodes=config.episodes, seed_start=config.seed_start,
                            out=str(out / "eval"), videos=config.videos, workers=config.workers),
                 progress=progress)
    wanted = {str(p) for p in policies.values()}
    rows = [r for r in json.loads((out / "eval" / "results.json").read_text()) if r["policy"] in wanted]
    timings["eval_s"] = time.perf_counter() - t

    t = _stage(5, f"report -> {out / 'report.md'}")
    timings["report_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - start
    summary = {"config": asdict(config), "robots_unseen_by_mu0": unseen, "rows": rows,
               "timings_s": {k: round(v, 1) for k, v in timings.items()}}
    atomic_write_text(out / "report.md", report_markdown(summary, out))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    print(table(rows, unseen))
    print(f"\nreport: {out / 'report.md'}  (total {timings['total_s'] / 60:.1f} min this run)")
    return summary


def table(rows: list[dict], unseen: list[str]) -> str:
    lines = ["| task | robot | success | 95% Wilson | mean length |", "|---|---|---:|---|---:|"]
    for r in rows:
        robot = r["robot"] + (" (unseen by μ0)" if r["robot"] in unseen else "")
        lines.append(f"| {r['task']} | {robot} | {r['successes']}/{r['episodes']} | "
                     f"{r['wilson_low']:.2f}-{r['wilson_high']:.2f} | {r['mean_length']:.1f} |")
    return "\n".join(lines)


def report_markdown(summary: dict, out: Path) -> str:
    config, rows = summary["config"], summary["rows"]
    videos = sorted((out / "eval" / "videos").glob("*.mp4")) if (out / "eval" / "videos").exists() else []
    wanted = {Path(r["policy"]).name for r in rows}
    videos = [v for v in videos if any(v.name.startswith(f"{name}_seed") for name in wanted)]
    timing = ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in summary["timings_s"].items())
    lines = [
        "# mu0sim demo",
        "",
        f"Frozen μ0 (`{config['mu0']}`) predicts 3D traces of query points from the camera image; a small "
        f"`{config['variant']}` action expert per robot, behaviour-cloned from {config['demos']} scripted demos, "
        f"turns them into actions. {config['episodes']} closed-loop episodes per row (seeds "
        f"{config['seed_start']}-{config['seed_start'] + config['episodes'] - 1}, disjoint from the demos).",
        "",
        table(rows, summary["robots_unseen_by_mu0"]),
        "",
        "![success rates](eval/results.png)",
        "",
        "Videos (μ0's camera; each query point's predicted future drawn from yellow = next step to purple = 32 "
        "steps ahead):",
        "",
        *[f"- [{v.name}]({v.relative_to(out).as_posix()})" for v in videos],
        "",
        f"Wall time of this run: {timing}.",
        "",
    ]
    return "\n".join(lines)


__all__ = ["DemoConfig", "run_demo"]
