"""`mu0sim ablate`: a YAML matrix trains and evaluates every cell, ends in one table, resumes, refuses bad configs."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from mu0sim.cli import main
from mu0sim.rollouts.ablate import (AblationBlock, AblationConfig, Cell, finished_cells, load_ablation,
                                    train_config_for, write_report, plot_ablation, plot_panels)
from mu0sim.rollouts.evaluate import current_episodes


REPO = Path(__file__).resolve().parents[1]


def _write(path, config: dict):
    path.write_text(yaml.safe_dump(config))
    return path


def test_ablate_end_to_end_then_resumes(tiny_mu0, tmp_path, capsys):
    ckpt, datasets = tiny_mu0
    data = tmp_path / "data"
    data.mkdir()
    for path in datasets:  # a private copy: the feature caches written beside it stay in this test
        shutil.copy(path, data / path.name)
    out = tmp_path / "study"
    config = _write(tmp_path / "ablation.yaml", {
        "name": "tiny", "out": str(out), "mu0": str(ckpt), "data_dir": str(data), "episodes": 1, "steps": 5,
        "videos": 0, "feature_every": 2, "train": {"batch_size": 8},
        "matrix": [{"tasks": ["Lift"], "robots": ["Panda", "Sawyer"], "variants": ["trace"], "demos": [2, 3]},
                   {"tasks": ["Lift"], "robots": ["Panda"], "variants": ["no-trace"], "demos": [3]},
                   {"tasks": ["Lift"], "robots": ["Panda"], "variants": ["trace"], "demos": [3], "tag": "flow",
                    "train": {"head": "flow"}}]})
    assert main(["ablate", str(config)]) == 0
    summary = json.loads((out / "ablation.json").read_text())
    cells = {(r["robot"], r["column"]) for r in summary["rows"]}
    assert cells == {(r, f"trace @{d}") for r in ("Panda", "Sawyer") for d in (2, 3)} | {
        ("Panda", "no-trace @3"), ("Panda", "trace-flow @3")}
    assert all(r["episodes"] == 1 and r["complete"] for r in summary["rows"])
    assert summary["robots_unseen_by_mu0"] == ["Sawyer"]
    table = (out / "ablation.md").read_text()
    assert "| trace @3 | trace @2 | no-trace @3 | trace-flow @3 |" in table
    sawyer = next(line for line in table.splitlines() if "Sawyer (unseen by μ0)" in line)
    assert sawyer.endswith("| - | - |")  # no Sawyer no-trace, no Sawyer flow
    assert (out / "ablation.png").stat().st_size > 0
    policy = json.loads((out / "policies" / "Lift_Panda_trace_2demos" / "config.json").read_text())
    assert policy["train_config"]["episodes"] == 2 and policy["train_config"]["batch_size"] == 8
    flow = json.loads((out / "policies" / "Lift_Panda_trace-flow_3demos" / "config.json").read_text())
    assert flow["train_config"]["head"] == "flow" and flow["train_config"]["batch_size"] == 8
    capsys.readouterr()

    assert main(["ablate", str(config)]) == 0  # rerun: nothing trained or evaluated again
    rerun = capsys.readouterr().out
    assert "4 experts, 4 finished" in rerun and rerun.count("1 experts, 1 finished") == 2
    assert "reusing" not in rerun and "validation loss" not in rerun
    assert len((out / "eval" / "episodes.jsonl").read_text().splitlines()) == 6
    table = (out / "ablation.md").read_text()

    # the study's record (cells.json + the episode log) outlives its checkpoints and datasets
    shutil.rmtree(out / "policies")
    shutil.rmtree(data)
    assert main(["ablate", str(config)]) == 0
    assert "validation loss" not in capsys.readouterr().out
    assert (out / "ablation.md").read_text() == table
    episodes = current_episodes([json.loads(line) for line in (out / "eval" / "episodes.jsonl").open()])
    study = load_ablation(config)
    assert len(finished_cells(study, episodes)) == 6
    assert finished_cells(load_ablation(config, ["--steps=6"]), episodes) == set()  # another recipe: redo all
    assert finished_cells(load_ablation(config, ["--episodes=2"]), episodes) == set()  # more seeds: unfinished
    assert main(["ablate", str(config), "--episodes", "2", "--report-only"]) == 0  # more episodes asked: partial
    assert "/1* (" in (out / "ablation.md").read_text()


@pytest.mark.parametrize("variant", ["action-pretrained", "trace-pretrained"])
def test_pretrained_cells_pool_the_other_robots(variant):
    config = AblationConfig(name="t", matrix=[AblationBlock(["Stack"], ["Kinova3"], [variant, "trace"], [10])],
                            data_dir="d", pretrain_demos=50)
    train = train_config_for(config, Cell("Stack", "Kinova3", variant, 10))
    assert train.data == ["d/Stack_Kinova3.hdf5"] and train.episodes == 10 and train.pretrain_episodes == 50
    assert train.variant == variant
    assert sorted(train.pretrain_data) == sorted(f"d/Stack_{r}.hdf5" for r in ("Panda", "Sawyer", "IIWA", "UR5e",
                                                                                "XArm7"))
    plain = train_config_for(config, Cell("Stack", "Kinova3", "trace", 10))
    assert plain.pretrain_data == [] and plain.pretrain_episodes is None


def test_task_train_is_one_recipe_for_every_variant_of_its_task():
    config = AblationConfig(
        name="t", data_dir="d", train={"steps": 100, "head": "flow"},
        task_train={"Stack": {"head": "regression", "image_feature": False}},
        matrix=[AblationBlock(["Stack", "Lift"], ["Panda"], ["trace", "no-trace"], [10]),
                AblationBlock(["Stack"], ["Panda"], ["trace"], [10], tag="wp", train={"wrist_points": 8,
                                                                                     "head": "flow"})])
    config.check_task_train(["steps", "head", "image_feature", "wrist_points"])
    for variant in ("trace", "no-trace"):  # baselines of the task get its recipe too
        stack = train_config_for(config, Cell("Stack", "Panda", variant, 10))
        assert (stack.steps, stack.head, stack.image_feature) == (100, "regression", False)
    lift = train_config_for(config, Cell("Lift", "Panda", "trace", 10))
    assert (lift.head, lift.image_feature) == ("flow", True)
    tagged = train_config_for(config, Cell("Stack", "Panda", "trace", 10, "wp"))  # a block's train wins
    assert (tagged.head, tagged.image_feature, tagged.wrist_points) == ("flow", False, 8)


def test_report_counts_only_the_recorded_experts_episodes(tmp_path):
    """A cell retrained with a new recipe keeps its old episodes in the log; the table counts only those of the
    checkpoint ``cells.json`` records (and none while the recorded expert is of another recipe)."""
    from dataclasses import asdict

    from mu0sim.policies.action_expert import EXPERT_INPUTS
    from mu0sim.rollouts.ablate import write_report

    mu0 = tmp_path / "mu0"
    mu0.mkdir()
    (mu0 / "config.json").write_text(json.dumps({"robots_seen": ["Panda"]}))
    config = AblationConfig(name="t", out=str(tmp_path / "out"), mu0=str(mu0), episodes=2,
                            matrix=[AblationBlock(["Lift"], ["Panda"], ["trace"], [10])])
    cell = Cell("Lift", "Panda", "trace", 10)
    policy = str(tmp_path / "out" / "policies" / cell.name)
    (tmp_path / "out" / "eval").mkdir(parents=True)
    log = [{"policy": policy, "policy_id": pid, "task": "Lift", "robot": "Panda", "seed": seed, "success": ok}
           for pid, ok in (("old", False), ("new", True)) for seed in (1000, 1001)]
    (tmp_path / "out" / "eval" / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log))
    entry = {"train_config": json.loads(json.dumps(asdict(train_config_for(config, cell)))),
             "inputs": EXPERT_INPUTS, "policy_id": "new"}
    (tmp_path / "out" / "cells.json").write_text(json.dumps({cell.name: entry}))
    [row] = write_report(config, echo=False)["rows"]
    assert (row["successes"], row["episodes"], row["complete"]) == (2, 2, True)
    assert finished_cells(config, log) == {cell}

    entry["train_config"]["steps"] = 17  # the recorded expert is of another recipe than the config asks for
    (tmp_path / "out" / "cells.json").write_text(json.dumps({cell.name: entry}))
    [row] = write_report(config, echo=False)["rows"]
    assert (row["episodes"], row["complete"]) == (0, False) and finished_cells(config, log) == set()


def test_gt_trace_episodes_of_another_oracle_do_not_count(tmp_path):
    """A gt-trace expert's episodes are played by the oracle as much as by its weights: a cell recorded before the
    oracle changed (no ``oracle`` version in cells.json) is not finished, and its retrained expert's id names the
    oracle, so its old episodes never count again, even for identical weights."""
    from dataclasses import asdict

    from mu0sim.policies.action_expert import EXPERT_INPUTS
    from mu0sim.policies.oracle_traces import oracle_version
    from mu0sim.rollouts.ablate import record_cells
    from mu0sim.rollouts.evaluate import policy_id

    mu0 = tmp_path / "mu0"
    mu0.mkdir()
    (mu0 / "config.json").write_text(json.dumps({"robots_seen": ["Panda"]}))
    config = AblationConfig(name="t", out=str(tmp_path / "out"), mu0=str(mu0), episodes=1,
                            matrix=[AblationBlock(["Stack"], ["Panda"], ["gt-trace", "trace"], [10])])
    cells = [Cell("Stack", "Panda", variant, 10) for variant in ("gt-trace", "trace")]
    version = oracle_version("Stack")
    assert version > 1  # Stack's oracle changed since the study's first records (resume)
    trains = {cell: train_config_for(config, cell) for cell in cells}
    log = []
    for cell, train in trains.items():
        folder = tmp_path / "out" / "policies" / cell.name
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"identical weights")
        (folder / "config.json").write_text(json.dumps({"policy": {"variant": cell.variant, "task": "Stack"}}))
        train.out = str(folder)
        log.append({"policy": str(folder), "policy_id": policy_id(folder), "task": "Stack", "robot": "Panda",
                    "seed": 1000, "success": True})
    gt_id, trace_id = (entry["policy_id"] for entry in log)
    assert gt_id == f"{trace_id}+oracle{version}"  # same weights, the oracle's version on top
    record_cells(config, trains)
    manifest = json.loads((tmp_path / "out" / "cells.json").read_text())
    assert manifest[cells[0].name]["oracle"] == version and "oracle" not in manifest[cells[1].name]
    assert finished_cells(config, log) == set(cells)

    old = {"train_config": json.loads(json.dumps(asdict(trains[cells[0]]))), "inputs": EXPERT_INPUTS,
           "policy_id": trace_id}  # as recorded before oracle versions: the weights' fingerprint alone
    (tmp_path / "out" / "cells.json").write_text(json.dumps({**manifest, cells[0].name: old}))
    old_log = [{**log[0], "policy_id": trace_id}, log[1]]
    assert finished_cells(config, old_log) == {cells[1]}
    lift = AblationConfig(name="t", out=str(tmp_path / "out"), mu0=str(mu0), episodes=1,
                          matrix=[AblationBlock(["Lift"], ["Panda"], ["gt-trace"], [10])])
    lift_cell = Cell("Lift", "Panda", "gt-trace", 10)  # Lift's oracle is unchanged: its old record still counts
    lift_entry = {**old, "train_config": json.loads(json.dumps(asdict(train_config_for(lift, lift_cell))))}
    (tmp_path / "out" / "cells.json").write_text(json.dumps({lift_cell.name: lift_entry}))
    lift_log = [{**old_log[0], "task": "Lift", "policy": str(tmp_path / "out" / "policies" / lift_cell.name)}]
    assert oracle_version("Lift") == 1 and finished_cells(lift, lift_log) == {lift_cell}


def test_a_study_on_another_mu0_takes_the_mu0_free_cells_of_the_first(tmp_path):
    """``mu0_free_from``: a finished `no-trace` cell of the study on the first μ0 stands for this study's (not
    trained, not evaluated: finished, and marked in the table); a `trace` cell never does, nor a cell trained with
    another recipe there, and a cell this study finished itself keeps its own episodes."""
    from dataclasses import asdict, replace

    from mu0sim.policies.action_expert import EXPERT_INPUTS
    from mu0sim.rollouts.ablate import borrowed_cells

    mu0s = {}
    for name in ("mu0_v1", "mu0_v3"):
        mu0s[name] = tmp_path / name
        mu0s[name].mkdir()
        (mu0s[name] / "config.json").write_text(json.dumps({"robots_seen": ["Panda"]}))
    block = AblationBlock(["Lift"], ["Panda", "UR5e"], ["trace", "no-trace"], [10])
    first = AblationConfig(name="v1", out=str(tmp_path / "v1"), mu0=str(mu0s["mu0_v1"]), episodes=2, matrix=[block])
    cells = {(c.robot, c.variant): c for c in first.cells()}
    manifest, log = {}, []
    for (robot, variant), cell in cells.items():
        train = train_config_for(first, cell)
        if robot == "UR5e" and variant == "no-trace":
            train = replace(train, steps=17)  # recorded with another recipe than the second study asks for
        manifest[cell.name] = {"train_config": json.loads(json.dumps(asdict(train))), "inputs": EXPERT_INPUTS,
                               "policy_id": f"id-{cell.name}"}
        log += [{"policy": train.out, "policy_id": f"id-{cell.name}", "task": "Lift", "robot": robot, "seed": seed,
                 "success": seed == 1000} for seed in (1000, 1001)]
    (tmp_path / "v1" / "eval").mkdir(parents=True)
    (tmp_path / "v1" / "eval" / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log))
    (tmp_path / "v1" / "cells.json").write_text(json.dumps(manifest))

    second = AblationConfig(name="v3", out=str(tmp_path / "v3"), mu0=str(mu0s["mu0_v3"]), episodes=2, matrix=[block],
                            mu0_free_from=str(tmp_path / "v1"))
    second.check()
    assert set(borrowed_cells(second)) == {cells[("Panda", "no-trace")]}
    assert finished_cells(second, []) == set()  # its own record is empty: run_ablation adds the borrowed ones
    rows = {(r["robot"], r["variant"]): r for r in write_report(second, echo=False)["rows"]}
    assert rows[("Panda", "no-trace")]["from"] == str(tmp_path / "v1")
    assert (rows[("Panda", "no-trace")]["successes"], rows[("Panda", "no-trace")]["complete"]) == (1, True)
    assert rows[("Panda", "no-trace")]["policy"] == train_config_for(first, cells[("Panda", "no-trace")]).out
    assert all(not r["episodes"] and "from" not in r for key, r in rows.items() if key != ("Panda", "no-trace"))
    assert "| Lift | Panda | * | 1/2† (0.09-0.91) |" in (tmp_path / "v3" / "ablation.md").read_text()
    assert replace(second, seed_start=999).cells() and not borrowed_cells(replace(second, seed_start=999))

    # a cell the second study evaluated itself (e.g. to check the claim) keeps its own episodes
    own = train_config_for(second, cells[("Panda", "no-trace")])
    (tmp_path / "v3" / "cells.json").write_text(json.dumps({cells[("Panda", "no-trace")].name: {
        "train_config": json.loads(json.dumps(asdict(own))), "inputs": EXPERT_INPUTS, "policy_id": "mine"}}))
    (tmp_path / "v3" / "eval").mkdir(parents=True)
    (tmp_path / "v3" / "eval" / "episodes.jsonl").write_text("".join(json.dumps(
        {"policy": own.out, "policy_id": "mine", "task": "Lift", "robot": "Panda", "seed": seed, "success": True})
        + "\n" for seed in (1000, 1001)))
    rows = {(r["robot"], r["variant"]): r for r in write_report(second, echo=False)["rows"]}
    assert rows[("Panda", "no-trace")]["successes"] == 2 and "from" not in rows[("Panda", "no-trace")]

    with pytest.raises(FileNotFoundError, match="mu0_free_from: no study record at"):
        replace(second, mu0_free_from=str(tmp_path / "nowhere")).check()
    with pytest.raises(ValueError, match="this study's own out folder"):
        replace(second, mu0_free_from=second.out).check()


@pytest.mark.parametrize("change, message", [
    ({"matrix": [{"tasks": ["Lift"], "robots": ["Panda"], "variants": ["diffusion"], "demos": [10]}]},
     "unknown variant 'diffusion'; valid variants: trace"),
    ({"matrix": [{"tasks": ["Lift"], "robots": ["Franka"], "variants": ["trace"], "demos": [10]}]},
     "unknown robot 'Franka'"),
    ({"matrix": [{"tasks": ["Lift"], "robots": ["Panda"], "variants": ["trace"], "demos": [1]}]},
     "demos must be integers >= 2"),
    ({"matrix": [{"tasks": ["Lift"], "robot": ["Panda"], "variants": ["trace"], "demos": [10]}]},
     "unknown keys ['robot']"),
    ({"epsiodes": 5}, "unknown keys ['epsiodes']"),
    ({"train": {"variant": "trace"}}, "train settings ['variant'] cannot be set per ablation"),
    ({"mu0": "nowhere"}, "μ0 checkpoint nowhere not found"),
    ({"execution_noise_std": -0.1}, "execution_noise_std must be >= 0 (0: clean demos), got -0.1"),
    ({"expert": {"Stack": {"settle_steps": 6}}}, "expert options given for task 'Stack', which no matrix block runs"),
    ({"expert": {"Lift": {"settle": 6}}}, "unknown Lift expert option 'settle'; valid Lift expert options"),
    ({"task_train": {"Stack": {"steps": 10}}}, "task_train given for task 'Stack', which no matrix block runs"),
    ({"task_train": {"Lift": {"episodes": 10}}}, "task_train of Lift: train settings ['episodes'] cannot be set"),
    ({"task_train": {"Lift": 3}}, "task_train of Lift must be a mapping setting -> value, got 3"),
    ({"matrix": [{"tasks": ["Lift"], "robots": ["Panda"], "variants": ["trace"], "demos": [10],
                  "train": {"head": "flow"}}]}, "without a tag naming the change"),
    ({"matrix": [{"tasks": ["Lift"], "robots": ["Panda"], "variants": ["trace"], "demos": [10], "tag": "f",
                  "train": {"head": "flow"}},
                 {"tasks": ["Lift"], "robots": ["Panda"], "variants": ["trace"], "demos": [10], "tag": "f",
                  "train": {"head": "regression"}}]}, "appears in two blocks with different train settings"),
    # settings that pass each check alone but cannot train a cell: refused at load, not when the cell's block runs
    ({"task_train": {"Lift": {"wrist_moments": True}}},
     "cell Lift_Panda_trace_10demos: wrist_moments describes the wrist-view points: it needs wrist_points > 0"),
    ({"train": {"chunk": 64}}, "cell Lift_Panda_trace_10demos: chunk must be <= 32"),
])
def test_bad_ablation_configs_are_refused_with_the_reason(tmp_path, capsys, change, message):
    config = {"name": "bad", "out": str(tmp_path / "out"),
              "matrix": [{"tasks": ["Lift"], "robots": ["Panda"], "variants": ["trace"], "demos": [10]}], **change}
    assert main(["ablate", str(_write(tmp_path / "bad.yaml", config))]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_study_takes_what_it_leaves_out_from_its_base(tmp_path):
    """``base``: every setting the file leaves out comes from the base (its matrix too when the file has none), never
    the base's name or out; the base's per-task recipes only for the tasks this study runs (a recipe for a task no
    block runs is refused); bases chain."""
    block = {"tasks": ["Lift"], "robots": ["Panda"], "variants": ["trace"], "demos": [10]}
    study = _write(tmp_path / "study.yaml", {
        "name": "study", "out": "results/study", "episodes": 7, "steps": 11, "train": {"seed": 0},
        "task_train": {"Lift": {"wrist_points": 16}, "Stack": {"image_feature": False}},
        "expert": {"Stack": {"settle_steps": 6}},
        "matrix": [block, {**block, "tasks": ["Stack"]}]})
    seed1 = _write(tmp_path / "seed1.yaml", {"base": str(study), "name": "seed1", "out": "results/seed1",
                                             "train": {"seed": 1}, "matrix": [block]})
    config = load_ablation(seed1)
    assert (config.name, config.out, config.episodes, config.steps, config.train) == \
        ("seed1", "results/seed1", 7, 11, {"seed": 1})
    assert config.task_train == {"Lift": {"wrist_points": 16}} and config.expert == {}  # Stack: not run here
    chained = load_ablation(_write(tmp_path / "v2.yaml", {"base": str(seed1), "name": "v2", "out": "results/v2",
                                                           "episodes": 3}))
    assert (chained.episodes, chained.train, chained.matrix) == (3, {"seed": 1}, config.matrix)
    assert chained.task_train == {"Lift": {"wrist_points": 16}}
    with pytest.raises(ValueError, match="needs its own 'out'"):
        load_ablation(_write(tmp_path / "no_out.yaml", {"base": str(study), "name": "x"}))
    loop = tmp_path / "loop.yaml"
    _write(loop, {"base": str(loop), "name": "loop", "out": "results/loop"})
    with pytest.raises(ValueError, match="'base' makes a cycle"):
        load_ablation(loop)
    with pytest.raises(FileNotFoundError, match="nowhere.yaml not found"):
        load_ablation(_write(tmp_path / "lost.yaml", {"base": str(tmp_path / "nowhere.yaml"), "name": "l",
                                                      "out": "results/l"}))


def test_committed_study_configs_load(monkeypatch):
    monkeypatch.chdir(REPO)  # the configs name repo-relative paths
    study = load_ablation("configs/ablation_cross_embodiment.yaml")
    study.check()
    robots = {cell.robot for cell in study.cells() if cell.variant == "trace"}
    assert robots == {"Panda", "Sawyer", "IIWA", "UR5e", "Kinova3", "XArm7"}
    assert {cell.demos for cell in study.cells()} == {50, 10}
    # PickPlaceCan's 10-demo baselines have a block of their own ahead of the block that lists them again: the
    # overlap runs each cell once, first where it is listed, and keeps the study at the 92 cells RESULTS.md reports
    cells = study.cells()
    assert len(cells) == 92
    ppc_baselines = [c for c in cells if c.task == "PickPlaceCan" and c.variant in ("no-trace", "action-pretrained")]
    assert [c.demos for c in ppc_baselines] == [10] * 6 + [50] * 6


@pytest.mark.parametrize("path", sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").rglob("*.yaml")))
def test_every_committed_ablation_config_loads_and_checks(path, monkeypatch):
    """RESULTS.md names these configs as the commands behind its tables: a renamed or removed option must fail here,
    not when someone reruns a probe. A probe's μ0 under runs/ (absent from a clean clone, so checked the same way
    whether or not this machine has it) must be written by a committed script; the rest of the config is checked
    against the shipped checkpoint."""
    monkeypatch.chdir(REPO)
    config = load_ablation(path)
    if config.mu0.startswith("runs/"):
        whole_path = re.compile(re.escape(config.mu0) + r"(?![\w.-])")  # not a prefix of a longer folder name
        makers = [s.name for s in (REPO / "scripts").glob("*.sh") if whole_path.search(s.read_text())]
        assert makers, f"{path}: no committed script under scripts/ trains its μ0 {config.mu0}"
        config = dataclasses.replace(config, mu0="checkpoints/mu0-sim")
    config.check()


def test_report_only_before_any_cell_ran_writes_an_empty_table(tmp_path):
    mu0 = tmp_path / "mu0"
    mu0.mkdir()
    (mu0 / "config.json").write_text(json.dumps({"robots_seen": ["Panda"]}))
    config = AblationConfig(name="t", out=str(tmp_path / "not" / "yet"), mu0=str(mu0), data_dir=str(tmp_path),
                            matrix=[AblationBlock(["Lift"], ["Panda"], ["trace"], [10])])
    summary = write_report(config, echo=False)
    assert [(r["episodes"], r["complete"]) for r in summary["rows"]] == [(0, False)]
    assert "| Lift | Panda | * |" in (tmp_path / "not" / "yet" / "ablation.md").read_text()


def test_study_plot_is_a_panel_per_task_and_demo_count(tmp_path):
    """The study's plot: tasks as rows of panels, demo counts as columns (most first), one colour per variant (a
    tag makes its own), the same in every panel; 3 tasks x 6 robots x 2 demo counts x 5 variants stay readable
    (before: one row of 180 bars, 7,000 px wide)."""
    robots = ["Panda", "Kinova3", "UR5e", "Sawyer", "IIWA", "XArm7"]
    rows = [{"task": task, "robot": robot, "variant": variant, "tag": tag, "demos": demos, "episodes": 50,
             "successes": 40, "success_rate": 0.8, "wilson_low": 0.67, "wilson_high": 0.89}
            for task in ("Lift", "Stack", "PickPlaceCan") for demos in (10, 50) for robot in robots
            for variant, tag in [("trace", ""), ("no-trace", ""), ("trace", "flow"), ("gt-trace", ""),
                                 ("action-pretrained", "")]]
    rows[0] = {**rows[0], "episodes": 0, "successes": 0, "success_rate": None}  # a cell not evaluated yet
    assert plot_panels(rows) == (["Lift", "Stack", "PickPlaceCan"], [50, 10],
                                 ["trace", "no-trace", "trace-flow", "gt-trace", "action-pretrained"])
    path = tmp_path / "ablation.png"
    plot_ablation(rows, path, unseen=["Kinova3"])
    import matplotlib.image

    height, width = matplotlib.image.imread(path).shape[:2]
    assert width < 2000 and height < 1200
