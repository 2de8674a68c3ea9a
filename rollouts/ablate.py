"""``mu0sim ablate ABLATION.yaml``: a matrix of action-expert variants x robots x tasks x demo counts, end to end.

The YAML names blocks; each block is the product of its ``tasks``, ``robots``, ``variants`` and ``demos``. Blocks run
in the order written, so a study can start with a small pilot block (its cells are not redone later: a cell listed
twice is trained and evaluated once). Within a block, for each task:

1. datasets: ``data_dir/<task>_<robot>.hdf5`` holds at least as many scripted demos as any cell needs
   (``mu0sim collect`` appends or does nothing; ``action-pretrained`` and ``trace-pretrained`` also need the other
   robots' files),
2. one action expert per cell, trained on the first ``demos`` demos (a checkpoint trained with exactly the same
   configuration is reused; μ0's features over each file are computed once and cached beside it),
3. closed-loop evaluation of the block's experts on seeds ``seed_start..`` with μ0 in the loop (every episode
   appended at once: Ctrl-C loses nothing, a rerun resumes),

then one table (``OUT/ablation.md``: rows task x robot, a column per variant x demo count) and one grouped bar chart
(``OUT/ablation.png``) over every cell of the config; ``OUT/ablation.json`` holds the rows.

A cell whose evaluation is complete is finished for good: ``OUT/cells.json`` records each cell's training
configuration and its checkpoint's fingerprint, so a rerun skips a finished cell even where its checkpoint and
datasets are gone (the study's record is ``OUT/eval/episodes.jsonl`` + ``OUT/cells.json``, a few hundred bytes per
episode, and can be kept under version control while checkpoints and datasets cannot). A cell whose training
configuration changed is trained and evaluated again (``task_train`` gives one task's experts, baselines included,
their own recipe: changing it redoes that task's cells only).

A study rerun on another μ0 (``base:`` the first, with its own ``mu0`` and ``out``) names the first's folder in
``mu0_free_from``: the cells of variants that read no μ0 forecast (``no-trace``, ``gt-trace``,
``action-pretrained``: trained alike whatever the μ0, as the backbone is the same frozen network) which that study
finished with exactly this study's training configuration, μ0 and folder aside, are taken from it as they are,
neither trained nor evaluated again; the table marks them.

Example (``configs/ablation_cross_embodiment.yaml`` is the study of RESULTS.md)::

    name: lift-smoke
    out: runs/ablations/lift-smoke
    episodes: 20
    matrix:
      - {tasks: [Lift], robots: [Panda, Kinova3], variants: [trace, no-trace], demos: [50, 10]}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

from mu0sim.io import atomic_write_text


@dataclass
class AblationBlock:
    """The product ``tasks x robots x variants x demos`` (demos: scripted demos the expert is trained on).
    ``tag`` + ``train``: a named change of training settings for this block's experts (e.g. ``tag: flow``,
    ``train: {head: flow}``), shown as its own column ``trace-flow``."""

    tasks: list[str]
    robots: list[str]
    variants: list[str]
    demos: list[int]
    tag: str = ""
    train: dict = field(default_factory=dict)


class Cell(NamedTuple):
    """One expert of the study: trained on the first ``demos`` demos of ``task`` x ``robot``, then evaluated."""

    task: str
    robot: str
    variant: str
    demos: int
    tag: str = ""

    @property
    def column(self) -> str:
        return f"{self.variant}{'-' + self.tag if self.tag else ''} @{self.demos}"

    @property
    def name(self) -> str:
        return f"{self.task}_{self.robot}_{self.variant}{'-' + self.tag if self.tag else ''}_{self.demos}demos"


# TrainPolicyConfig settings that make a cell what it is (the rest may be set by ``train``, e.g. steps or head)
_CELL_SETTINGS = {"data", "mu0", "out", "variant", "episodes", "pretrain_data", "pretrain_episodes"}


@dataclass
class AblationConfig:
    """An ablation study. ``episodes``: evaluation episodes per cell (seeds ``seed_start``..); ``steps``: behaviour-
    cloning steps per expert; ``pretrain_robots``/``pretrain_demos``/``pretrain_steps``: the pooled corpus of
    ``action-pretrained`` and ``trace-pretrained`` (that many demos of the task from each of these robots but the
    target) and its length before fine-tuning; ``train``: TrainPolicyConfig settings for every expert; ``task_train``: task -> settings for
    every expert of that task, every variant alike (a task's recipe, e.g. ``{Stack: {image_feature: false}}``);
    a block's ``train`` adds to both (later wins: ``train`` < ``task_train`` < block);
    ``execution_noise_std``: the demos are DART-collected with this noise (``mu0sim collect
    --execution-noise-std``; ``grip_flip_rate``: gripper inversions, ``--grip-flip-rate``), both those collected
    here and the files already in ``data_dir``; ``expert``: options
    of a task's scripted expert (task -> {option: value}, e.g. ``{Stack: {settle_steps: 6}}``), likewise for the
    demos collected here and those already in ``data_dir``; ``mu0_free_from``: the ``out`` folder of this study
    run on another μ0, whose finished cells of variants that read no μ0 forecast are taken, not redone (module
    docstring)."""

    name: str
    matrix: list[AblationBlock]
    out: str = "runs/ablations/default"
    mu0: str = "checkpoints/mu0-sim"
    data_dir: str = "data/ablate"
    episodes: int = 50
    seed_start: int = 1000
    steps: int = 3000
    feature_every: int = 1
    pretrain_demos: int = 50
    pretrain_steps: int = 3000
    execution_noise_std: float = 0.0
    grip_flip_rate: float = 0.0
    pretrain_robots: list[str] = field(default_factory=lambda: ["Panda", "Sawyer", "IIWA", "UR5e", "Kinova3",
                                                                "XArm7"])
    workers: int = 1
    videos: int = 1
    train: dict = field(default_factory=dict)
    task_train: dict[str, dict] = field(default_factory=dict)
    expert: dict[str, dict] = field(default_factory=dict)
    mu0_free_from: str = ""  # another study's ``out``: its finished μ0-free cells stand for this one's (see above)

    def cells(self) -> list[Cell]:
        """Every cell once, in run order."""
        return list(dict.fromkeys(cell for block in self.matrix for cell in block_cells(block)))

    def train_settings(self, cell: Cell) -> dict:
        """The extra TrainPolicyConfig settings of ``cell``: the config's ``train``, its task's ``task_train``, its
        block's ``train``, later ones winning."""
        for block in self.matrix:
            if cell in block_cells(block):
                return self._merged_train(cell.task, block)
        raise KeyError(f"{cell} is not in ablation {self.name!r}")

    def _merged_train(self, task: str, block: AblationBlock) -> dict:
        return {**self.train, **self.task_train.get(task, {}), **block.train}

    def check(self) -> None:
        from mu0sim.envs.catalog import ROBOTS, check_choice
        from mu0sim.policies.action_expert import VARIANTS
        from mu0sim.policies.train_bc import TrainPolicyConfig

        if not self.matrix:
            raise ValueError(f"ablation {self.name!r} has an empty matrix; give at least one block")
        free = sorted(set(TrainPolicyConfig.__dataclass_fields__) - _CELL_SETTINGS)
        self.check_task_train(free)  # before the blocks merge it into their cells' settings
        settings: dict[Cell, dict] = {}
        for i, block in enumerate(self.matrix):
            for key in ("tasks", "robots", "variants", "demos"):
                if not getattr(block, key):
                    raise ValueError(f"matrix block {i} has no {key}")
            check_collectable(block.tasks, block.robots)
            for variant in block.variants:
                check_choice("variant", variant, VARIANTS)
            for demos in block.demos:
                if not isinstance(demos, int) or demos < 2:
                    raise ValueError(f"matrix block {i}: demos must be integers >= 2 (one is kept for validation), "
                                     f"got {demos!r}")
            if block.train and not block.tag:
                raise ValueError(f"matrix block {i} changes training settings {sorted(block.train)} without a tag "
                                 "naming the change (e.g. tag: flow)")
            if block.tag and not block.tag.replace("-", "").isalnum():
                raise ValueError(f"matrix block {i}: tag {block.tag!r} must be letters, digits and '-'")
            for cell in block_cells(block):
                merged = self._merged_train(cell.task, block)
                if settings.setdefault(cell, merged) != merged:
                    raise ValueError(f"cell {cell.name} appears in two blocks with different train settings; give "
                                     "one of them another tag")
            _refuse_fixed_settings(block.train, free, f"matrix block {i}: ", "block")
        for robot in self.pretrain_robots:
            check_choice("robot", robot, ROBOTS)
        for name in ("episodes", "steps", "feature_every", "pretrain_demos", "pretrain_steps", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.execution_noise_std < 0:
            raise ValueError(f"execution_noise_std must be >= 0 (0: clean demos), got {self.execution_noise_std}")
        if not 0 <= self.grip_flip_rate < 1:
            raise ValueError(f"grip_flip_rate must be in [0, 1) (0: clean demos), got {self.grip_flip_rate}")
        self.check_expert_options()
        _refuse_fixed_settings(self.train, free, "", "ablation")
        for cell in self.cells():  # a setting that cannot train fails now, not when its block comes hours later
            try:
                train_config_for(self, cell).check()
            except ValueError as error:
                raise ValueError(f"cell {cell.name}: {error}") from None
        if not (Path(self.mu0) / "config.json").exists():
            raise FileNotFoundError(f"μ0 checkpoint {self.mu0} not found (expected {self.mu0}/config.json)")
        if self.mu0_free_from and not (Path(self.mu0_free_from) / "cells.json").exists():
            raise FileNotFoundError(f"mu0_free_from: no study record at {self.mu0_free_from} (expected "
                                    f"{self.mu0_free_from}/cells.json, an `mu0sim ablate` out folder)")
        if self.mu0_free_from and Path(self.mu0_free_from).resolve() == Path(self.out).resolve():
            raise ValueError(f"mu0_free_from names this study's own out folder {self.out!r}: name the study run on "
                             "the other μ0")

    def check_task_train(self, free: list[str]) -> None:
        """``task_train`` names tasks of the study, each with a mapping of settings that may vary per cell."""
        self._check_per_task("task_train", self.task_train, "setting")
        for task, settings in self.task_train.items():
            _refuse_fixed_settings(settings, free, f"task_train of {task}: ", "task")

    def check_expert_options(self) -> None:
        """``expert`` names tasks of the study, and each task's scripted expert accepts its options."""
        from mu0sim.policies.scripted import make_expert

        self._check_per_task("expert options", self.expert, "option")
        for task, options in self.expert.items():
            make_expert(task, **options)  # an unknown option is refused with the valid ones

    def _check_per_task(self, what: str, per_task: dict, entry: str) -> None:
        """Each key of ``per_task`` is a task some matrix block runs, and each value a mapping ``entry -> value``."""
        tasks = list(dict.fromkeys(task for block in self.matrix for task in block.tasks))
        for task, value in per_task.items():
            if task not in tasks:
                raise ValueError(f"{what} given for task {task!r}, which no matrix block runs; tasks of this "
                                 f"study: {', '.join(tasks)}")
            if not isinstance(value, dict):
                raise ValueError(f"{what} of {task} must be a mapping {entry} -> value, got {value!r}")


def _refuse_fixed_settings(settings: dict, free: list[str], where: str, scope: str) -> None:
    """``settings`` sets only TrainPolicyConfig fields that may vary per cell (``free``), not what makes a cell."""
    bad = sorted(set(settings) - set(free))
    if bad:
        raise ValueError(f"{where}train settings {bad} cannot be set per {scope}; valid: {', '.join(free)}")


def check_collectable(tasks: list[str], robots: list[str]) -> None:
    """Every task and robot is known and every task has a scripted expert to collect demos with."""
    from mu0sim.envs.catalog import ROBOTS, TASKS, check_choice
    from mu0sim.policies.scripted import EXPERTS

    for task in tasks:
        check_choice("task", task, TASKS)
        if task not in EXPERTS:
            raise ValueError(f"task {task!r} has no scripted expert to collect demos with (tasks with one: "
                             f"{', '.join(EXPERTS)})")
    for robot in robots:
        check_choice("robot", robot, ROBOTS)


def block_cells(block: AblationBlock) -> list[Cell]:
    """A block's cells; the largest demo count first, so μ0's features over a file are cached in one pass."""
    return [Cell(task, robot, variant, demos, block.tag) for task in block.tasks
            for demos in sorted(block.demos, reverse=True) for robot in block.robots for variant in block.variants]


# what a study never takes from its ``base``: its own identity (and where its cells, log and table go)
_NOT_INHERITED = ("name", "out")
# per-task mappings: from a base, only the tasks the study runs
_PER_TASK = ("task_train", "expert")


def _read_ablation_yaml(path: Path) -> dict:
    import yaml

    if not path.exists():
        raise FileNotFoundError(f"ablation config {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must be a mapping with at least 'name' and 'matrix' (a list of blocks)")
    return raw


def _with_base(raw: dict, path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """``raw`` with every setting it leaves out taken from its ``base`` config (recursively): the base's matrix
    when it has none, never the base's ``name`` or ``out``; the base's per-task recipes only for the tasks run."""
    chain = (*chain, path.resolve())
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ValueError(f"{path}: 'base' must be the path of another ablation config, got {base!r}")
    if "out" not in raw:
        raise ValueError(f"{path} takes its settings from {base} but needs its own 'out' (else both studies would "
                         f"write one episode log)")
    base_path = Path(base)
    if base_path.resolve() in chain:
        raise ValueError(f"{path}: 'base' makes a cycle: {' -> '.join(map(str, (*chain, base_path)))}")
    parent = _with_base(_read_ablation_yaml(base_path), base_path, chain)
    inherited = {key: value for key, value in parent.items() if key not in _NOT_INHERITED and key not in raw}
    blocks = raw.get("matrix", inherited.get("matrix"))
    tasks = {task for block in blocks or [] if isinstance(block, dict) for task in block.get("tasks", [])}
    for key in _PER_TASK:
        if isinstance(inherited.get(key), dict):
            inherited[key] = {task: value for task, value in inherited[key].items() if task in tasks}
    return {**inherited, **raw}


def load_ablation(path: str | Path, overrides: list[str] = ()) -> AblationConfig:
    """Read an ablation YAML (unknown keys are an error naming the valid ones) and apply ``--key=value`` overrides.

    ``base: OTHER.yaml`` (a path like every other in the file: from where ablate runs) takes every setting the file
    leaves out from that study, e.g. the study rerun on another μ0 or training seed is ``base``, ``name``, ``out``
    and what differs. The base's ``matrix`` is taken when the file has none; its ``name`` and ``out`` never are;
    its ``task_train`` and ``expert`` only for the tasks this file runs. The loaded config is complete (what the
    report records), with no trace of ``base``."""
    from mu0sim.config import apply_overrides, from_dict

    path = Path(path)
    raw = _with_base(_read_ablation_yaml(path), path)
    if "matrix" not in raw or "name" not in raw:
        raise ValueError(f"{path} must be a mapping with at least 'name' and 'matrix' (a list of blocks)")
    blocks = raw.pop("matrix")
    if not isinstance(blocks, list):
        raise ValueError(f"{path}: 'matrix' must be a list of blocks, got {type(blocks).__name__}")
    matrix = [from_dict(AblationBlock, b, f"{path} matrix block {i}") for i, b in enumerate(blocks)]
    config = from_dict(AblationConfig, {**raw, "matrix": matrix}, str(path))
    return apply_overrides(config, list(overrides))


def dataset_path(data_dir: str | Path, task: str, robot: str) -> Path:
    return Path(data_dir) / f"{task}_{robot}.hdf5"


def ensure_dataset(path: Path, task: str, robot: str, demos: int, progress: bool = True,
                   execution_noise_std: float = 0.0, expert: dict | None = None,
                   grip_flip_rate: float = 0.0) -> Path:
    """``path`` holds at least ``demos`` successful scripted demos (collects the missing ones; resumable). A file
    collected otherwise (another ``execution_noise_std`` or ``expert`` options) is refused, not mixed."""
    from mu0sim.rollouts.collect import CollectConfig, collect

    summary = collect(CollectConfig(task=task, robot=robot, episodes=demos, out=path, expert=dict(expert or {}),
                                    execution_noise_std=execution_noise_std, grip_flip_rate=grip_flip_rate),
                      progress=progress)
    print(f"{task}/{robot}: {summary.kept} new demos kept of {summary.attempted} attempted "
          f"({summary.total_demos} in {path})", flush=True)
    return path


def trained_with(policy: Path, train) -> bool:
    """Whether ``policy`` holds a finished checkpoint trained with exactly this configuration."""
    meta = policy / "config.json"
    if not (meta.exists() and (policy / "model.safetensors").exists()):
        return False
    from mu0sim.policies.action_expert import EXPERT_INPUTS
    from mu0sim.policies.train_bc import same_train_config

    saved = json.loads(meta.read_text())
    return (saved.get("policy", {}).get("inputs", 1) == EXPERT_INPUTS  # an older expert's inputs: retrain
            and "train_config" in saved and same_train_config(saved["train_config"], train))


def ensure_policy(train, label: str, progress: bool = True) -> Path:
    """Train the action expert ``train`` describes unless a checkpoint trained exactly so exists."""
    from mu0sim.policies.train_bc import train_policy

    policy = Path(train.out)
    if trained_with(policy, train):
        print(f"{label}: reusing {policy}", flush=True)
    else:
        summary = train_policy(train, progress=progress)
        print(f"{label}: validation loss {summary['val_loss']:.4f} ({summary['wall_s']:.0f} s) -> {policy}",
              flush=True)
    return policy


def ensure_policies(trains: dict[str, object], workers: int = 1, progress: bool = True) -> dict[str, Path]:
    """:func:`ensure_policy` for each ``label -> TrainPolicyConfig``; the μ0 feature replays of the experts still
    to train run first, over ``workers`` processes (the replay renders and runs μ0 on one core per process; the
    training that follows uses every core)."""
    from mu0sim.policies.train_bc import prepare_features

    todo = [t for t in trains.values() if not trained_with(Path(t.out), t)]
    for mu0 in dict.fromkeys(t.mu0 for t in todo) if workers > 1 else ():  # one worker: replay in-process
        prepare_features([t for t in todo if t.mu0 == mu0], workers, progress)
    return {label: ensure_policy(train, label, progress) for label, train in trains.items()}


def _manifest_path(config: AblationConfig) -> Path:
    return Path(config.out) / "cells.json"


def read_manifest(config: AblationConfig) -> dict[str, dict]:
    """``OUT/cells.json``: cell name -> ``{train_config, inputs, policy_id}`` of the checkpoint it was evaluated with
    (and ``oracle``, the closed-loop oracle's version, for a variant whose traces come from it)."""
    path = _manifest_path(config)
    return json.loads(path.read_text()) if path.exists() else {}


def record_cells(config: AblationConfig, cells: dict[Cell, object]) -> None:
    """Record each cell's training configuration and its trained checkpoint's fingerprint in ``OUT/cells.json``."""
    from mu0sim.policies.action_expert import EXPERT_INPUTS
    from mu0sim.policies.train_bc import oracle_version
    from mu0sim.rollouts.evaluate import policy_id

    manifest = read_manifest(config)
    for cell, train in cells.items():
        entry = {"train_config": json.loads(json.dumps(asdict(train))), "inputs": EXPERT_INPUTS,
                 "policy_id": policy_id(train.out)}
        oracle = oracle_version(cell.variant, cell.task)
        manifest[cell.name] = entry if oracle is None else {**entry, "oracle": oracle}
    atomic_write_text(_manifest_path(config), json.dumps(dict(sorted(manifest.items())), indent=1))


def recorded_policy_id(config: AblationConfig, cell: Cell, manifest: dict[str, dict]) -> str | None:
    """The id of the checkpoint ``OUT/cells.json`` records for ``cell``, if it was trained with the inputs and the
    configuration the cell asks for now (and evaluated with the current oracle, for gt-trace); ``None`` when the
    cell has no current expert yet."""
    from mu0sim.policies.action_expert import EXPERT_INPUTS
    from mu0sim.policies.train_bc import oracle_version, same_train_config

    entry = manifest.get(cell.name)
    oracle = oracle_version(cell.variant, cell.task)
    if (entry is None or entry.get("inputs") != EXPERT_INPUTS
            or entry.get("oracle", None if oracle is None else 1) != oracle  # entries before versions: oracle 1
            or not same_train_config(entry["train_config"], train_config_for(config, cell))):
        return None
    return entry["policy_id"]


def cell_episodes(config: AblationConfig, cell: Cell, episodes: list[dict], manifest: dict[str, dict]) -> list[dict]:
    """``cell``'s episodes on the config's seeds, played by the checkpoint its manifest entry records: an episode
    of a superseded expert (another recipe, or retrained since) stays in the log and counts nowhere."""
    policy_id = recorded_policy_id(config, cell, manifest)
    seeds = range(config.seed_start, config.seed_start + config.episodes)
    policy = str(policy_dir(config, cell))
    return [e for e in episodes if policy_id is not None and e["policy"] == policy and e["task"] == cell.task
            and e.get("policy_id") == policy_id and e["seed"] in seeds]


def finished_cells(config: AblationConfig, episodes: list[dict]) -> set[Cell]:
    """Cells evaluated on every seed by the checkpoint ``OUT/cells.json`` records for them, trained with the
    configuration the cell asks for now (``episodes``: the evaluation log's current records)."""
    manifest = read_manifest(config)
    seeds = set(range(config.seed_start, config.seed_start + config.episodes))
    return {cell for cell in config.cells()
            if {e["seed"] for e in cell_episodes(config, cell, episodes, manifest)} == seeds}


def borrowed_cells(config: AblationConfig) -> dict[Cell, list[dict]]:
    """The cells ``config.mu0_free_from`` stands for -> their episodes there: cells of variants that read no μ0
    forecast, finished there on every seed of this study by an expert whose training configuration is the one this
    study asks for, its μ0 and folder aside (so a changed recipe, demo count or training seed is redone here)."""
    from dataclasses import replace

    from mu0sim.policies.action_expert import MU0_FORECAST_VARIANTS

    if not config.mu0_free_from:
        return {}
    other_out = config.mu0_free_from
    manifest = read_manifest(replace(config, out=other_out))
    episodes = _evaluation_log(replace(config, out=other_out))
    seeds = set(range(config.seed_start, config.seed_start + config.episodes))
    borrowed = {}
    for cell in config.cells():
        entry = manifest.get(cell.name)
        if cell.variant in MU0_FORECAST_VARIANTS or entry is None:
            continue
        # the other study's config for this cell: this one's, with that study's μ0 and folder
        other = replace(config, out=other_out, mu0=entry["train_config"]["mu0"])
        eps = cell_episodes(other, cell, episodes, manifest)
        if {e["seed"] for e in eps} == seeds:
            borrowed[cell] = eps
    return borrowed


def _evaluation_log(config: AblationConfig) -> list[dict]:
    from mu0sim.rollouts.evaluate import current_episodes

    log = Path(config.out) / "eval" / "episodes.jsonl"
    return current_episodes([json.loads(line) for line in log.read_text().splitlines() if line.strip()]
                            if log.exists() else [])


def policy_dir(config: AblationConfig, cell: Cell) -> Path:
    return Path(config.out) / "policies" / cell.name


def train_config_for(config: AblationConfig, cell: Cell):
    """The behaviour-cloning config of ``cell``'s expert."""
    from mu0sim.policies.action_expert import PRETRAINED_VARIANTS
    from mu0sim.policies.train_bc import TrainPolicyConfig

    pretrain = ([str(dataset_path(config.data_dir, cell.task, r)) for r in config.pretrain_robots if r != cell.robot]
                if cell.variant in PRETRAINED_VARIANTS else [])
    settings = {"steps": config.steps, "feature_every": config.feature_every,
                "pretrain_steps": config.pretrain_steps, **config.train_settings(cell)}
    return TrainPolicyConfig(data=[str(dataset_path(config.data_dir, cell.task, cell.robot))], mu0=config.mu0,
                             out=str(policy_dir(config, cell)), variant=cell.variant, episodes=cell.demos,
                             pretrain_data=pretrain, pretrain_episodes=config.pretrain_demos if pretrain else None,
                             **settings)


def run_ablation(config: AblationConfig, progress: bool = True) -> dict:
    """Run (or finish) the study; returns what ``OUT/ablation.json`` holds."""
    from mu0sim.policies.action_expert import PRETRAINED_VARIANTS
    from mu0sim.rollouts.evaluate import EvalConfig, evaluate

    config.check()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ablation_config.json", json.dumps(asdict(config), indent=1))
    borrowed = set(borrowed_cells(config))
    if borrowed:
        print(f"{len(borrowed)} cells of variants that read no μ0 forecast taken from {config.mu0_free_from}",
              flush=True)
    for index, block in enumerate(config.matrix):
        for task in block.tasks:
            finished = finished_cells(config, _evaluation_log(config)) | borrowed
            block_task_cells = [c for c in block_cells(block) if c.task == task]
            task_cells = [c for c in block_task_cells if c not in finished]
            print(f"\n== block {index + 1}/{len(config.matrix)}, {task}: {len(block_task_cells)} experts, "
                  f"{len(block_task_cells) - len(task_cells)} finished ==", flush=True)
            if not task_cells:
                continue
            needed: dict[str, int] = {}
            for cell in task_cells:
                needed[cell.robot] = max(needed.get(cell.robot, 0), cell.demos)
                if cell.variant in PRETRAINED_VARIANTS:
                    for other in config.pretrain_robots:
                        if other != cell.robot:
                            needed[other] = max(needed.get(other, 0), config.pretrain_demos)
            for robot, demos in needed.items():
                ensure_dataset(dataset_path(config.data_dir, task, robot), task, robot, demos, progress,
                               config.execution_noise_std, config.expert.get(task), config.grip_flip_rate)
            trains = {cell: train_config_for(config, cell) for cell in task_cells}
            policies = ensure_policies({f"{task}/{c.robot}/{c.column}": t for c, t in trains.items()},
                                       config.workers, progress)
            record_cells(config, trains)
            robots = [r for r in block.robots if any(c.robot == r for c in task_cells)]
            evaluate(EvalConfig(policies=[str(p) for p in policies.values()], task=task, robots=robots,
                                episodes=config.episodes, seed_start=config.seed_start, out=str(out / "eval"),
                                videos=config.videos, workers=config.workers), progress=progress)
            write_report(config, echo=False)  # the table so far, after every block
    return write_report(config)


def write_report(config: AblationConfig, echo: bool = True) -> dict:
    """``ablation.{json,md,png}`` over the config's cells, from the evaluation log (partial cells marked)."""
    from mu0sim.rollouts.evaluate import wilson_interval

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)  # --report-only before any cell ran: an empty table, not a crash
    episodes = _evaluation_log(config)
    manifest = read_manifest(config)
    borrowed = borrowed_cells(config)
    rows = []
    for cell in config.cells():
        policy = str(policy_dir(config, cell))
        eps = cell_episodes(config, cell, episodes, manifest)
        origin = {}
        if len(eps) < config.episodes and cell in borrowed:  # a cell this study finished itself keeps its own
            eps = borrowed[cell]
            policy, origin = eps[0]["policy"], {"from": config.mu0_free_from}
        k, n = sum(e["success"] for e in eps), len(eps)
        low, high = wilson_interval(k, n)
        rows.append({**cell._asdict(), "column": cell.column, "policy": policy, "episodes": n, "successes": k,
                     "success_rate": k / n if n else None, "wilson_low": low, "wilson_high": high,
                     "complete": n == config.episodes, **origin})
    seen = json.loads((Path(config.mu0) / "config.json").read_text()).get("robots_seen", [])
    summary = {"name": config.name, "mu0": config.mu0, "robots_unseen_by_mu0":
               sorted({r["robot"] for r in rows} - set(seen)), "rows": rows}
    atomic_write_text(out / "ablation.json", json.dumps(summary, indent=1))
    table = ablation_table(rows, summary["robots_unseen_by_mu0"])
    atomic_write_text(out / "ablation.md", table)
    plot_ablation(rows, out / "ablation.png", summary["robots_unseen_by_mu0"])
    if echo:
        print(table)
    return summary


def ablation_table(rows: list[dict], unseen: list[str]) -> str:
    """Rows task x robot, one column per variant (and tag) @ demos: ``k/n (low-high)``; ``-`` where the cell is not
    in the config, ``*`` where its evaluation is incomplete, ``†`` where it was taken from another study
    (``mu0_free_from``)."""
    columns = list(dict.fromkeys(r["column"] for r in rows))
    cells = {(r["task"], r["robot"], r["column"]): r for r in rows}
    lines = ["| task | robot | " + " | ".join(columns) + " |", "|---|---|" + "---:|" * len(columns)]
    for task, robot in dict.fromkeys((r["task"], r["robot"]) for r in rows):
        entries = []
        for column in columns:
            r = cells.get((task, robot, column))
            if r is None:
                entries.append("-")
            elif not r["episodes"]:
                entries.append("*")
            else:
                entries.append(f"{r['successes']}/{r['episodes']}{'' if r['complete'] else '*'}"
                               f"{'†' if r.get('from') else ''} ({r['wilson_low']:.2f}-{r['wilson_high']:.2f})")
        name = robot + (" (unseen by μ0)" if robot in unseen else "")
        lines.append(f"| {task} | {name} | " + " | ".join(entries) + " |")
    lines += ["", "Cells: successes/episodes (95% Wilson interval); `@N`: trained on N demos; `*`: evaluation "
              "incomplete; `-`: not in the config."]
    origins = sorted({r["from"] for r in rows if r.get("from")})
    if origins:
        lines[-1] += (f" `†`: a variant that reads no μ0 forecast, taken as finished from {', '.join(origins)} (the "
                      "same training: recipe, demos and seeds).")
    return "\n".join(lines) + "\n"


def plot_panels(rows: list[dict]) -> tuple[list[str], list[int], list[str]]:
    """The plot's layout: tasks (one row of panels each), demo counts (one column each, most demos first) and
    the variants (tag included: one colour each, the same in every panel), in the order the config names them."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    demos = sorted({r["demos"] for r in rows}, reverse=True)
    variants = list(dict.fromkeys(_variant_label(r) for r in rows))
    return tasks, demos, variants


def _variant_label(row: dict) -> str:
    return row["variant"] + (f"-{row['tag']}" if row.get("tag") else "")


def plot_ablation(rows: list[dict], path: Path, unseen: list[str] = ()) -> None:
    """One panel per task (rows) x demo count (columns); in each, a group of bars per robot, one bar per variant
    (its colour the same in every panel), with 95% Wilson intervals. A study of 3 tasks x 6 robots x 2 demo
    counts reads at a glance, where one row of 100 bars did not. Robots in ``unseen`` (by μ0) are marked so."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, demos, variants = plot_panels(rows)
    robots = list(dict.fromkeys(r["robot"] for r in rows))
    cells = {(r["task"], r["demos"], r["robot"], _variant_label(r)): r for r in rows}
    colors = plt.get_cmap("tab10")
    width = 0.8 / max(1, len(variants))
    fig, axes = plt.subplots(max(1, len(tasks)), max(1, len(demos)), squeeze=False, sharey=True,
                             figsize=(max(4.0, 0.9 + 0.16 * len(robots) * len(variants)) * max(1, len(demos)),
                                      0.6 + 2.3 * max(1, len(tasks))))
    for row_axes, task in zip(axes, tasks):
        for ax, count in zip(row_axes, demos):
            for j, variant in enumerate(variants):
                xs, ys, err = [], [], [[], []]
                for i, robot in enumerate(robots):
                    r = cells.get((task, count, robot, variant))
                    if r is None or not r["episodes"]:
                        continue
                    xs.append(i + (j - (len(variants) - 1) / 2) * width)
                    ys.append(r["success_rate"])
                    err[0].append(r["success_rate"] - r["wilson_low"])
                    err[1].append(r["wilson_high"] - r["success_rate"])
                ax.bar(xs, ys, width, yerr=err, capsize=1.5, color=colors(j % 10), error_kw={"elinewidth": 0.8})
            ax.set_xticks(range(len(robots)), [r + ("\n(unseen by μ0)" if r in unseen else "") for r in robots],
                          fontsize=7)
            ax.set_ylim(0, 1.05)
            ax.set_title(f"{task}, {count} demos", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
        row_axes[0].set_ylabel("success (95% Wilson)", fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors(j % 10)) for j in range(len(variants))]
    fig.legend(handles, variants, loc="upper center", ncol=len(variants), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


__all__ = ["AblationBlock", "AblationConfig", "Cell", "load_ablation", "run_ablation", "write_report", "ensure_dataset",
           "ensure_policy", "trained_with", "finished_cells", "borrowed_cells", "read_manifest", "record_cells",
           "plot_ablation", "plot_panels"]
