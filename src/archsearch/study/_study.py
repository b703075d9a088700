"""The study: owns the ask -> evaluate -> tell -> record loop and its file.

A search runs in *steps*: the strategy proposes ``children_per_step``
architectures, the evaluator trains them, each finished trial is committed at
once, the strategy learns from the step's rewards and its new state is
committed. Reopening the file continues from the last committed strategy
state; trials of an unfinished step that were already committed are reused,
not retrained, so a search killed at any instant and resumed produces exactly
the trials of an uninterrupted run.

An *asynchronous* study (evolution, random search) keeps ``children_per_step``
children in flight instead: each result is told to the strategy the moment it
and every earlier child are in, and the strategy proposes one replacement right
away, so workers never wait for a step's slowest child. The order of tells and
asks is fixed by trial numbers, not by finishing times, so such a study is as
reproducible and as resumable as a synchronous one; its strategy state (and the
proposals in flight) is committed after every tell.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archsearch import _limits as limits
from archsearch._objectives import Goals
from archsearch._outputs import study_paths
from archsearch.config import SearchConfig
from archsearch.errors import ArchsearchError
from archsearch.evaluation import (
    SHARED_EVALUATORS,
    Ensemble,
    Evaluator,
    LookupEvaluator,
    Result,
    ReusingEvaluator,
)
from archsearch.execution import Executor, build_executor
from archsearch.space import Architecture, SearchSpace
from archsearch.strategies import Outcome, Strategy
from archsearch.study._phases import check_shared_run, phases_summary, run_shared
from archsearch.study._population import (
    check_population_run,
    continued_jobs,
    keep_final_only,
    resets,
    save_lineage,
)
from archsearch.study._progress import progress_for
from archsearch.study._storage import RunLock, Storage, Trial, rank, read_tensors, write_tensors
from archsearch.study._untrusted import UnusableWeights, fitting, short
from archsearch.tasks import TEXT_TASKS, FileTask, SplitIndices, Task, stored_task


@dataclass(frozen=True)
class StepInfo:
    """What a progress callback learns after every strategy update."""

    step: int
    steps: int
    mean_reward: float
    best: Trial | None
    metrics: dict[str, float]


@dataclass(frozen=True)
class _Rank:
    reward: float
    val_loss: float | None
    params: int
    number: int
    kind: str


def _result_of(trial: Trial) -> Result:
    """A recorded trial as the result it recorded (without weights): what a reusing evaluator remembers."""
    return Result(
        reward=trial.reward,
        status=trial.status,  # type: ignore[arg-type]
        val_score=trial.val_score,
        val_curve=trial.val_curve,
        train_loss=trial.train_loss,
        params=trial.params,
        seconds=trial.seconds,
        error=trial.error,
        kept_epoch=trial.kept_epoch,
        val_loss=trial.val_loss,
        flops=trial.flops,
        latency_ms=trial.latency_ms,
        latency_spread=trial.latency_spread,
    )


def _outcome(trial: Trial, goals: Goals) -> Outcome:
    """What the strategy learns from a recorded trial: with objectives, a measured trial's values of them (an
    infeasible one's: the worst point, which every feasible child dominates)."""
    objectives: tuple[float, ...] = ()
    if goals.objectives and trial.status == "infeasible":
        objectives = goals.worst()
    elif goals.objectives and trial.status in ("ok", "diverged"):
        objectives = goals.minimised({o.metric: getattr(trial, o.metric) for o in goals.objectives})
    return Outcome(trial.architecture, trial.reward, trial.status, objectives, trial.number, tuple(trial.train_loss))


def child_seed(study_seed: int, step: int, slot: int) -> int:
    """The training seed of one child: a pure function of the study seed and its position."""
    return int(np.random.SeedSequence(study_seed, spawn_key=(step, slot)).generate_state(1)[0])


def _stored_config(config: SearchConfig, parts: Any, task_config: dict[str, Any] | None) -> dict[str, Any]:
    """The config a new study stores: its parts as their configs, its budget, seed, flags and goals."""
    return {
        "task": task_config,
        "space": parts.space.to_config(),
        "strategy": parts.strategy.to_config(),
        "trainer": parts.evaluator.to_config(),
        "executor": {"name": "inline", "workers": 1} if parts.executor is None else parts.executor.to_config(),
        "steps": config.steps,
        "children_per_step": config.children_per_step,
        "seed": config.seed,
        "reuse_evaluations": bool(config.reuse_evaluations),
        "save_children": bool(config.save_children),
        "refit": bool(config.refit) or _cross_validated(parts.evaluator),
        **({"ensemble": ensemble} if (ensemble := config.final_ensemble(parts)) > 1 else {}),
        **({"asynchronous": True} if config.asynchronous else {}),
        **({"keep_final_only": True} if config.keep_final_only else {}),
        **({"goals": goals.to_dict()} if (goals := config.goals()) else {}),
    }


class Study:
    """A search and its SQLite file. Create one with :meth:`create`, reopen with :meth:`open`."""

    def __init__(
        self,
        storage: Storage,
        *,
        task: Task | None = None,
        space: SearchSpace | None = None,
        strategy: Strategy | None = None,
        evaluator: Evaluator | None = None,
        executor: Executor | None = None,
    ) -> None:
        """Use :meth:`create` or :meth:`open`. Components not given are rebuilt from the stored config
        when first used, so reading results never pays for building a controller or a data set."""
        self._storage = storage
        config = storage.config
        try:
            self.steps: int = config["steps"]
            self.children_per_step: int = config["children_per_step"]
            self.seed: int = config["seed"]
            self.reuse_evaluations: bool = config.get("reuse_evaluations", False)
            self.save_children: bool = config.get("save_children", False)
            self.refit_final: bool = config.get("refit", False)
            self.ensemble_size: int = config.get("ensemble", 1)
            self.asynchronous: bool = config.get("asynchronous", False)
            self.keep_final_only: bool = config.get("keep_final_only", False)
            self._configs = {name: config[name] for name in ("task", "space", "strategy", "trainer")}
            self._search = SearchConfig.from_study(config)
        except KeyError as exc:
            raise ArchsearchError(f"{storage.path}: study config lacks {exc}") from None
        self.goals = Goals.from_dict(config["goals"], f"{storage.path}: goals") if "goals" in config else Goals()
        self._cost_cache: dict[str, dict[str, Any]] = {}
        self._timed: dict[str, tuple[float, float]] = {}  # architecture hash -> its latency and spread
        self._task, self._space, self._strategy = task, space, strategy
        self._evaluator = None if evaluator is None else self._reusing(evaluator)
        self._executor = executor

    @property
    def task(self) -> Task | None:
        """The data set; ``None`` for a study of a tabular benchmark, whose evaluator looks rewards up."""
        if self._task is None and self._configs["task"] is not None:
            search = self._search
            if isinstance(search.task, dict) and search.task.get("name") == "arrays":  # the data is in the study file
                search = dataclasses.replace(search, task={**search.task, "data": self._storage.task_data()})
            self._task = self._built("task", search.build_task)
        return self._task

    @property
    def space(self) -> SearchSpace:
        if self._space is None:
            self._space = self._storage.space
        return self._space

    @property
    def strategy(self) -> Strategy:
        if self._strategy is None:
            space = self.space
            self._strategy = self._built("strategy", lambda: self._search.build_strategy(space))
        return self._strategy

    @property
    def evaluator(self) -> Evaluator:
        if self._evaluator is None:
            task, space = self.task, self.space
            built = self._built("trainer", lambda: self._search.build_evaluator(task, space=space))
            self._evaluator = self._reusing(built)
        return self._evaluator

    def _reusing(self, evaluator: Evaluator) -> Evaluator:
        """The study's evaluator: with ``reuse_evaluations``, wrapped so that equivalent architectures
        are evaluated once."""
        return ReusingEvaluator(evaluator) if self.reuse_evaluations else evaluator

    def _built(self, part: str, build: Callable[[], Any]) -> Any:
        """A part built from the stored config; what cannot be built is one line naming the study (the
        file is input: a stored setting may be of any type)."""
        where = f"{self.path}:"
        try:
            return build()
        except ArchsearchError as exc:
            message = str(exc)
            raise ArchsearchError(message if message.startswith(where) else f"{where} {message}") from None
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError, IndexError) as exc:
            why = f"{type(exc).__name__}: {short(str(exc))}"
            raise ArchsearchError(f"{where} config.{part} cannot be built ({why})") from None

    @property
    def executor(self) -> Executor:
        """Where children are evaluated: the one given to :meth:`create` or :meth:`open`, else the
        one the study was created with."""
        if self._executor is None:
            self._executor = self._built("executor", lambda: self._search.build_executor() or build_executor(None))
        return self._executor

    @executor.setter
    def executor(self, executor: Executor) -> None:
        """Run the rest of this study elsewhere (the stored default is unchanged)."""
        if self._executor is not None:
            self._executor.close()
        self._executor = executor

    @property
    def path(self) -> Path | None:
        """The study file; ``None`` for a study kept in memory."""
        return self._storage.path

    def input_paths(self) -> list[Path]:
        """What no output of a command on this study may overwrite: the study file, its SQLite companions,
        its folder of saved children and its data file."""
        paths = [] if self.path is None else study_paths(self.path)
        task = self._configs["task"] or {}
        paths += [Path(task[key]) for key in ("path", "data_dir") if isinstance(task.get(key), str)]
        return paths

    def split_indices(self) -> SplitIndices:
        """The rows of the study's data file (``--data``) in its training, validation and test splits, so
        that other models can be fitted and scored on the very same rows.

        ``.train``, ``.val`` and ``.test`` are 0-based indices of the file's data rows (the header and
        blank lines are not rows; in an ``.npz``, rows of ``X``), in the order of the task's rows. They
        are the task's own split, read from the file again when the study was reopened (its SHA-256 must
        still match). A task not read from a file is refused: it has no file rows to name, and
        ``study.task`` holds its splits.
        """
        config = self._configs["task"]
        name = config.get("name") if isinstance(config, dict) else None
        if config is None:
            raise ArchsearchError(
                f"{self.path}: split_indices: the study has no data set (its rewards are looked up in a table)"
            )
        if name != "file":
            raise ArchsearchError(
                f"{self.path}: split_indices: the study's task {short(repr(name))} was not read from a data file "
                "(--data), so it has no file rows to name; study.task holds its splits (x_train, x_val, x_test)"
            )
        task = self.task
        if not isinstance(task, FileTask):  # a Task built by hand with a file's config
            task = self._built("task", self._search.build_task)
        return task.rows

    # -- creating and opening ----------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike | None,
        task: SearchConfig | Task | str | None,
        *,
        steps: int | None = None,
        children_per_step: int = 15,
        seed: int = 0,
        space: SearchSpace | None = None,
        strategy: Strategy | None = None,
        evaluator: Evaluator | None = None,
        executor: Executor | None = None,
        reuse_evaluations: bool = False,
        save_children: bool = False,
        refit: bool = False,
        ensemble: int | None = None,
        asynchronous: bool = False,
        overwrite: bool = False,
    ) -> Study:
        """A new study file at ``path`` (which must not exist yet, unless ``overwrite``), of a
        :class:`SearchConfig` or of ``task`` and the parts given as keywords.

        Parts not given are chosen as ``archsearch search`` chooses them (see
        :class:`SearchConfig`): for a feature task the seed experiment's ``MLPSpace()``, ``Reinforce``
        seeded with ``seed`` and the ``BatchedTrainer``; for an image task the CNN space and the serial
        trainer with minibatches. With ``reuse_evaluations`` an architecture
        equivalent to one already trained successfully is not trained again: its earlier
        result is recorded again (``Trial.cached_from``). That saves time late in a search,
        when the controller resamples the same architectures, but it also freezes the reward's
        noise for them: a lucky or unlucky first training counts every time. With ``refit`` the
        finished search retrains its final pick on the training and validation rows together
        (:meth:`refit`), and that network is the study's model. With ``ensemble`` above 1 the
        finished search also trains its best architectures again as an ensemble
        (:meth:`build_ensemble`), and that is the study's final model (by default 5 for a table read
        from a data file, else 1: :meth:`SearchConfig.final_ensemble`). ``executor`` says where children
        are evaluated (default: inline, in this process); it never changes the trials. With
        ``asynchronous`` (strategies that learn from one result at a time: evolution, random) the
        study keeps ``children_per_step`` children in flight and tells each result as it comes in
        (see the module docstring); the trials differ from a synchronous study's. With ``overwrite``
        a study already at ``path`` is replaced, with its saved children, once the new one is written
        whole; anything else at ``path``, or a study another process runs, is refused. A trainer that
        cross-validates (``folds`` > 1) always refits: its trials' weights are one fold's.
        """
        if isinstance(task, SearchConfig):
            config = task
        else:
            if task is None and evaluator is None:
                raise ArchsearchError("task: a study needs a task, or an evaluator that needs none")
            if steps is None:
                raise ArchsearchError("steps: a study needs a number of steps")
            config = SearchConfig(
                task=task, space=space, strategy=strategy or "reinforce", evaluator=evaluator, executor=executor,
                steps=steps, children_per_step=children_per_step, seed=seed, reuse_evaluations=reuse_evaluations,
                save_children=save_children, refit=refit, ensemble=ensemble, asynchronous=asynchronous,
            )  # fmt: skip
        if config.save_children and path is None:
            raise ArchsearchError("save_children: a study kept in memory has no folder to save children in")
        parts = config.build()
        if parts.strategy.continues and path is None:
            raise ArchsearchError(f"strategy {parts.strategy.name}: saves every network it trains; a study kept in "
                                  "memory has no folder for them (give the study a file)")  # fmt: skip
        task_config, task_data = None, None
        if parts.task is not None:
            task_config, task_data = stored_task(parts.task, keep_data=path is not None)
        stored = _stored_config(config, parts, task_config)
        storage = Storage.create(path, stored, task_data, overwrite=overwrite)
        return cls(storage, task=parts.task, space=parts.space, strategy=parts.strategy, evaluator=parts.evaluator,
                   executor=parts.executor)  # fmt: skip

    @classmethod
    def open(cls, path: str | os.PathLike, readonly: bool = False, executor: Executor | None = None) -> Study:
        """Reopen a study file; everything is rebuilt from the config it stores. ``executor``
        replaces the stored one for this process (a search can move to a cluster when resumed)."""
        return cls(Storage.open(path, readonly=readonly), executor=executor)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()
        if self._evaluator is not None:
            self._evaluator.close()
        self._storage.close()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def config(self) -> dict[str, Any]:
        return self._storage.config

    # -- running -----------------------------------------------------------------------------

    def completed_steps(self) -> int:
        """Number of strategy updates committed so far."""
        return self._storage.completed_steps()

    def run(
        self,
        steps: int | None = None,
        progress: bool | None = None,
        callback: Callable[[StepInfo], None] | None = None,
    ) -> Trial | None:
        """Run (or continue) the search until ``steps`` strategy updates are committed.

        ``steps`` defaults to the study's budget; a larger value extends the
        budget and is recorded. ``progress=True`` shows the progress on stderr: a bar on a terminal,
        otherwise a line per step, at most one every few seconds (a log, ``nohup``, CI); ``False``
        shows none; the default ``None`` shows the bar on a terminal and nothing otherwise, so that a
        program calling a study does not get lines it did not ask for. Returns the best trial.
        """
        with RunLock(self.path):
            checkpoint = self._prepare_run(steps)
            start = 0 if checkpoint is None else checkpoint[0] + 1
            best = self._storage.best_trial()
            show = sys.stderr.isatty() if progress is None else progress
            bar = progress_for(self.steps, completed=start) if show else None
            if bar:
                bar.__enter__()
            # The controller runs on one thread: its tensors are too small to gain from more, idle
            # intra-op threads spin on the cores that the trainer's workers need, and a study's
            # numbers must not depend on how many cores the machine has.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:

                def report(info: StepInfo) -> None:
                    if bar:
                        bar.update(info.step + 1, info.mean_reward, info.best.reward if info.best else None)
                    if callback:
                        callback(info)

                if self.asynchronous:
                    best = self._run_asynchronous(checkpoint, best, report)
                elif self.shares_weights:
                    best = run_shared(self, start, best, report, show)
                else:
                    for step in range(start, self.steps):
                        best, info = self._run_step(step, best)
                        report(info)
            finally:
                if bar:
                    bar.__exit__(None, None, None)
                if self._executor is not None:  # worker processes live as long as a run
                    self._executor.close()
                if self._evaluator is not None:
                    self._evaluator.close()
                torch.set_num_threads(threads)
        if self.completed_steps() >= self.steps:
            if self.refit_final and best is not None:
                try:
                    self.refit()
                except ArchsearchError as exc:  # the search is complete and stays usable with its own weights
                    warnings.warn(f"{exc}; the study keeps the search's own weights", stacklevel=2)
            if self.ensemble_size > 1 and best is not None:
                try:
                    self.build_ensemble(progress=sys.stderr.isatty() if progress is None else progress)
                except ArchsearchError as exc:
                    warnings.warn(f"{exc}; the study's model is its best network alone", stacklevel=2)
            self._test_score_or_none()  # unusable stored weights are said, not a failed run
            if self.keep_final_only and best is not None:
                keep_final_only(self, best.number)
        return best

    def _prepare_run(self, steps: int | None) -> tuple[int, dict[str, Any]] | None:
        """Every check a run makes, then its first write; returns the latest checkpoint.

        A refused run (a read-only study, a budget below the steps done, a changed data file, a stored
        setting this archsearch cannot build) leaves the file as it was: the components are built and
        the strategy's state loaded before the schema upgrade and the new budget are written, together.
        """
        if self._storage.readonly:
            raise ArchsearchError(f"{self.path}: opened read-only; running a search writes its trials")
        checkpoint = self._storage.latest_checkpoint()
        self._storage.check()
        done = 0 if checkpoint is None else checkpoint[0] + 1
        if steps is not None:
            _check_count("steps", steps)
            if steps < done:
                raise ArchsearchError(f"steps: {steps} is fewer than the {done} steps this study has completed")
        self.evaluator, self.executor  # noqa: B018 -- built now, so that what cannot be built refuses the run
        if checkpoint is not None:
            self._restore(*checkpoint)
        else:
            self.strategy  # noqa: B018
        if self.shares_weights:
            check_shared_run(self, done, steps)
        if self.continues:
            check_population_run(self, steps)
        if self.goals.latency:  # a repeated architecture keeps the latency first measured for it
            for trial in self._storage.trials():
                if trial.latency_ms is not None and trial.latency_spread is not None:
                    self._timed.setdefault(trial.arch_hash, (trial.latency_ms, trial.latency_spread))
        if self.reuse_evaluations:  # what equivalent children of the steps to come may take
            for trial in self._storage.trials():
                if trial.step < done:
                    self.evaluator.remember(trial.number, trial.architecture, _result_of(trial))
        changed = steps is not None and steps != self.steps
        self._storage.upgrade({**self._storage.config, "steps": steps} if changed else None)
        if changed:
            self.steps = steps
        return checkpoint

    def _recorded(self, step: int, archs: list[Architecture]) -> dict[int, Trial]:
        """The trials of ``step`` recorded before an interruption, by slot, each checked against the
        architecture proposed in its slot now."""
        done = {t.slot: t for t in self._storage.trials(step=step)}
        for slot, trial in done.items():
            if slot >= len(archs) or trial.arch_hash != archs[slot].hash:
                raise ArchsearchError(
                    f"{self.path}: step {step} slot {slot} holds {trial.architecture} but the strategy "
                    f"proposes {archs[slot] if slot < len(archs) else 'nothing'} there; the study file does not "
                    "match its config"
                )
        return done

    @property
    def continues(self) -> bool:
        """Whether the study's children continue earlier trials' networks (a population strategy: MIHA, PBT)."""
        return self.strategy.continues

    @property
    def shares_weights(self) -> bool:
        """Whether the study searches with shared weights, in phases (see :mod:`archsearch.study._phases`)."""
        return self._configs["trainer"].get("name") in SHARED_EVALUATORS

    def _run_step(
        self, step: int, best: Trial | None, metrics: dict[str, float] | None = None, evaluator: dict | None = None
    ) -> tuple[Trial | None, StepInfo]:
        """One synchronous step; ``metrics`` join the strategy's, ``evaluator`` (a stateful evaluator's
        new state) is committed with the strategy's."""
        m = self.children_per_step
        archs = self.strategy.ask(m)
        starts = self.strategy.starts() if self.continues else None
        done = self._recorded(step, archs)
        seeds = {slot: child_seed(self.seed, step, slot) for slot in range(m)}
        sources = self.evaluator.plan(archs, [step * m + slot for slot in range(m)])
        for trial in done.values():  # recorded before an interruption: later children of the step may take them
            self.evaluator.remember(trial.number, trial.architecture, _result_of(trial))
        refused = {slot: r for slot in range(m) if slot not in sources and slot not in done
                   and (r := self._infeasible(archs[slot]))}  # fmt: skip
        skipped = {*sources, *refused, *(slot for slot, trial in done.items() if trial.status == "infeasible")}
        trained = [slot for slot in range(m) if slot not in skipped]
        # A batch-dependent trainer re-runs the whole batch it ran uninterrupted, so that every
        # child sees the same batch-mates; only the children not yet recorded are recorded.
        evaluated = trained if self.evaluator.batch_dependent else [s for s in trained if s not in done]
        for slot, result in refused.items():  # first: a resumed step decides on the recorded costs
            if slot not in done:
                done[slot], best = self._record(step, slot, archs[slot], seeds[slot], result, best)
        if any(slot not in done for slot in evaluated):
            sent = [archs[s] for s in evaluated] if starts is None else continued_jobs(self, archs, starts, evaluated)
            jobs = self.executor.run(self.evaluator, sent, [seeds[s] for s in evaluated])
            for index, result in jobs:
                slot = evaluated[index]
                if slot not in done:
                    parent = None if starts is None else starts[slot].parent
                    done[slot], best = self._record(step, slot, archs[slot], seeds[slot], result, best, parent=parent)
        for slot, source in sources.items():
            if slot not in done:
                reused = self.evaluator.reused(source)
                done[slot], best = self._record(step, slot, archs[slot], seeds[slot], reused, best, source)
        metrics = {**self.strategy.tell([_outcome(done[slot], self.goals) for slot in range(m)]), **(metrics or {})}
        if starts is not None:
            metrics["optimizer_resets"] = float(sum(resets(self, done[slot]) for slot in range(m)))
        self._storage.add_step(step, metrics, self.strategy.state_dict(), evaluator)
        mean = float(np.mean([done[slot].reward for slot in range(m)]))
        return best, StepInfo(step, self.steps, mean, best, metrics)

    def _run_asynchronous(
        self, checkpoint: tuple[int, dict] | None, best: Trial | None, report: Callable[[StepInfo], None]
    ) -> Trial | None:
        """Children in flight: tell trial n, then ask trial n + m, in trial order (see the module docstring)."""
        m = self.children_per_step
        total = self.steps * m
        if checkpoint is None:
            told, proposals = 0, self.strategy.ask(m)
        else:
            state = checkpoint[1]
            self.strategy.load_state_dict(state["strategy"])
            told = int(state["told"])
            proposals = [self.space.validate(Architecture.from_json(a)) for a in state["asked"]]
        asked = {told + i: arch for i, arch in enumerate(proposals)}  # trial number -> architecture

        def propose(number: int) -> None:
            # Proposals run ahead of the budget, so that extending it later changes nothing; a strategy
            # that has nothing left to propose there (random search without repeats on a small space)
            # fails only when that trial is within the budget.
            try:
                asked[number] = self.strategy.ask(1)[0]
            except ArchsearchError:
                if number < total:
                    raise

        for number in range(told + len(proposals), told + m):  # after an extended budget
            propose(number)
        recorded = {t.number: t for t in self._storage.trials() if t.number >= told}
        for number, trial in recorded.items():
            if number not in asked or trial.arch_hash != asked[number].hash:
                raise ArchsearchError(
                    f"{self.path}: trial {number} holds {trial.architecture} but the strategy proposes "
                    f"{asked.get(number, 'nothing')} there; the study file does not match its config"
                )
        stream = self.executor.stream(self.evaluator)

        def submit(number: int) -> None:
            nonlocal best
            if number < total and number not in recorded:
                seed = child_seed(self.seed, number // m, number % m)
                refused = self._infeasible(asked[number])
                if refused is not None:  # recorded at once, never sent
                    recorded[number], best = self._record(number // m, number % m, asked[number], seed, refused, best)
                else:
                    stream.submit(number, asked[number], seed)

        for number in sorted(asked):
            submit(number)
        try:
            while told < total:
                while told not in recorded:
                    number, result = next(stream)
                    seed = child_seed(self.seed, number // m, number % m)
                    recorded[number], best = self._record(number // m, number % m, asked[number], seed, result, best)
                trial = recorded.pop(told)
                metrics = self.strategy.tell([_outcome(trial, self.goals)])
                del asked[told]
                propose(told + m)
                submit(told + m)
                told += 1
                state = {
                    "strategy": self.strategy.state_dict(),
                    "told": told,
                    "asked": [asked[n].to_json() for n in sorted(asked)],
                }
                if told % m:
                    self._storage.set_checkpoint(told // m - 1, state)
                    continue
                step = told // m - 1
                metrics["mean_reward"] = float(np.mean([t.reward for t in self._storage.trials(step=step)]))
                self._storage.add_step(step, metrics, state)
                report(StepInfo(step, self.steps, metrics["mean_reward"], best, metrics))
        finally:
            stream.close()
        return best

    def _with_validation_loss(self, arch: Architecture, result: Result) -> Result:
        """``result`` with the validation loss of its weights; a child whose weights are not a network (a
        value that is not finite, which a trainer may return when the outputs stayed finite) diverged."""
        try:
            return dataclasses.replace(result, val_loss=self.evaluator.validation_loss(arch, result.weights))
        except ArchsearchError as exc:
            return Result.failure("diverged", str(exc), result.params, result.seconds, val_curve=result.val_curve,
                                  train_loss=result.train_loss)  # fmt: skip

    def _record(
        self,
        step: int,
        slot: int,
        arch: Architecture,
        seed: int,
        result: Result,
        best: Trial | None,
        cached_from: int | None = None,
        number: int | None = None,
        phase: str = "search",
        kind: str | None = None,
        parent: int | None = None,
    ) -> tuple[Trial, Trial | None]:
        """Commit one trial (``cached_from``: the trial whose result it takes; ``number``: a derived or
        retrained trial's, numbered on from the search's; ``parent``: the trial whose weights it continued);
        it keeps its weights when it is the best so far. A population's networks before its last step are
        of kind ``proxy``: the final network is the study's pick."""
        if number is None:
            number = step * self.children_per_step + slot
        if self.continues:
            kind = "final" if step == self.steps - 1 else "proxy"
        kind = kind or ("proxy" if self.shares_weights else "final")
        if result.status == "ok" and result.weights is not None and result.val_loss is None:
            result = self._with_validation_loss(arch, result)
        if cached_from is None:
            result = self._with_costs(arch, result)
        candidate = _Rank(result.reward, result.val_loss, result.params, number, kind)
        better = result.status == "ok" and (best is None or rank(candidate) < rank(best))
        ran = cached_from is None
        if self.save_children and result.weights is not None and ran:
            self._save_child(number, result.weights)
            if self.continues:
                save_lineage(self, number, step, slot, arch, parent, result)
        trial = self._storage.add_trial(
            number,
            step,
            slot,
            arch,
            seed,
            result,
            keep_weights=better,
            cached_from=cached_from,
            executor=self.executor.name if ran else None,
            workers=self.executor.workers if ran else None,
            phase=phase,
            kind=kind,
            parent=parent,
        )
        self.evaluator.remember(number, arch, result)
        return trial, trial if better else best

    def _costs(self, arch: Architecture) -> dict[str, Any]:
        """``arch``'s parameters, FLOPs and (where the goals ask) latency and its spread, once per
        architecture: a repeat takes the first measurement."""
        known = self._cost_cache.get(arch.hash)
        if known is None:
            try:
                costs = self.evaluator.costs(arch)
            except Exception:  # noqa: BLE001 -- an architecture that cannot be built fails as its child, not here
                costs = {"params": None, "flops": None}
            known = {**costs, "latency_ms": None, "latency_spread": None}
            if self.goals.latency:
                timed = self._timed.get(arch.hash) or self.evaluator.latency(arch)
                if timed is not None:
                    known["latency_ms"], known["latency_spread"] = self._timed[arch.hash] = timed
            self._cost_cache[arch.hash] = known
        return known

    def _infeasible(self, arch: Architecture) -> Result | None:
        """The result of an architecture over a limit of the goals (recorded, not trained), else ``None``."""
        if not self.goals.limits:
            return None
        costs = self._costs(arch)
        why = self.goals.breaks(costs)
        return None if why is None else Result.failure("infeasible", why, costs["params"] or 0)

    def _with_costs(self, arch: Architecture, result: Result) -> Result:
        """``result`` with ``arch``'s costs, and its reward scalarised where the goals set a target."""
        costs = self._costs(arch)
        if result.params:
            costs = {**costs, "params": result.params}
        reward = self.goals.scalarised(result.reward, costs) if result.status == "ok" else result.reward
        return dataclasses.replace(result, reward=reward, params=int(costs["params"] or result.params),
                                   flops=costs["flops"], latency_ms=costs["latency_ms"],
                                   latency_spread=costs["latency_spread"])  # fmt: skip

    @property
    def children_dir(self) -> Path | None:
        """Where ``save_children`` keeps every child's weights: beside the study, ``STUDY.children/``."""
        return None if self.path is None else self.path.with_name(self.path.name + ".children")

    def _save_child(self, number: int, weights: dict) -> None:
        """Written before the trial is committed, replacing a file left by a run killed in between."""
        write_tensors(self.children_dir / f"{number}.safetensors", weights)

    def child_model(self, number: int):  # noqa: ANN201 -- torch.nn.Module
        """Trial ``number``'s network with its kept weights, from a study that saves its children."""
        file = self.children_dir / f"{number}.safetensors" if self.children_dir else None
        if file is None or not file.exists():
            raise ArchsearchError(f"{self.path}: no saved weights for trial {number} (search with --save-children)")
        trial = self._storage.trial(number)
        if trial is None:
            raise ArchsearchError(f"{self.path}: no trial {number}")
        weights = read_tensors(file, f"the saved weights of trial {number}")
        return self._model(trial, weights, "saved weights", "the study's other trials still work")

    def trial_model(self, number: int) -> tuple[Trial, torch.nn.Module]:
        """Trial ``number`` and its network with the weights its search kept, wherever the study has
        them: the stored model's (before any refit), an ensemble member's (unless they were refit), or
        a saved child's (``save_children``)."""
        trial = self._storage.trial(number)
        if trial is None:
            raise ArchsearchError(f"{self.path}: no trial {number}")
        stored = self._storage.stored_model()
        if stored is not None and stored[0] == number:
            return trial, self._model(trial, self._storage.best_model()[1], "weights")
        members = self._storage.ensemble_members() or []
        if number in members and not self.refit_final:
            weights = self._storage.ensemble_weights()[members.index(number)]
            return trial, self._model(trial, weights, "ensemble weights")
        if self.children_dir is not None and (self.children_dir / f"{number}.safetensors").exists():
            return trial, self.child_model(number)
        raise ArchsearchError(
            f"{self.path}: no weights of trial {number}: the study keeps its best network's and its ensemble's "
            "(search with --save-children to keep every child's)"
        )

    # -- results -----------------------------------------------------------------------------

    def trials(self, top: int | None = None) -> list[Trial]:
        """All trials in order, or the ``top`` best by reward."""
        if top is None:
            return self._storage.trials()
        return self._storage.trials(order="reward")[:top]

    def best(self) -> Trial | None:
        """The trial with the highest reward (status ``ok``); ties go by validation loss, parameters, then
        the earliest (see :func:`archsearch.study._storage.rank`)."""
        return self._storage.best_trial()

    def step_metrics(self) -> list[tuple[int, dict[str, float]]]:
        return self._storage.steps()

    def best_model(self):  # noqa: ANN201 -- torch.nn.Module
        """The study's model: the best child with the weights it had at the epoch that set its reward,
        or, once the study has been refit, that architecture retrained on train + validation."""
        number = self._stored_best()[0]
        weights, what = self._model_weights(number, self._storage.refit_info(number) is not None)
        return self._model(self.best(), weights, what)

    def _model_weights(self, number: int, refit: bool) -> tuple[dict, str]:
        """The stored weights of the study's model, trial ``number`` (``refit``: its refit), and their name."""
        if refit:
            return self._storage.refit_model(number)[2], "refit weights"
        return self._storage.best_model()[1], "weights"

    def _model(self, trial: Trial, weights: dict, what: str, works: str = "") -> torch.nn.Module:
        """``trial``'s network with stored ``weights``, which must fit its architecture exactly."""
        with self._usable(trial, what, works):
            return self.evaluator.model(trial.architecture, weights)

    @contextmanager
    def _usable(self, trial: Trial, what: str, works: str = "") -> Iterator[None]:
        """Stored weights that the evaluator refuses (they do not fit the architecture) are unusable, said
        with what still works."""
        try:
            yield
        except UnusableWeights:
            raise
        except ArchsearchError as exc:
            works = works or "trials and best still work, export and report's model figures do not"
            raise UnusableWeights(
                f"{self.path}: the {what} of trial {trial.number} do not match its architecture ({exc}); {works}"
            ) from None

    def refit(self) -> dict[str, int]:
        """Retrain the final pick on the training and validation rows together; returns what was done.

        The search used the validation rows to choose; the network to ship can learn from them
        too (as a grid search's refit does). It starts from the same initial weights (the trial's
        seed) and trains, with the same settings, for the epochs whose weights set its reward
        (``kept_epoch``); the evaluator does it (:meth:`Evaluator.refit`). It is deterministic, so a
        refit is done once and stored.
        """
        if not self.evaluator.refits:
            raise ArchsearchError(
                f"{self.path}: refit retrains the final pick; this study's {self.evaluator.name!r} evaluator "
                "trains nothing"
            )
        number = self._stored_best()[0]
        done = self._storage.refit_info(number)
        if done is not None:
            return {"trial": number, "epochs": done[0], "rows": done[1]}
        if self._storage.readonly:
            raise ArchsearchError(f"{self.path}: opened read-only; refitting writes the retrained network")
        best = self.best()
        try:
            refit = self.evaluator.refit(best.architecture, best.seed, best.kept_epoch)
        except ArchsearchError as exc:
            raise ArchsearchError(f"{self.path}: refitting trial {number} failed ({exc})") from None
        self._storage.add_refit(number, refit.epochs, refit.rows, refit.weights)
        return {"trial": number, "epochs": refit.epochs, "rows": refit.rows}

    # -- ensemble ------------------------------------------------------------------------------

    def ensemble_picks(self) -> list[Trial]:
        """The members of the study's ensemble: the best successful trials, ranked as :meth:`best` ranks
        them, one per architecture (an equivalent one proposed again is the same network), at most
        ``ensemble_size``."""
        picks: list[Trial] = []
        seen: set[str] = set()
        for trial in self._storage.ranked_successes():
            if trial.kind == "final" and trial.arch_hash not in seen:
                seen.add(trial.arch_hash)
                picks.append(trial)
                if len(picks) == self.ensemble_size:
                    break
        return picks

    def build_ensemble(self, progress: bool = False) -> dict[str, Any] | None:
        """Train the ensemble of :meth:`ensemble_picks` and store it; returns :meth:`ensemble_summary`
        (``None`` where only one architecture succeeded: the best network alone is the model).

        Each member is trained as the study's model is: retrained on train + validation for its kept
        epochs in a study that refits, else trained again as the search trained it, from the trial's
        seed. The best member is the study's model itself, its stored weights. Training is deterministic,
        so an ensemble is built once, and again only when a longer search has changed the best trials.
        ``progress`` says on stderr how many networks are being trained.
        """
        if not self.evaluator.ensembles:
            raise ArchsearchError(
                f"{self.path}: an ensemble trains the best architectures again; this study's "
                f"{self.evaluator.name!r} evaluator does not"
            )
        model = self._stored_best()[0]
        picks = self.ensemble_picks()
        if len(picks) < 2:  # one successful architecture: the best network alone is the model
            return None
        numbers = [trial.number for trial in picks]
        if self._storage.ensemble_members() != numbers:
            if self._storage.readonly:
                raise ArchsearchError(f"{self.path}: opened read-only; building an ensemble writes its networks")
            if progress:
                more = ", ".join(map(str, numbers[1:]))
                print(f"ensemble: training {len(picks) - 1} more networks (trials {more})", file=sys.stderr)
            members = [(trial.number, self._member_weights(trial, trial.number == model)) for trial in picks]
            self._storage.set_ensemble(members)
        return self.ensemble_summary()

    def _member_weights(self, trial: Trial, is_model: bool) -> dict[str, torch.Tensor]:
        """An ensemble member's weights: the study's model's where it is that trial, else trained again."""
        refit = is_model and self._storage.refit_info(trial.number) is not None
        if is_model and (refit or not self.refit_final):
            return self._model_weights(trial.number, refit)[0]
        try:
            if self.refit_final:
                return self.evaluator.refit(trial.architecture, trial.seed, trial.kept_epoch).weights
            return self.evaluator.retrain(trial.architecture, trial.seed)
        except ArchsearchError as exc:
            why = f"training trial {trial.number} for the ensemble failed ({exc})"
            raise ArchsearchError(f"{self.path}: {why}") from None

    def ensemble_members(self) -> list[Trial] | None:
        """The stored ensemble's trials, best first, if it is the ensemble of the study's best trials now;
        else ``None`` (none built yet, or a search extended since, which builds it again when it ends)."""
        numbers = self._storage.ensemble_members()
        if numbers is None or self.ensemble_size == 1:
            return None
        picks = self.ensemble_picks()
        return picks if [trial.number for trial in picks] == numbers else None

    def ensemble_model(self) -> torch.nn.Module:
        """The study's ensemble, ready to predict: its members' networks, best first, averaging their
        class probabilities (regression: their outputs); see :class:`archsearch.evaluation.Ensemble`."""
        members = self.ensemble_members()
        if members is None:
            why = "the study has no ensemble of its best trials (search with --ensemble K)"
            raise ArchsearchError(f"{self.path}: {why}")
        weights = self._storage.ensemble_weights()
        networks = [self._model(trial, w, "ensemble weights") for trial, w in zip(members, weights, strict=True)]
        return Ensemble(networks, self.task.regression)

    def ensemble_summary(self) -> dict[str, Any] | None:
        """The ensemble as a JSON-ready dict (``best --json``'s ``ensemble``): its members' trial numbers,
        best first, and its test score (measured once, then stored); ``None`` where the study has none."""
        members = self.ensemble_members()
        if members is None:
            return None
        score = self._storage.ensemble_test_score()
        if score is None:
            score = self.evaluator.model_test_score(self.ensemble_model())
            if score is not None and not self._storage.readonly:
                self._storage.set_ensemble_test_score(score)
        return {"size": self.ensemble_size, "members": [trial.number for trial in members], "test_score": score}

    def _restore(self, step: int, state: dict[str, Any]) -> None:
        """Load the strategy's state from the checkpoint of ``step``; a state that does not fit the study's
        strategy (or, asynchronous, whose proposals in flight do not fit its space) is one line."""
        m = self.children_per_step
        with fitting(f"{self.path}: the checkpoint of step {step} does not fit the study's strategy"):
            if not self.asynchronous:
                self.strategy.load_state_dict(state)
                if self.continues and self.strategy.told != step + 1:
                    raise ValueError(f"'told' is {self.strategy.told}, not {step + 1}")
                return
            self.strategy.load_state_dict(state["strategy"])
            told, asked = state["told"], state["asked"]
            if type(told) is not int or not (step + 1) * m <= told < (step + 2) * m:
                raise ValueError(f"'told' is {told!r:.40}, not a trial of step {step + 1}")
            if not isinstance(asked, list) or len(asked) > m:  # fewer where a strategy ran out of proposals
                raise ValueError(f"'asked' is not a list of at most {m} architectures")
            for text in asked:
                self.space.validate(Architecture.from_json(text))

    def _stored_best(self) -> tuple[int, float | None]:
        """``(number, test score)`` of the best trial, whose weights the study stores."""
        best = self.best()
        stored = self._storage.stored_model()
        if best is None or stored is None:
            raise ArchsearchError(f"{self.path}: the study has no successful trial with stored weights yet")
        if stored[0] != best.number:
            raise UnusableWeights(
                f"{self.path}: the stored weights are of trial {stored[0]}, not of the best trial {best.number} "
                "(the file has been altered); trials and best still work, export and report's model figures do not"
            )
        return stored

    @property
    def metric(self) -> str:
        """What ``val_score`` and ``test_score`` hold: ``"accuracy"``, ``"r2"`` for regression, or
        ``"log_likelihood"`` for a language model (minus the mean cross-entropy per word; the perplexity
        is ``exp(-score)``)."""
        task = self._configs["task"] or {}
        if task.get("name") in TEXT_TASKS:
            return "log_likelihood"
        return "r2" if task.get("problem") == "regression" else "accuracy"

    def test_score(self) -> float | None:
        """Test score of the final pick (accuracy; R^2 for regression; a table's test metric), measured
        once by the evaluator with the study's model and then stored.

        ``None`` when there is no successful trial, its evaluator keeps no weights, or the
        task has no test split (``NASClassifier`` keeps none).
        """
        best, stored = self.best(), self._storage.stored_model()
        if best is None or stored is None or stored[0] != best.number:
            return None
        evaluator = self.evaluator  # built even for a stored score: a config that cannot build it is said
        number, score = stored
        refit = self._storage.refit_info(number)
        if refit is not None:
            score = refit[2]
        if score is None:
            weights, what = self._model_weights(number, refit is not None)
            with self._usable(best, what):
                score = evaluator.test_score(best.architecture, weights)
            if score is not None and not self._storage.readonly:
                self._storage.set_test_score(number, score, refit=refit is not None)
        return score

    def reward_trend(self, window: int = 50) -> tuple[float, float] | None:
        """Mean reward of the first and of the last ``window`` completed steps: did the strategy learn?"""
        steps = self.completed_steps()
        if steps == 0:
            return None
        window = min(window, max(1, steps // 2))  # halves that do not overlap
        per_step = self.children_per_step
        rewards = [t.reward for t in self._storage.trials() if t.step < steps]
        first = rewards[: window * per_step]
        last = rewards[(steps - window) * per_step : steps * per_step]
        return float(np.mean(first)), float(np.mean(last))

    def summary(self) -> dict[str, Any]:
        """The best trial as a JSON-ready dict (``archsearch best --json``)."""
        best = self.best()
        if best is None:
            return {"architecture": None, "trials": self._storage.count_trials()}
        trend = self.reward_trend()
        return {
            "architecture": str(best.architecture),
            "architecture_json": best.architecture.to_dict(),
            "hash": best.arch_hash,
            "trial": best.number,
            "step": best.step,
            "phase": best.phase,
            "kind": best.kind,
            "reward": best.reward,
            "metric": self.metric,
            "val_score": best.val_score,
            "test_score": self._test_score_or_none(),
            "refit": self.refit_summary(),
            **({"ensemble": self._ensemble_summary_or_none()} if self.ensemble_size > 1 else {}),
            "params": best.params,
            "flops": best.flops,
            "latency_ms": best.latency_ms,
            **({"goals": self.goals.to_dict()} if self.goals else {}),
            "epochs": best.epochs,
            "trials": self._storage.count_trials(),
            "steps_completed": self.completed_steps(),
            "steps": self.steps,
            "mean_reward_first_steps": trend[0] if trend else None,
            "mean_reward_last_steps": trend[1] if trend else None,
            "trend_window": min(50, max(1, self.completed_steps() // 2)),
            "training": self.config["trainer"],
            **self._benchmark_summary(best),
            **({"weight_sharing": self.phases()} if self.shares_weights else {}),
        }

    def phases(self) -> dict[str, Any] | None:
        """A weight-sharing study's phases (search, derive, retrain) and how well its shared weights
        ranked the retrained architectures (see :func:`archsearch.study._phases.phases_summary`);
        ``None`` for a study that trains every child."""
        return phases_summary(self.trials()) if self.shares_weights else None

    def _test_score_or_none(self) -> float | None:
        """:meth:`test_score`, or ``None`` with a warning when stored weights that it needs cannot be
        used: the rest of the summary stands without them."""
        try:
            return self.test_score()
        except UnusableWeights as exc:
            warnings.warn(f"{exc}; no test score", stacklevel=2)
            return None

    def _ensemble_summary_or_none(self) -> dict[str, Any] | None:
        """:meth:`ensemble_summary`, or ``None`` with a warning when its stored weights cannot be used."""
        try:
            return self.ensemble_summary()
        except UnusableWeights as exc:
            warnings.warn(f"{exc}; no ensemble", stacklevel=2)
            return None

    def refit_summary(self) -> dict[str, int] | None:
        """How the study's model was retrained on train + validation, or ``None`` (the search's own weights)."""
        best = self.best()
        refit = None if best is None else self._storage.refit_info(best.number)
        return None if refit is None else {"epochs": refit[0], "rows": refit[1]}

    def _benchmark_summary(self, best: Trial) -> dict[str, Any]:
        """For a tabular benchmark: the table's values of the best architecture, and the table's best."""
        if self._configs["trainer"].get("name") != LookupEvaluator.name:
            return {}
        return {"benchmark": self.evaluator.benchmark.summary(best.architecture)}


def _check_count(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ArchsearchError(f"{name}: must be a positive integer, got {value!r}")
    limits.integer(name, value, 1, {"steps": limits.MAX_STEPS}.get(name, limits.MAX_CHILDREN_PER_STEP))


def _cross_validated(evaluator: Evaluator) -> bool:
    """Whether children are scored by cross-validation, so that the final pick is refit on all the rows."""
    config = getattr(evaluator, "config", None)
    return evaluator.refits and getattr(config, "folds", 1) > 1
