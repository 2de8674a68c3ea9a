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


Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _commands() -> list[Command]:
    def envs_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="machine-readable output")

    return [
        ("envs", "list tasks, robots and cameras", envs_args, _cmd_envs),
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mu0sim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text, add_args, func in _commands():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"mu0sim {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mu0sim {args.command}: interrupted; finished work is kept, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
