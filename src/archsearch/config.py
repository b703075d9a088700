"""SearchConfig: the one place that turns names and settings into the parts of a search.

The command line, :meth:`Study.create` and :meth:`Study.open`, the scikit-learn
estimators, ``compare`` and ``sample`` all build their task, space, strategy,
evaluator and executor here, so they cannot disagree: ``--task digits`` and
``Study.create(path, get_task("digits"))`` get the same CNN space and serial
trainer. Every rule across fields lives here too, each refusal one line naming
the field (the command line names its flag instead, through ``names``).

A part may be given by name (the rules then choose its settings), by the config
dict its ``to_config()`` wrote (as a study file stores it: built as it is), or as
an instance (used as it is).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from archsearch import _limits as limits
from archsearch._objectives import COSTS, MNASNET_WEIGHT, Goals
from archsearch.errors import ArchsearchError, short
from archsearch.evaluation import (
    CELL_SCHEDULE,
    EVALUATORS,
    SCHEDULE,
    Evaluator,
    LookupEvaluator,
    TabularBenchmark,
    TrainConfig,
    get_benchmark,
)
from archsearch.evaluation._language import LANGUAGE_TRAINING
from archsearch.execution import DEFAULT_RETRIES, Executor, build_executor
from archsearch.space import (
    ActivationSpace,
    Architecture,
    CNNSpace,
    DagCellSpace,
    MLPSpace,
    SearchSpace,
    SettingsSpace,
    TreeCellSpace,
    UpdateRuleSpace,
)
from archsearch.space._architecture import BATCHED_ACTIVATIONS
from archsearch.space._cells import MAX_DAG_NODES
from archsearch.space._mlp import layer_widths
from archsearch.space._settings import OPTIMIZERS
from archsearch.strategies import STRATEGIES, Strategy
from archsearch.tasks import IMAGE_TASKS, TEXT_TASKS, Task, from_file, get_task

#: child training on image tasks unless the config says otherwise: minibatches, fewer epochs (each is
#: thousands of images) and Adam's usual learning rate for CNNs
IMAGE_TRAINING = {"max_epochs": 5, "patience": 2, "lr": 0.001, "batch_size": 64}
#: how a weight-sharing study's final picks train unless ``training`` says otherwise: on images with the
#: hand-designed baseline's budget, ten epochs, every one of them; on features in minibatches, whose many
#: updates a full training needs (there are few final trainings, and each decides the pick)
RETRAINING = {"images": {"max_epochs": 10, "patience": 10}, "features": {"batch_size": 32}}
#: how a weight-sharing study trains its supernet unless ``shared`` says otherwise: minibatches (each
#: through one sampled architecture) at the learning rate its children train with
SHARED_TRAINING = {"images": {"lr": 0.001, "batch_size": 64}, "features": {"lr": 0.01, "batch_size": 32}}
#: the settings ``shared`` may hold: the supernet's training, and the phases' schedule
SHARED_SETTINGS = ("lr", "batch_size", "weight_decay", *SCHEDULE, *(k for k in CELL_SCHEDULE if k not in SCHEDULE))
#: the networks of a final ensemble by default for a table of the user's own (see ``final_ensemble``)
TABLE_ENSEMBLE = 5
#: image tasks read from a folder of IDX files (``data_dir``)
FOLDER_TASKS = ("mnist", "fashion-mnist")
#: the cell spaces, the kinds a language-modelling task searches
CELL_SPACES = ("dag-cell", "tree-cell")
#: spaces of a formula plugged into a fixed child (an MLP on feature vectors, a small CNN on images)
COMPONENT_SPACES = {"activation": ActivationSpace, "update-rule": UpdateRuleSpace}
#: spaces whose children say how they train (a formula, or their optimizer and batch size): the serial trainer's
OWN_TRAINING_SPACES = (*COMPONENT_SPACES, "settings")
#: settings of the reinforce controller that the config holds as fields of their own
_CONTROLLER = {"controller_lr": "lr", "entropy_weight": "entropy_weight", "advantage": "advantage",
               "curriculum": "curriculum"}  # fmt: skip
_FLAGS = ("reuse_evaluations", "save_children", "refit", "asynchronous", "keep_final_only")
#: the fields that describe the space, which a tabular benchmark brings with it
_SPACE_FIELDS = ("curriculum", "space", "max_layers", "skips", "batch_norm", "optimizers", "units")

Names = Callable[[str], str]


def _field(name: str) -> str:
    return name


@dataclass(frozen=True)
class Parts:
    """What a :class:`SearchConfig` builds; ``executor`` is ``None`` where none was named (inline)."""

    task: Task | None
    space: SearchSpace
    strategy: Strategy
    evaluator: Evaluator
    executor: Executor | None


@dataclass
class SearchConfig:
    """A study's task, space, strategy, evaluator, executor, budget, seed and flags.

    ``task`` is a task name, a ``Task.config`` dict or a task; ``data`` (with ``target``,
    ``problem``, ``split``, ``split_seed``) is a CSV or NPZ file instead, ``benchmark`` a tabular
    benchmark instead. ``space`` defaults to ``cnn`` for image tasks and ``mlp`` otherwise;
    ``evaluator`` (a trainer's name) to ``serial`` for CNNs and ``batched`` for MLPs; image tasks
    train with ``IMAGE_TRAINING`` and all cores unless ``training`` says otherwise, the cores shared
    out between ``workers``. ``executor`` (``inline``, ``process``, ``ray``) with ``workers``,
    ``retries`` and ``address``; none named runs inline.

    ``weight_sharing`` searches with one supernet's shared weights (ENAS, see
    :mod:`archsearch.evaluation._shared`): ``training`` and ``evaluator`` then say how the final picks
    are retrained from scratch (by default with ``RETRAINING``), ``shared`` how the supernet
    trains (``SHARED_TRAINING``) and the phases' schedule (``SCHEDULE``: sharing, controller_steps,
    derive, retrain, reward_rows).

    ``objectives`` (``"val_score:max,params:min"``), the limits ``max_params``, ``max_flops`` and
    ``max_latency_ms``, the soft target ``cost_target`` (``"params=5000"``) with its exponent
    ``cost_weight`` and ``latency`` (time every child) are the study's :class:`~archsearch._objectives.Goals`.
    """

    task: str | dict[str, Any] | Task | None = None
    data_dir: str | None = None
    data: str | None = None
    target: str | None = None
    problem: str | None = None
    split: tuple[float, ...] = (0.7, 0.2, 0.1)
    split_seed: int | None = None
    benchmark: str | None = None
    noisy: bool = False
    space: str | dict[str, Any] | SearchSpace | None = None
    max_layers: int | None = None
    optimizers: list[str] | None = None
    units: list[int] | None = None
    hidden: int | None = None
    skips: bool = True
    batch_norm: bool = True
    strategy: str | dict[str, Any] | Strategy = "reinforce"
    controller_lr: float | None = None
    entropy_weight: float | None = None
    advantage: str | None = None
    curriculum: list[int] | None = None
    evaluator: str | dict[str, Any] | Evaluator | None = None
    training: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    executor: str | dict[str, Any] | Executor | None = None
    workers: int | None = None
    retries: int | None = None
    address: str | None = None
    steps: int = 500
    children_per_step: int = 15
    seed: int = 0
    reuse_evaluations: bool = False
    save_children: bool = False
    refit: bool = False
    ensemble: int | None = None
    asynchronous: bool = False
    weight_sharing: bool = False
    shared: dict[str, Any] = field(default_factory=dict)
    objectives: str | list[str] | None = None
    max_params: int | None = None
    max_flops: int | None = None
    max_latency_ms: float | None = None
    cost_target: str | None = None
    cost_weight: float = MNASNET_WEIGHT
    latency: bool = False
    keep_final_only: bool = False

    # -- dicts -----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields; a part given as an instance is written as its config."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Any) -> SearchConfig:
        """A config from :meth:`to_dict` output; an unknown field or a value of the wrong type is one line."""
        if not isinstance(data, dict):
            raise ArchsearchError(f"config: expected an object of fields, got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            raise ArchsearchError(f"config: unknown field {short(unknown[0])!r} (known: {', '.join(known)})")
        values = {key: _typed(key, known[key].type, value) for key, value in data.items()}
        return cls(**values)

    @classmethod
    def from_study(cls, stored: dict[str, Any]) -> SearchConfig:
        """The config of a study file (its parts as their stored config dicts, built as they are)."""
        return cls(
            task=stored.get("task"),
            space=stored["space"],
            strategy=stored["strategy"],
            evaluator=stored["trainer"],
            executor=stored.get("executor"),
            steps=stored["steps"],
            children_per_step=stored["children_per_step"],
            seed=stored["seed"],
            ensemble=stored.get("ensemble", 1),
            **{flag: stored.get(flag, False) for flag in _FLAGS},
        )

    # -- rules -----------------------------------------------------------------------------------

    def check(self, names: Names = _field) -> None:
        """Refuse what does not fit together, before anything is read or built; ``names`` spells a
        field in messages (the command line gives its flags)."""
        limits.integer(names("steps"), _count(names("steps"), self.steps), 1, limits.MAX_STEPS)
        limits.integer(names("children_per_step"), _count(names("children_per_step"), self.children_per_step), 1,
                       limits.MAX_CHILDREN_PER_STEP)  # fmt: skip
        if self.ensemble is not None:
            limits.integer(names("ensemble"), _count(names("ensemble"), self.ensemble), 1, limits.MAX_ENSEMBLE)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ArchsearchError(f"{names('seed')}: must be a non-negative integer, got {self.seed!r}")
        limits.seed(names("seed"), self.seed)
        self._check_sources(names)
        self._check_strategy(names)
        if self.benchmark is not None:
            for name in _SPACE_FIELDS:
                if getattr(self, name) != _DEFAULTS[name]:
                    raise ArchsearchError(f"{names(name)}: a tabular benchmark has its own space")
        images = self._images()
        if images is not None:
            self._space_kind(images, names)
        self.executor_config(names)
        self._check_sharing(names)
        self._check_goals(names)

    def goals(self, names: Names = _field) -> Goals:
        """The study's objectives, limits, soft target and latency timing, checked."""
        limits_ = {"params": self.max_params, "flops": self.max_flops, "latency_ms": self.max_latency_ms}
        return Goals.parse(self.objectives, limits_, self.cost_target, self.cost_weight, self.latency, names)

    def _check_goals(self, names: Names) -> None:
        goals = self.goals(names)
        name = self._strategy_name()
        strategy = self.strategy if isinstance(self.strategy, Strategy) else STRATEGIES.lookup(name, names("strategy"))
        if getattr(strategy, "multi_objective", False) and not goals.objectives:
            raise ArchsearchError(f"{names('strategy')} {name}: ranks by several objectives; give "
                                  f"{names('objectives')} (for example val_score:max,params:min)")  # fmt: skip
        if goals and (self.weight_sharing or self._text()):
            what = names("weight_sharing") if self.weight_sharing else f"{names('task')} {self._task_name()}"
            given = next(n for n, v in (("objectives", self.objectives), ("max_params", self.max_params),
                                        ("max_flops", self.max_flops), ("max_latency_ms", self.max_latency_ms),
                                        ("cost_target", self.cost_target), ("latency", self.latency)) if v)  # fmt: skip
            raise ArchsearchError(f"{names(given)}: costs and objectives are not supported with {what} yet")

    def _check_sharing(self, names: Names) -> None:
        """Weight sharing: on a task, inline, without the flags that assume children trained one by one."""

        def setting(key: str) -> str:
            return f"shared.{key}" if names is _field else names(key)

        if not self.weight_sharing:
            if self.shared:
                key = str(next(iter(self.shared)))
                raise ArchsearchError(f"{setting(key)}: a setting of weight sharing; add {names('weight_sharing')}")
            return
        ws = names("weight_sharing")
        if self.benchmark is not None:
            raise ArchsearchError(f"{ws}: a tabular benchmark looks rewards up; it has no weights to share")
        unknown = sorted(str(key) for key in self.shared if key not in SHARED_SETTINGS)
        if unknown:
            raise ArchsearchError(f"{names('shared')}: unknown setting {short(unknown[0])!r} "
                                  f"(known: {', '.join(SHARED_SETTINGS)})")  # fmt: skip
        if not self._text():
            for key in self.shared:
                if key in CELL_SCHEDULE and key not in SCHEDULE:
                    raise ArchsearchError(f"{setting(key)}: a setting of cell searches (task ptb), not of "
                                          f"{self._task_name()!r}")  # fmt: skip
        defaults = CELL_SCHEDULE if self._text() else SCHEDULE
        derive, retrain = (self.shared.get(key, defaults[key]) for key in ("derive", "retrain"))
        if type(derive) is int and type(retrain) is int and retrain > derive:
            raise ArchsearchError(f"{setting('retrain')}: retrains the best derived architectures, so at most "
                                  f"{setting('derive')} ({derive}), got {retrain}")  # fmt: skip
        for flag, why in (("asynchronous", "learns from whole steps of proxy rewards"),
                          ("reuse_evaluations", "scores every child with the shared weights of its step")):  # fmt: skip
            if getattr(self, flag):
                raise ArchsearchError(f"{names(flag)}: cannot be combined with {ws}, which {why}")
        if isinstance(self.executor, Executor):
            executor = self.executor.name
        elif isinstance(self.executor, dict):
            executor = self.executor.get("name")
        else:
            executor = (self.executor_config(names) or {}).get("name")
        if executor not in (None, "inline"):
            raise ArchsearchError(
                f"{names('executor')}: {ws} scores children in the one process that holds the shared weights; "
                "run it inline (the default)"
            )

    def _check_sources(self, names: Names) -> None:
        """One source of data, and the settings that belong to it."""
        given = [name for name in ("task", "benchmark", "data") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ArchsearchError(f"{' and '.join(map(names, given))}: give one, not both")
        if self.noisy and self.benchmark is None:
            raise ArchsearchError(
                f"{names('noisy')}: only a tabular benchmark ({names('benchmark')}) has recorded runs to draw from"
            )
        for name, what in (("target", "names a column of"), ("problem", "describes"), ("split_seed", "splits")):
            if getattr(self, name) is not None and self.data is None:
                raise ArchsearchError(
                    f"{names(name)}: {what} your {names('data')} file, and no {names('data')} is given"
                )
        folder = ", ".join((*FOLDER_TASKS, *TEXT_TASKS))
        if self.data_dir is not None and self.task not in (*FOLDER_TASKS, *TEXT_TASKS):
            raise ArchsearchError(f"{names('data_dir')}: only {names('task')} {folder} read a folder of files")
        if self.task in FOLDER_TASKS and self.data_dir is None:
            raise ArchsearchError(
                f"{names('task')} {self.task}: needs {names('data_dir')}, the folder that holds its IDX files"
            )

    def _check_strategy(self, names: Names) -> None:
        name = self._strategy_name()
        strategy = self.strategy if isinstance(self.strategy, Strategy) else STRATEGIES.lookup(name, names("strategy"))
        if self.asynchronous and not getattr(strategy, "asynchronous", False):
            raise ArchsearchError(
                f"{names('asynchronous')}: the {name} strategy learns from whole steps; use {names('strategy')} "
                "evolution or random"
            )
        if self.asynchronous and self.reuse_evaluations:
            raise ArchsearchError(f"{names('asynchronous')}: cannot be combined with {names('reuse_evaluations')}")
        if self.curriculum is not None and name != "reinforce":
            raise ArchsearchError(f"{names('curriculum')}: grows the reinforce controller's children, not {name}'s")

    def _space_kind(self, images: bool, names: Names) -> str | None:
        """The space kind that the rules choose (``None``: the space is given in full), refusing one that
        does not fit the task's data."""
        if isinstance(self.space, SearchSpace | dict):
            return None
        kind = self.space or ("cnn" if images else "dag-cell" if self._text() else "mlp")
        task = self._task_name()
        text = self._text()
        if text and kind not in CELL_SPACES:
            raise ArchsearchError(f"{names('space')} {kind}: task {task!r} models words; search it with "
                                  f"{names('space')} {' or '.join(CELL_SPACES)}")  # fmt: skip
        if kind in CELL_SPACES and not text:
            raise ArchsearchError(f"{names('space')} {kind}: a recurrent cell models words; task {task!r} is not "
                                  f"text (use {names('task')} ptb)")  # fmt: skip
        if self.hidden is not None and kind not in CELL_SPACES:
            raise ArchsearchError(f"{names('hidden')}: the hidden size of a recurrent cell; the {kind} space has none")
        if text and self.evaluator not in (None, "language"):
            raise ArchsearchError(f"{names('evaluator')} {self.evaluator}: language models train with "
                                  f"{names('evaluator')} language")  # fmt: skip
        if kind in OWN_TRAINING_SPACES:
            self._check_component(kind, names)
        if self.optimizers is not None:
            if kind != "settings":
                raise ArchsearchError(f"{names('optimizers')}: the optimizers of the settings space "
                                      f"({names('space')} settings), not of the {kind} space")  # fmt: skip
            limits.known_names(names("optimizers"), self.optimizers, OPTIMIZERS)
        if self.units is not None:
            if kind not in ("mlp", "settings"):
                raise ArchsearchError(f"{names('units')}: the widths of the mlp and settings spaces' layers, not of "
                                      f"the {kind} space's")  # fmt: skip
            layer_widths(names("units"), self.units)
        if kind in ("mlp", "settings") and images:
            raise ArchsearchError(f"{names('space')} {kind}: task {task!r} is images; search it with {names('space')} cnn")
        if kind == "cnn" and not images:
            raise ArchsearchError(
                f"{names('space')} cnn: task {task!r} has feature vectors, not images; use {names('space')} mlp"
            )
        if not self.skips and kind != "cnn":
            raise ArchsearchError(f"{names('skips')}: only the cnn space has skip connections")
        if not self.batch_norm and kind != "cnn":
            raise ArchsearchError(f"{names('batch_norm')}: only the cnn space has batch normalization")
        if kind == "cnn" and self.evaluator == "batched":
            raise ArchsearchError(
                f"{names('evaluator')} batched: trains MLP children only; the cnn space trains with "
                f"{names('evaluator')} serial"
            )
        if kind == "dag-cell" and (self.max_layers or 0) > MAX_DAG_NODES:
            raise ArchsearchError(f"{names('max_layers')}: at most {MAX_DAG_NODES} nodes for the dag-cell space, "
                                  f"got {self.max_layers}")  # fmt: skip
        if kind == "cnn" and (self.max_layers or 0) > limits.CNN_MAX_LAYERS:
            raise ArchsearchError(
                f"{names('max_layers')}: at most {limits.CNN_MAX_LAYERS} for the cnn space, got {self.max_layers}"
            )
        return kind

    def _check_component(self, kind: str, names: Names) -> None:
        """A component or settings space trains each child on its own, from scratch, as it says."""
        if self.evaluator == "batched":
            raise _not_batched(kind, names)
        if self.weight_sharing:
            what = "trains each child with its own settings" if kind == "settings" else "searches a formula in a fixed child"
            raise ArchsearchError(f"{names('weight_sharing')}: shares the weights of layouts; the {kind} space {what}")
        if self.max_layers is not None and kind != "settings":
            units = "core units (1 or 2)" if kind == "activation" else "units (1 to 3)"
            raise ArchsearchError(f"{names('max_layers')}: the {kind} space's child is fixed; its formulas have "
                                  f"{units}, set with space.units")  # fmt: skip
        if self.curriculum is not None:
            raise ArchsearchError(f"{names('curriculum')}: grows the layers of the mlp space, not the {kind} space's")

    def executor_config(self, names: Names = _field, stored: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The executor's config from ``executor`` (a name), ``workers``, ``retries`` and ``address``;
        ``None`` when none of them is given. Given ``stored`` (a study's executor, on resume), they
        change only what they name: ``retries=5`` alone keeps its kind and workers."""
        if not isinstance(self.executor, str | None):
            return None
        if all(value is None for value in (self.executor, self.workers, self.retries, self.address)):
            return None
        stored = dict(stored or {})
        base = stored if self.executor is None or self.executor == stored.get("name") else {}
        if self.executor:
            name = self.executor
        elif self.address is not None and base.get("name") in (None, "ray"):
            name = "ray" if base.get("name") == "ray" else "inline"
        elif self.workers is not None and base.get("name") in (None, "inline"):
            name = "process" if self.workers > 1 else "inline"
        else:
            name = base.get("name", "inline")
        workers = self.workers if self.workers is not None else base.get("workers")
        if self.address is not None and name != "ray":
            raise ArchsearchError(
                f"{names('address')}: names a Ray cluster, and the executor is {name!r}; add {names('executor')} ray"
            )
        if name == "inline" and (workers or 1) > 1:
            raise ArchsearchError(
                f"{names('workers')}: the inline executor runs in this process alone; use {names('executor')} process"
            )
        if name == "ray":
            import importlib.util

            if importlib.util.find_spec("ray") is None:
                raise ArchsearchError(f"{names('executor')} ray: Ray is not installed; pip install 'archsearch[ray]'")
        config: dict[str, Any] = {"name": name, "retries": self.retries if self.retries is not None
                                  else base.get("retries", DEFAULT_RETRIES)}  # fmt: skip
        if name == "ray":
            config.update(address=self.address if self.address is not None else base.get("address"), workers=workers)
        else:
            config["workers"] = workers or (2 if name == "process" else 1)
        return config

    # -- building --------------------------------------------------------------------------------

    def build(self, names: Names = _field) -> Parts:
        """Check the config, then build its parts (the task's data is read here)."""
        self.check(names)
        task = self.build_task()
        space = self.build_space(task, names)
        evaluator = self.build_evaluator(task, names, space)
        if self.refit and not evaluator.refits:
            raise ArchsearchError(
                f"{names('refit')}: retrains the final pick; the {evaluator.name!r} evaluator trains nothing"
            )
        if (self.ensemble or 1) > 1 and not evaluator.ensembles:
            raise ArchsearchError(
                f"{names('ensemble')}: trains the best architectures again as the final model; the "
                f"{evaluator.name!r} evaluator does not"
            )
        if space.kind in OWN_TRAINING_SPACES and evaluator.name == "batched":  # a space given whole
            raise _not_batched(space.kind, names)
        other = [a for a in getattr(space, "activations", ()) if a not in BATCHED_ACTIVATIONS]
        if other and evaluator.name == "batched":
            raise ArchsearchError(f"{names('evaluator')} batched: computes relu and tanh only; the space's "
                                  f"activation {other[0]!r} trains with {names('evaluator')} serial")  # fmt: skip
        if space.kind in COMPONENT_SPACES and task is not None:
            child = "cnn" if _is_images(task) else "mlp"
            if getattr(space, "child", child) != child:
                raise ArchsearchError(f"{names('space')}: the {space.kind} space trains the {space.child} child; "
                                      f"task {task.name!r} needs the {child} child")  # fmt: skip
        strategy = self.build_strategy(space)
        if strategy.space != space:
            raise ArchsearchError(f"{names('strategy')}: its search space differs from the study's space")
        if strategy.continues:
            self._population(strategy, evaluator, names)
        elif self.keep_final_only:
            raise ArchsearchError(f"{names('keep_final_only')}: keeps a population strategy's final network "
                                  f"(strategy miha or pbt), not {strategy.name}'s")  # fmt: skip
        check_goals(self.goals(names), space, evaluator, names)
        return Parts(task, space, strategy, evaluator, self.build_executor(names))

    def _population(self, strategy: Strategy, evaluator: Evaluator, names: Names) -> None:
        """A population strategy (MIHA, PBT) sets the budget, saves every network and continues training
        them with the serial trainer; what assumes children trained from scratch is refused."""
        if evaluator.name != "serial":
            raise ArchsearchError(f"{names('evaluator')} {evaluator.name}: the {strategy.name} strategy continues "
                                  f"training networks, which {names('evaluator')} serial does")  # fmt: skip
        training = evaluator.config
        if training.folds > 1:
            raise ArchsearchError(f"folds: the {strategy.name} strategy continues one network's training; it cannot "
                                  "cross-validate")  # fmt: skip
        for field_, given, why in (("device", training.device != "cpu", "trains on the CPU"),
                                   ("time_limit", training.time_limit is not None, "trains each piece its epochs")):  # fmt: skip
            if given:
                raise ArchsearchError(f"{names(field_)}: the {strategy.name} strategy {why} (see docs/population.md)")
        if strategy.steps > limits.MAX_STEPS:
            raise ArchsearchError(f"strategy {strategy.name}: its schedule of {strategy.steps:,} steps is more than "
                                  f"{limits.MAX_STEPS:,} ({strategy.schedule_text()})")  # fmt: skip
        for flag, why in (("reuse_evaluations", "every child continues its own weights"),
                          ("refit", "its network is its schedule of training, not one from scratch"),
                          ("ensemble", "its network is its schedule of training, not one from scratch")):  # fmt: skip
            value = getattr(self, flag)
            if value is True or (flag == "ensemble" and value not in (None, 1)):
                raise ArchsearchError(f"{names(flag)}: cannot be combined with the {strategy.name} strategy: {why}")
        if self.goals(names):
            raise ArchsearchError(f"{names('objectives')}: costs and objectives are not supported with the "
                                  f"{strategy.name} strategy yet")  # fmt: skip
        for field_, value in (("steps", strategy.steps), ("children_per_step", strategy.width)):
            given = getattr(self, field_)
            if given not in (value, _DEFAULTS[field_]):
                raise ArchsearchError(f"{names(field_)}: the {strategy.name} strategy's schedule has {value} "
                                      f"({strategy.schedule_text()}), got {given}")  # fmt: skip
            setattr(self, field_, value)
        self.save_children = True

    def build_task(self) -> Task | None:
        """The task: as given, read from ``data``, built by name or config; ``None`` with a benchmark."""
        if isinstance(self.task, Task):
            return self.task
        if self.data is not None:
            return from_file(
                str(self.data), self.target, self.problem, tuple(self.split),
                split_seed=self.seed if self.split_seed is None else self.split_seed,
            )  # fmt: skip
        if self.benchmark is not None or (self.task is None and isinstance(self.evaluator, Evaluator | dict)):
            return None  # an evaluator given in full may need no data (a table's lookups)
        config: dict[str, Any] = {"name": self.task} if isinstance(self.task, str) else {}
        if self.task in (*FOLDER_TASKS, *TEXT_TASKS) and self.data_dir is not None:
            config["data_dir"] = str(self.data_dir)
        if self._flattens():
            config["flatten"] = True
        return get_task(config if len(config) > 1 else self.task or "moons")

    def _flattens(self) -> bool:
        """Whether a named image task is read as rows of pixels: for the feed-forward networks of the mlp and
        settings spaces, which a user asks for by naming them."""
        return isinstance(self.task, str) and self.task in IMAGE_TASKS and self.space in ("mlp", "settings")

    def build_space(self, task: Task | None, names: Names = _field) -> SearchSpace:
        if isinstance(self.space, SearchSpace):
            return self.space
        if isinstance(self.space, dict):
            return SearchSpace.from_config(self.space)
        if self.benchmark is not None:
            return self._benchmark.space
        kind = self._space_kind(_is_images(task), names)
        if kind == "cnn":
            return CNNSpace(max_layers=self.max_layers or 4, skips=self.skips, batch_norm=self.batch_norm)
        if kind in COMPONENT_SPACES:
            return COMPONENT_SPACES[kind](child="cnn" if _is_images(task) else "mlp")
        if kind == "settings":
            return SettingsSpace(optimizers=self.optimizers or tuple(OPTIMIZERS), max_layers=self.max_layers or 5,
                                 **({"units": self.units} if self.units else {}))  # fmt: skip
        if kind == "dag-cell":
            return DagCellSpace(nodes=self.max_layers or 8, hidden=self.hidden or 128)
        if kind == "tree-cell":
            if self.max_layers is not None:
                raise ArchsearchError(f"{names('max_layers')}: the tree cell has 8 leaves; --max-layers sets the "
                                      "nodes of the dag-cell space")  # fmt: skip
            return TreeCellSpace(hidden=self.hidden or 128)
        return MLPSpace(max_layers=self.max_layers or 5, **({"units": self.units} if self.units else {}))

    def build_strategy(self, space: SearchSpace) -> Strategy:
        if isinstance(self.strategy, Strategy):
            return self.strategy
        config = {"seed": self.seed, **self.strategy} if isinstance(self.strategy, dict) else self._strategy_config()
        return build_strategy(config, space)

    def build_evaluator(
        self, task: Task | None, names: Names = _field, space: SearchSpace | None = None
    ) -> Evaluator:
        """The evaluator; ``space`` is the study's, which a shared-weights evaluator builds its supernet for."""
        if isinstance(self.evaluator, Evaluator):
            return self.evaluator
        if isinstance(self.evaluator, dict):
            return build_evaluator(self.evaluator, task, space)
        if self.benchmark is not None:
            return LookupEvaluator(self._benchmark, noisy=self.noisy)
        images = _is_images(task)
        kind = self._space_kind(images, names) or (space.kind if space is not None else None)
        if task is not None and task.problem == "language-model":
            return build_evaluator(self._language_config(names), task, space)
        if self.weight_sharing:
            return build_evaluator(self._shared_config(images), task, space)
        name = self.evaluator or ("serial" if kind == "cnn" or kind in OWN_TRAINING_SPACES else "batched")
        return build_evaluator({"name": name, **TrainConfig(**self.training_settings(images)).to_config()}, task)

    def _shared_config(self, images: bool) -> dict[str, Any]:
        """The shared-weights evaluator's config: the supernet's training and schedule, and the reference
        trainer that retrains the final picks (by default as children train, on images for ten epochs)."""
        training = self.training_settings(images)
        explicit = {k: v for k, v in self.training.items() if v is not None}
        retraining = {**training, **RETRAINING["images" if images else "features"], **explicit}
        reference = {"name": self.evaluator or "serial", **TrainConfig(**retraining).to_config()}
        schedule = {k: v for k, v in self.shared.items() if k in SCHEDULE}
        supernet = {**SHARED_TRAINING["images" if images else "features"],
                    **{k: v for k, v in self.shared.items() if k not in SCHEDULE}}  # fmt: skip
        own = TrainConfig(**{**training, **supernet}).to_config()
        return {"name": "shared", **own, "seed": self.seed, **schedule, "reference": reference}

    def _language_config(self, names: Names = _field) -> dict[str, Any]:
        """A language model's trainer: ``LANGUAGE_TRAINING`` under ``training``; with weight sharing the
        shared-cell evaluator, whose supernet trains as children do unless ``shared`` says otherwise."""
        training = {"device": self.device, **LANGUAGE_TRAINING, **{k: v for k, v in self.training.items()
                                                                   if v is not None}}  # fmt: skip
        reference = {"name": "language", **TrainConfig(**training).to_config()}
        if not self.weight_sharing:
            return reference
        schedule = {k: v for k, v in self.shared.items() if k in CELL_SCHEDULE}
        for key in self.shared:
            if key not in CELL_SCHEDULE and key not in ("lr", "batch_size", "weight_decay"):
                flag = f"shared.{key}" if names is _field else names(key)
                raise ArchsearchError(f"{flag}: not a setting of a cell search, which shares every weight a cell "
                                      "can have")  # fmt: skip
        supernet = {k: v for k, v in self.shared.items() if k not in CELL_SCHEDULE}
        own = TrainConfig(**{**training, **supernet}).to_config()
        return {"name": "shared-cell", **own, "seed": self.seed, **schedule, "reference": reference}

    def build_executor(self, names: Names = _field) -> Executor | None:
        if isinstance(self.executor, Executor):
            return self.executor
        config = self.executor if isinstance(self.executor, dict) else self.executor_config(names)
        return None if config is None else build_executor(config)

    def training_settings(self, images: bool) -> dict[str, Any]:
        """TrainConfig arguments: ``training`` and ``device`` over the defaults of the task's kind.

        Image tasks start from ``IMAGE_TRAINING`` and every core (one CNN child's operations are large
        enough to share out); with several workers the cores are split between them, and the split is
        stored with the trainer, so that every executor trains alike."""
        defaults: dict[str, Any] = {"device": self.device}
        if images:
            defaults.update(IMAGE_TRAINING, threads=limits.available_cores())
            defaults["threads"] = max(1, defaults["threads"] // self._workers())
        return {**defaults, **{k: v for k, v in self.training.items() if v is not None}}

    # -- what the fields name --------------------------------------------------------------------

    def _strategy_name(self) -> str | None:
        if isinstance(self.strategy, Strategy):
            return self.strategy.name
        name = self.strategy.get("name") if isinstance(self.strategy, dict) else self.strategy
        return name if isinstance(name, str) else None

    def _strategy_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": self.strategy, "seed": self.seed}
        if self.strategy == "reinforce":
            for key, setting in _CONTROLLER.items():
                if getattr(self, key) is not None:
                    config[setting] = getattr(self, key)
            config["device"] = self.device
        return config

    def _workers(self) -> int:
        """How many children the executor evaluates at once (a Ray executor's unknown count: 1)."""
        if isinstance(self.executor, Executor):
            workers = self.executor.workers
        else:
            config = self.executor if isinstance(self.executor, dict) else self.executor_config()
            workers = (config or {}).get("workers")
        return workers if isinstance(workers, int) else 1

    def _task_name(self) -> str:
        if isinstance(self.task, Task):
            return self.task.name
        if isinstance(self.task, dict):
            return str(self.task.get("name"))
        return self.task or "moons"

    def _images(self) -> bool | None:
        """Whether the task is images, when that is known without reading it (``None``: not known)."""
        if self.benchmark is not None:
            return None
        if self.data is not None:
            return False
        if isinstance(self.task, Task):
            return _is_images(self.task)
        name = self.task.get("name") if isinstance(self.task, dict) else (self.task or "moons")
        if name in IMAGE_TASKS:
            return not (self._flattens() or isinstance(self.task, dict) and self.task.get("flatten") is True)
        return False if name in ("moons", "file", "arrays", *TEXT_TASKS) else None

    def _text(self) -> bool:
        """Whether the task models words (a language-modelling task: cells are its space)."""
        if isinstance(self.task, Task):
            return self.task.problem == "language-model"
        name = self.task.get("name") if isinstance(self.task, dict) else self.task
        return name in TEXT_TASKS

    @functools.cached_property
    def _benchmark(self) -> TabularBenchmark:
        return get_benchmark(self.benchmark)

    def final_ensemble(self, parts: Parts) -> int:
        """How many networks make the final model: ``ensemble`` where given; else ``TABLE_ENSEMBLE`` for a
        table read from a data file (``data``: rows of features, children trained from scratch), where
        the average of the best few beat the best alone on small tables; else 1, the best network alone
        (the seed experiment, images, weight sharing, benchmarks)."""
        if self.ensemble is not None:
            return self.ensemble
        table = self.data is not None and parts.evaluator.ensembles and parts.space.kind == "mlp"
        return TABLE_ENSEMBLE if table else 1

    def with_parts(self, parts: Parts) -> SearchConfig:
        """This config with its parts given as built: building it again builds nothing."""
        kept = {name: getattr(self, name) for name in ("steps", "children_per_step", "seed", *_FLAGS)}
        kept["ensemble"] = self.final_ensemble(parts)
        kept["weight_sharing"] = self.weight_sharing
        for name in ("objectives", "max_params", "max_flops", "max_latency_ms", "cost_target", "cost_weight",
                     "latency"):  # fmt: skip
            kept[name] = getattr(self, name)
        return SearchConfig(task=parts.task, space=parts.space, strategy=parts.strategy, evaluator=parts.evaluator,
                            executor=parts.executor, **kept)  # fmt: skip


#: how many architectures :func:`smallest` looks at to find a space's cheapest
_PROBES = 400


def smallest(space: SearchSpace, cost: Callable[[Architecture], float | None]) -> float | None:
    """The least ``cost`` of a member of ``space``: exact where the space is small enough to list, else the
    least found by a descent (random members, then mutations that lower the cost), which the costs of
    the built-in spaces (they grow with every layer's width) lead to the cheapest member."""
    if space.size() <= 10 * _PROBES:
        values = [c for arch in space.enumerate() if (c := cost(arch)) is not None]
        return min(values, default=None)
    rng = np.random.default_rng(0)
    found = [(c, arch) for arch in (space.sample(rng) for _ in range(_PROBES // 4)) if (c := cost(arch)) is not None]
    if not found:
        return None
    least, best = min(found, key=lambda pair: pair[0])
    for _ in range(_PROBES - _PROBES // 4):
        arch = space.mutate(best, rng)
        value = cost(arch)
        if value is not None and value < least:
            least, best = value, arch
    return least


def check_goals(goals: Goals, space: SearchSpace, evaluator: Evaluator, names: Names = _field) -> None:
    """Refuse a limit on parameters or FLOPs that no member of the space meets (see :func:`smallest`); a
    latency limit is not checked ahead: it takes timing every network. A cost that the evaluator cannot give
    (latency from a table, FLOPs from a table without them) is refused wherever the goals name it."""
    named = {o.metric: "objectives" for o in goals.objectives if o.metric in COSTS}
    named.update({cost: f"max_{cost}" for cost in goals.limits})
    if goals.target is not None:
        named.setdefault(goals.target[0], "cost_target")
    if goals.latency and not evaluator.times:
        where = named.get("latency_ms", "latency")
        raise ArchsearchError(f"{names(where)}: the {evaluator.name} evaluator trains no networks to time")
    rng = np.random.default_rng(0)
    probes = [evaluator.costs(space.sample(rng)) for _ in range(20)] if set(named) - {"latency_ms"} else []
    for cost, where in named.items():
        if cost != "latency_ms" and all(p.get(cost) is None for p in probes):
            raise ArchsearchError(f"{names(where)}: the {evaluator.name} evaluator does not know the {cost} of "
                                  "this space's architectures")  # fmt: skip
    for name, most in goals.limits.items():
        if name == "latency_ms":
            continue
        least = smallest(space, lambda arch, name=name: evaluator.costs(arch)[name])
        if least is None:
            raise ArchsearchError(f"{names('max_' + name)}: the {evaluator.name} evaluator does not know the "
                                  f"{name} of this space's architectures")  # fmt: skip
        if least > most:
            raise ArchsearchError(f"{names('max_' + name)}: no architecture of the space has at most "
                                  f"{int(most):,} {name} (the smallest has {int(least):,})")  # fmt: skip


_DEFAULTS = {f.name: f.default for f in fields(SearchConfig) if f.default is not dataclasses.MISSING}


def _not_batched(kind: str, names: Names) -> ArchsearchError:
    return ArchsearchError(f"{names('evaluator')} batched: trains MLP children with Adam only; the {kind} space "
                           f"trains with {names('evaluator')} serial")  # fmt: skip


def build_strategy(config: dict[str, Any], space: SearchSpace) -> Strategy:
    """A strategy from ``Strategy.to_config()`` output."""
    config = dict(config)
    name = config.pop("name", None)
    factory = STRATEGIES.lookup(name)
    try:
        return factory(space, **config)
    except TypeError as exc:
        raise ArchsearchError(f"strategy: bad settings for {name!r} ({exc})") from None


def build_evaluator(config: dict[str, Any], task: Task | None, space: SearchSpace | None = None) -> Evaluator:
    """A trainer (or a tabular benchmark's lookup) from ``Evaluator.to_config()`` output; a factory that
    asks for it (``needs_space``) is given the study's ``space`` too."""
    config = dict(config)
    name = config.pop("name", None)
    factory = EVALUATORS.lookup(name, "trainer")
    if getattr(factory, "needs_space", False):
        config["space"] = space
    try:
        return factory(task, **config)
    except TypeError as exc:
        raise ArchsearchError(f"trainer: bad settings for {name!r} ({short(str(exc))})") from None


def _is_images(task: Task | None) -> bool:
    return task is not None and task.x_train.dim() == 4


def _count(name: str, value: Any) -> Any:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ArchsearchError(f"{name}: must be a positive integer, got {short(value)}")
    return value


def _plain(value: Any) -> Any:
    """A field's value as JSON: an instance as its config, a tuple as a list."""
    if isinstance(value, Task):
        return value.config
    if isinstance(value, SearchSpace | Strategy | Evaluator | Executor):
        return value.to_config()
    if isinstance(value, tuple | list):
        return list(value)
    return dict(value) if isinstance(value, dict) else value


#: the JSON types each field's annotation admits
_JSON_TYPES = {"str": str, "dict": dict, "int": int, "float": (int, float), "bool": bool, "tuple": list,
               "list": list, "None": type(None)}  # fmt: skip


def _typed(name: str, annotation: str, value: Any) -> Any:
    """``value`` of field ``name`` as its annotation (a string: ``from __future__ import annotations``)
    admits from JSON; a tuple arrives as a list."""
    admitted = tuple(
        _JSON_TYPES[part.split("[")[0].strip()]
        for part in annotation.split("|")
        if part.split("[")[0].strip() in _JSON_TYPES
    )
    flat = tuple(t for group in admitted for t in (group if isinstance(group, tuple) else (group,)))
    if isinstance(value, bool) and bool not in flat or not isinstance(value, flat):
        raise ArchsearchError(f"config.{name}: expected {annotation}, got {type(value).__name__}")
    return tuple(value) if annotation.startswith("tuple") else value
