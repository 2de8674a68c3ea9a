"""Scripted experts, one per task, all through mu0sim's shared 7-D action space (see ``common``)."""

from __future__ import annotations

from dataclasses import fields

from mu0sim.envs.catalog import TASKS, check_choice
from mu0sim.policies.scripted.common import ScriptedExpert
from mu0sim.policies.scripted.door import DoorExpert
from mu0sim.policies.scripted.lift import LiftExpert
from mu0sim.policies.scripted.nut_assembly_square import NutAssemblySquareExpert
from mu0sim.policies.scripted.pick_place_can import PickPlaceCanExpert
from mu0sim.policies.scripted.stack import StackExpert

EXPERTS: dict[str, type] = {"Lift": LiftExpert, "Stack": StackExpert, "PickPlaceCan": PickPlaceCanExpert,
                            "NutAssemblySquare": NutAssemblySquareExpert, "Door": DoorExpert}


def make_expert(task: str, **kwargs) -> ScriptedExpert:
    """The scripted expert for ``task``; kwargs are the expert's options (e.g. ``noise_std``)."""
    check_choice("task", task, TASKS)
    if task not in EXPERTS:
        raise ValueError(f"no scripted expert for task {task!r} yet; experts exist for: {', '.join(EXPERTS)}")
    options = [f.name for f in fields(EXPERTS[task]) if not f.name.startswith("_")]
    for name in kwargs:
        check_choice(f"{task} expert option", name, options)
    return EXPERTS[task](**kwargs)


__all__ = ["EXPERTS", "DoorExpert", "LiftExpert", "NutAssemblySquareExpert", "PickPlaceCanExpert", "ScriptedExpert",
           "StackExpert", "make_expert"]
