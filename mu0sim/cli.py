"""The ``mu0sim`` command line. Each subcommand is a function taking the parsed arguments and returning an exit code.

Bad input (unknown task, robot, file, ...) raises ValueError/FileNotFoundError in the library; here it becomes one
clear line on stderr and exit code 2, never a stack trace.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence


def _cmd_envs(args: argparse.Namespace) -> int:
    from mu0sim.envs import CAMERAS, ROBOTS, TASKS

    if args.json:
        print(json.dumps({
            "tasks": {name: {"id": f"mu0sim/{name}-v0", "instruction": spec.instruction,
                             "max_episode_steps": spec.max_episode_steps, "cameras": list(spec.cameras)}
                      for name, spec in TASKS.items()},
            "robots": list(ROBOTS),
            "cameras": CAMERAS,
        }, indent=2))
        return 0
    print("Tasks (gym.make id, episode limit at 20 Hz, instruction):")
    for name, spec in TASKS.items():
        print(f"  {name:<18} mu0sim/{name}-v0{'':<{18 - len(name)}} {spec.max_episode_steps:>4} steps  "
              f"\"{spec.instruction}\"")
    print("\nRobots (gym.make(..., robot=NAME)):")
    print("  " + ", ".join(ROBOTS))
    print("\nCameras (gym.make(..., cameras=(NAME, ...))):")
    for name, where in CAMERAS.items():
        print(f"  {name:<20} {where}")
    print("\nAction: Box(-1, 1, (7,)) = [dx, dy, dz (1.0 = 5 cm), axis-angle (1.0 = 0.5 rad), grip (+1 closes)], "
          "world frame, every robot.")
    return 0


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_span(text: str, option: str) -> tuple[int, int]:
    """'FIRST-LAST' -> (FIRST, LAST), both included, FIRST <= LAST; anything else is a ValueError naming ``option``."""
    first, sep, last = text.partition("-")
    if not (sep and first.strip().isdigit() and last.strip().isdigit() and int(first) <= int(last)):
        raise ValueError(f"{option} takes FIRST-LAST with FIRST <= LAST, got {text!r}")
    return int(first), int(last)


def parse_int_list(text: str, option: str) -> list[int]:
    """'FIRST-LAST' (both included) or comma-separated integers -> the integers (seeds, demo indices)."""
    message = f"{option} takes FIRST-LAST (FIRST <= LAST) or comma-separated integers, got {text!r}"
    if "-" in text:
        try:
            first, last = parse_span(text, option)
        except ValueError:
            raise ValueError(message) from None  # a reversed span would otherwise be an empty list, silently
        return list(range(first, last + 1))
    try:
        return [int(v) for v in _csv(text)]
    except ValueError:
        raise ValueError(message) from None


def _cmd_collect(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from mu0sim.rollouts.collect import CollectConfig, Takeover, collect

    takeover = None
    if args.takeover_policy:
        takeover = Takeover(Path(args.takeover_policy), Path(args.takeover_mu0),
                            parse_span(args.takeover_steps, "--takeover-steps"))
    expert = {"noise_std": args.noise_std, "approach_jitter_m": args.approach_jitter_m}
    for option in args.expert_option:
        name, sep, value = option.partition("=")
        if not sep or not name:
            raise ValueError(f"--expert-option takes NAME=VALUE (e.g. settle_steps=6), got {option!r}")
        expert[name] = yaml.safe_load(value)
    config = CollectConfig(
        task=args.task, robot=args.robot, episodes=args.episodes, out=Path(args.out), cameras=_csv(args.cameras),
        image_size=args.image_size, depth=args.depth, segmentation=args.segmentation, seed=args.seed,
        workers=args.workers, video_dir=Path(args.video_dir) if args.video_dir else None,
        keep_failures=args.keep_failures, max_attempts=args.max_attempts, expert=expert,
        execution_noise_std=args.execution_noise_std, grip_flip_rate=args.grip_flip_rate, takeover=takeover)
    summary = collect(config)
    print(json.dumps(summary.to_dict()))
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from mu0sim.datasets.replay import replay_dataset, rerender_dataset

    if args.out:
        overrides = {}
        if args.cameras is not None:
            overrides["cameras"] = _csv(args.cameras)
        if args.image_size is not None:
            overrides["image_size"] = args.image_size
        if args.depth is not None:
            overrides["depth"] = args.depth
        if args.segmentation is not None:
            overrides["segmentation"] = args.segmentation
        demos = rerender_dataset(args.dataset, args.out, **overrides)
        print(json.dumps({"rerendered_demos": demos, "out": args.out, **overrides}))
        return 0
    report = replay_dataset(args.dataset)
    print(json.dumps(report.to_dict(with_per_demo=args.per_demo)))
    return 0


def _cmd_export_lerobot(args: argparse.Namespace) -> int:
    from mu0sim.datasets.lerobot import export_lerobot

    print(json.dumps(export_lerobot(args.dataset, args.out, episodes_per_file=args.episodes_per_file)))
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mu0sim.traces import ExtractConfig, extract_dataset

    config = ExtractConfig(dataset=Path(args.dataset), mode=args.mode, camera=args.camera,
                           points_per_object=args.points_per_object, grid=args.grid,
                           min_motion_m=args.min_motion_m, out=Path(args.out) if args.out else None,
                           episodes=args.episodes)
    print(json.dumps(extract_dataset(config)))
    return 0


def _cmd_show_traces(args: argparse.Namespace) -> int:
    from mu0sim.traces.show import show_traces

    print(json.dumps(show_traces(args.dataset, args.episode, args.out, mode=args.mode, traces_path=args.traces)))
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from mu0sim.config import apply_overrides
    from mu0sim.model.train import PretrainConfig, pretrain

    config = PretrainConfig(data=list(args.data), out=args.out, holdout_robot=args.holdout_robot,
                            models=tuple(m for m in args.models.split(",") if m), steps=args.steps,
                            batch_size=args.batch_size, seed=args.seed, threads=args.threads,
                            workers=args.workers)
    config = apply_overrides(config, args.overrides)
    print(json.dumps(pretrain(config)))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from mu0sim.rollouts.demo import DemoConfig, run_demo

    split = lambda text: [x for x in text.split(",") if x]  # noqa: E731
    run_demo(DemoConfig(out=args.out, mu0=args.mu0, tasks=split(args.tasks), robots=split(args.robots),
                        variant=args.variant, demos=args.demos, episodes=args.episodes, seed_start=args.seed_start,
                        steps=args.steps, videos=args.videos, workers=args.workers))
    return 0


def _cmd_ablate(args: argparse.Namespace) -> int:
    from mu0sim.rollouts.ablate import load_ablation, run_ablation, write_report

    settings = [f"--{key}={value}" for key, value in (("out", args.out), ("episodes", args.episodes),
                                                      ("workers", args.workers), ("data_dir", args.data_dir))
                if value is not None]
    config = load_ablation(args.config, [*settings, *args.overrides])
    if args.report_only:
        config.check()
        write_report(config)
    else:
        run_ablation(config)
    return 0


def _cmd_finetune_rl(args: argparse.Namespace) -> int:
    from mu0sim.config import apply_overrides
    from mu0sim.policies.finetune_rl import FinetuneConfig, finetune_rl

    config = FinetuneConfig(policy=args.policy, out=args.out, task=args.task, mu0=args.mu0, timesteps=args.timesteps,
                            seed=args.seed)
    config = apply_overrides(config, args.overrides)
    print(json.dumps(finetune_rl(config)))
    return 0


def _cmd_eval_traces(args: argparse.Namespace) -> int:
    from mu0sim.model.evaluate import EvalTracesConfig, eval_traces

    config = EvalTracesConfig(ckpt=args.ckpt, data=list(args.data), out=args.out, max_anchors=args.max_anchors,
                              num_samples=args.num_samples, seed=args.seed, history=not args.without_history)
    print(json.dumps(eval_traces(config)))
    return 0


def _cmd_train_policy(args: argparse.Namespace) -> int:
    from mu0sim.config import apply_overrides
    from mu0sim.datasets.hdf5 import read_env_args
    from mu0sim.policies.train_bc import TrainPolicyConfig, train_policy

    if args.robot is not None:
        for path in args.data:
            robot = read_env_args(path)["mu0sim"]["kwargs"]["robot"]
            if robot != args.robot:
                raise ValueError(f"{path} holds {robot} demos, not --robot {args.robot}")
    config = TrainPolicyConfig(data=list(args.data), mu0=args.mu0, out=args.out, variant=args.variant,
                               head=args.head, query=args.query, episodes=args.episodes, steps=args.steps,
                               seed=args.seed, pretrain_data=list(args.pretrain_data),
                               pretrain_steps=args.pretrain_steps,
                               wrist_camera=None if args.wrist_camera == "none" else args.wrist_camera,
                               feature_every=args.feature_every)
    config = apply_overrides(config, args.overrides)
    print(json.dumps(train_policy(config)))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from mu0sim.rollouts.evaluate import EvalConfig, evaluate

    config = EvalConfig(policies=list(args.policy), task=args.task, robots=[r for r in args.robots.split(",") if r],
                        episodes=args.episodes, seed_start=args.seed_start, out=args.out, mu0=args.mu0,
                        videos=args.videos, workers=args.workers, backend=args.backend, address=args.address,
                        mu0_runtime=args.mu0_runtime)
    print(json.dumps(evaluate(config)))
    return 0


Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _commands() -> list[Command]:
    def envs_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="machine-readable output")

    def collect_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--task", required=True, help="task name (mu0sim envs lists them)")
        p.add_argument("--robot", required=True, help="robot name")
        p.add_argument("--episodes", type=int, required=True,
                       help="demos the file should hold; rerunning with more appends, an interrupted run resumes")
        p.add_argument("--out", required=True, help="HDF5 file (robomimic layout)")
        p.add_argument("--cameras", default="", help="comma-separated cameras to record, e.g. agentview,"
                                                     "robot0_eye_in_hand (default: none, state only)")
        p.add_argument("--image-size", type=int, default=128, help="image side, pixels")
        p.add_argument("--depth", action="store_true", help="record metric depth per camera")
        p.add_argument("--segmentation", action="store_true", help="record robot/object segmentation per camera")
        p.add_argument("--seed", type=int, default=0, help="seed of the first attempt (attempt k uses seed + k)")
        p.add_argument("--workers", type=int, default=1, help="parallel simulation processes")
        p.add_argument("--video-dir", default=None, help="write an MP4 of the first camera per kept episode")
        p.add_argument("--noise-std", type=float, default=0.0, help="expert action noise std (action units)")
        p.add_argument("--approach-jitter-m", type=float, default=0.0, help="expert approach randomization (m)")
        p.add_argument("--expert-option", action="append", default=[], metavar="NAME=VALUE",
                       help="any other option of the task's scripted expert, e.g. settle_steps=6 for Stack "
                            "(repeatable)")
        p.add_argument("--execution-noise-std", type=float, default=0.0,
                       help="DART: Gaussian noise std (action units, arm) added to each executed action; the "
                            "expert's clean commands are stored as expert_actions, the labels behaviour cloning "
                            "trains on (default 0: execute the expert's actions)")
        p.add_argument("--grip-flip-rate", type=float, default=0.0,
                       help="DART for the gripper: per-step probability of inverting the executed gripper command "
                            "for 6 steps (the expert's own commands stay the labels; default 0)")
        p.add_argument("--takeover-policy", default=None, metavar="DIR",
                       help="DAgger-style starts: this action expert (mu0sim train-policy, same task and robot) "
                            "plays each attempt's first steps, then the scripted expert takes over from where it "
                            "got and only that continuation is recorded")
        p.add_argument("--takeover-steps", default="10-150", metavar="FIRST-LAST",
                       help="how many steps the takeover policy plays, uniform per attempt (default 10-150)")
        p.add_argument("--takeover-mu0", default="checkpoints/mu0-sim", help="the μ0 in the takeover policy's loop")
        p.add_argument("--keep-failures", action="store_true", help="also keep unsuccessful episodes")
        p.add_argument("--max-attempts", type=int, default=None, help="stop when the file holds this many attempts"
                                                                       ", all runs (default 5 x episodes + 20)")

    def replay_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("dataset", help="HDF5 file written by mu0sim collect")
        p.add_argument("--per-demo", action="store_true", help="report the divergence of every demo")
        p.add_argument("--out", default=None, help="re-render into this new file instead of checking divergence")
        p.add_argument("--cameras", default=None, help="with --out: comma-separated cameras to render")
        p.add_argument("--image-size", type=int, default=None, help="with --out: image side, pixels")
        p.add_argument("--depth", action=argparse.BooleanOptionalAction, default=None, help="with --out")
        p.add_argument("--segmentation", action=argparse.BooleanOptionalAction, default=None, help="with --out")

    def export_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("dataset", help="HDF5 file written by mu0sim collect")
        p.add_argument("out", help="new folder for the LeRobot v3.0 dataset")
        p.add_argument("--episodes-per-file", type=int, default=500, help="episodes per parquet/MP4 file")

    def extract_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("dataset", help="HDF5 file written by mu0sim collect")
        p.add_argument("--mode", default="sim", help="sim (ground truth from simulator state) or video (RGB-D "
                                                     "tracking, scored against sim)")
        p.add_argument("--camera", default=None, help="camera whose frames define keypoints and uv (default: the "
                                                      "dataset's first camera, else agentview)")
        p.add_argument("--points-per-object", type=int, default=16, help="surface keypoints per object")
        p.add_argument("--grid", type=int, default=0, help="also a G x G grid of image keypoints (0 = none)")
        p.add_argument("--min-motion-m", type=float, default=0.01, help="keep keypoints that move at least this")
        p.add_argument("--out", default=None, help="sidecar file (default DATASET.traces-MODE.hdf5)")
        p.add_argument("--episodes", type=int, default=None,
                       help="extract only the first N demos (a later run with a larger N extends the sidecar)")

    def show_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("dataset", help="HDF5 file written by mu0sim collect")
        p.add_argument("--episode", type=int, default=0, help="demo index")
        p.add_argument("--out", default="traces.mp4", help="MP4 path; the 3D plot goes next to it as .png")
        p.add_argument("--mode", default="sim", help="which extraction to show (sim or video)")
        p.add_argument("--traces", default=None, help="sidecar file (default DATASET.traces-MODE.hdf5)")

    def pretrain_args(p: argparse.ArgumentParser) -> None:
        from mu0sim.model.trace_model import MODEL_KINDS

        p.add_argument("--data", nargs="+", required=True, help="datasets with sim-mode TraceExtract sidecars")
        p.add_argument("--out", required=True, help="checkpoint folder (resumes if it holds unfinished training)")
        p.add_argument("--holdout-robot", default="Kinova3", type=lambda s: None if s.lower() == "none" else s,
                       help="robot never trained on, evaluated as held out ('none' to train on all)")
        p.add_argument("--models", default=",".join(MODEL_KINDS),
                       help=f"comma-separated models to train on the same split (of {', '.join(MODEL_KINDS)})")
        p.add_argument("--steps", type=int, default=3000, help="optimizer steps per model")
        p.add_argument("--batch-size", type=int, default=32, help="anchor frames per step")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
        p.add_argument("--workers", type=int, default=1, help="processes building missing sample caches")
        p.epilog = ("Nested settings take dotted overrides, e.g. --model.num_control=7 --model.rigidity_weight=5 "
                    "--samples.stride=2 --lr=3e-4 (see mu0sim.model.train.PretrainConfig).")

    def eval_traces_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--ckpt", required=True, help="checkpoint folder written by mu0sim pretrain")
        p.add_argument("--data", nargs="+", required=True, help="datasets with sim-mode TraceExtract sidecars")
        p.add_argument("--out", default="report.json", help="report JSON (the Markdown table goes beside it)")
        p.add_argument("--max-anchors", type=int, default=600, help="anchor frames per split (random subset)")
        p.add_argument("--num-samples", type=int, default=5, help="samples for minADE of sampled models")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--without-history", action="store_true",
                       help="hide every anchor's keypoint history from the models (how a policy queries μ0 without "
                            "query_history)")

    def train_policy_args(p: argparse.ArgumentParser) -> None:
        from mu0sim.policies.action_expert import HEADS, VARIANTS

        p.add_argument("--data", nargs="+", required=True, help="demos of one robot (mu0sim collect)")
        p.add_argument("--mu0", required=True, help="frozen μ0 checkpoint folder")
        p.add_argument("--out", required=True, help="policy checkpoint folder (resumes if it holds unfinished training)")
        p.add_argument("--variant", default="trace", choices=VARIANTS)
        p.add_argument("--robot", default=None, help="check that the data is this robot's")
        p.add_argument("--head", default="regression", choices=HEADS)
        p.add_argument("--query", default="keypoints", choices=("keypoints", "grid"), help="μ0 query points")
        p.add_argument("--episodes", type=int, default=None, help="first N demos of each file")
        p.add_argument("--steps", type=int, default=3000)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--pretrain-data", nargs="+", default=[], metavar="DATA",
                       help="action-pretrained, trace-pretrained: other robots' demos, pooled with --data for "
                            "--pretrain-steps first")
        p.add_argument("--pretrain-steps", type=int, default=3000)
        p.add_argument("--wrist-camera", default="robot0_eye_in_hand",
                       help="camera whose frozen features the expert also reads ('none': no wrist view)")
        p.add_argument("--feature-every", type=int, default=1,
                       help="query μ0 on every k-th demo step only (k x faster feature replay, 1/k the samples)")

    def eval_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--policy", nargs="+", required=True, help="action-expert checkpoint folders")
        p.add_argument("--task", required=True)
        p.add_argument("--robots", required=True,
                       help="comma-separated; each policy runs on its own robot (policies for other robots are "
                            "skipped, a robot without a policy is an error)")
        p.add_argument("--episodes", type=int, default=50)
        p.add_argument("--seed-start", type=int, default=1000, help="episode seeds seed_start .. +episodes-1")
        p.add_argument("--mu0", default=None, help="μ0 checkpoint (default: the one each policy was trained with)")
        p.add_argument("--out", default="results",
                       help="folder for episodes.jsonl, results.json, results.md, results.png, videos/")
        p.add_argument("--videos", type=int, default=0,
                       help="write the first N episodes of each row as MP4 with μ0's traces drawn")
        p.add_argument("--workers", type=int, default=1,
                       help="worker processes / Ray actors (outcomes do not change)")
        p.add_argument("--backend", default="local", choices=("local", "ray"))
        p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
        p.add_argument("--mu0-runtime", default="torchscript",
                       help="how μ0 runs: torchscript (default; outputs identical to eager), eager, or "
                            "onnxruntime (1.4-1.5x faster μ0 queries; float rounding differs, so an episode may end "
                            "otherwise)")

    def finetune_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--policy", required=True, help="behaviour-cloned action-expert checkpoint (regression head)")
        p.add_argument("--out", required=True, help="fine-tuned checkpoint folder (resumes from OUT/.resume)")
        p.add_argument("--task", default="Lift")
        p.add_argument("--mu0", default=None, help="μ0 checkpoint (default: the one the expert was trained with)")
        p.add_argument("--timesteps", type=int, default=2048, help="PPO steps, each one executed action chunk")
        p.add_argument("--seed", type=int, default=5000, help="PPO and training-episode seed (not an eval seed)")

    def demo_args(p: argparse.ArgumentParser) -> None:
        from mu0sim.rollouts.demo import DemoConfig

        defaults = DemoConfig()
        p.add_argument("--out", default=defaults.out, help="report folder (reruns reuse its finished stages)")
        p.add_argument("--mu0", default=defaults.mu0, help="frozen μ0 checkpoint folder")
        p.add_argument("--tasks", default=",".join(defaults.tasks), help="comma-separated tasks")
        p.add_argument("--robots", default=",".join(defaults.robots), help="comma-separated robots")
        p.add_argument("--variant", default=defaults.variant, help="action-expert variant")
        p.add_argument("--demos", type=int, default=defaults.demos, help="scripted demos per task x robot")
        p.add_argument("--episodes", type=int, default=defaults.episodes, help="evaluation episodes per row")
        p.add_argument("--seed-start", type=int, default=defaults.seed_start, help="first evaluation seed")
        p.add_argument("--steps", type=int, default=defaults.steps, help="behaviour-cloning steps per expert")
        p.add_argument("--videos", type=int, default=defaults.videos, help="videos per robot")
        p.add_argument("--workers", type=int, default=defaults.workers,
                       help="processes for the μ0 feature replay and the evaluation (outcomes do not depend on it)")

    def ablate_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("config", help="ablation YAML (e.g. configs/ablation_cross_embodiment.yaml)")
        p.add_argument("--out", default=None, help="override the config's output folder")
        p.add_argument("--episodes", type=int, default=None, help="override evaluation episodes per cell")
        p.add_argument("--workers", type=int, default=None,
                       help="processes for the μ0 feature replay and the evaluation")
        p.add_argument("--data-dir", default=None, help="override the folder of scripted-demo datasets")
        p.add_argument("--report-only", action="store_true",
                       help="only rewrite the table and plot from what has been evaluated so far")

    return [
        ("demo", "the main job: frozen μ0 + per-robot action experts on Lift, end to end (resumable)", demo_args,
         _cmd_demo),
        ("envs", "list tasks, robots and cameras", envs_args, _cmd_envs),
        ("collect", "collect scripted demonstrations into a robomimic-compatible HDF5 file", collect_args,
         _cmd_collect),
        ("replay", "re-simulate a dataset and report state divergence, or re-render it (--out)", replay_args,
         _cmd_replay),
        ("export-lerobot", "export a dataset to the LeRobot v3.0 layout (parquet + MP4 + meta)", export_args,
         _cmd_export_lerobot),
        ("extract", "TraceExtract: keypoints, 3D traces and captioned segments per demo", extract_args, _cmd_extract),
        ("show-traces", "draw a demo's traces on its frames (MP4) and in 3D (PNG)", show_args, _cmd_show_traces),
        ("pretrain", "train μ0 and its baselines on TraceExtract data (resumable)", pretrain_args, _cmd_pretrain),
        ("eval-traces", "trace errors of μ0 and every baseline on held-out demos and the held-out robot",
         eval_traces_args, _cmd_eval_traces),
        ("train-policy", "behaviour-clone an action expert on frozen μ0's traces", train_policy_args,
         _cmd_train_policy),
        ("eval", "closed-loop success of action experts with frozen μ0 in the loop (resumable)", eval_args,
         _cmd_eval),
        ("ablate", "variants x robots x tasks x demo counts from one YAML: collect, train, evaluate, one table "
                   "(resumable)", ablate_args, _cmd_ablate),
        ("finetune-rl", "PPO (stable-baselines3) from a behaviour-cloned action expert's weights (resumable)",
         finetune_args, _cmd_finetune_rl),
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mu0sim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text, add_args, func in _commands():
        # no abbreviations: a config setting that prefixes an option (--pretrain=... vs --pretrain_data) would be taken
        # for that option instead of reaching the config
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        add_args(p)
        p.set_defaults(func=func)
    return parser


DOTTED_COMMANDS = ("pretrain", "train-policy", "finetune-rl", "ablate")  # their config takes --key=value overrides


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # what the command's own options do not name is a setting of its config (--lr=3e-4, --model.dim=192), checked
    # against the config's fields by apply_overrides: a new config field needs no edit here
    args, rest = parser.parse_known_args(argv)
    loose = [a for a in rest if not (a.startswith("--") and "=" in a)]
    if loose:
        parser.error(f"unrecognized arguments: {' '.join(loose)} (config settings are written --key=value)")
    if rest and args.command not in DOTTED_COMMANDS:
        parser.error(f"settings {rest} are only accepted by: {', '.join(DOTTED_COMMANDS)}")
    args.overrides = rest
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"mu0sim {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted(args.command)
    except SystemError as err:
        # a Ctrl-C that lands inside a numba-compiled function (robosuite's OSC controller) surfaces as a SystemError
        # caused (through one or more SystemErrors) by the KeyboardInterrupt: the same interruption, the same
        # finished work kept
        if _caused_by_interrupt(err):
            return _interrupted(args.command)
        raise


def _caused_by_interrupt(err: BaseException | None) -> bool:
    while err is not None:
        if isinstance(err, KeyboardInterrupt):
            return True
        err = err.__cause__
    return False


def _interrupted(command: str) -> int:
    print(f"mu0sim {command}: interrupted; finished work is kept, rerun to resume", file=sys.stderr)
    return 130


if __name__ == "__main__":
    raise SystemExit(main())
