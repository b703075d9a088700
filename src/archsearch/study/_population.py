"""What a study does for a population strategy (MIHA, PBT): networks that continue earlier trials.

Every trial's network is saved beside the study (``STUDY.children/``), as for ``save_children``:
``N.safetensors`` (its weights, loadable with :meth:`Study.child_model`), ``N.optimizer.safetensors``
(its optimizer's state, flat: see :mod:`archsearch.evaluation._continued`) and ``N.json`` (its settings,
parent, epochs, and lineage: the trials from the first network to it). A child that continues trial
``P`` starts from ``P``'s files; the optimizer's state only when the optimizer is the same (otherwise
it is re-created, which ``N.json`` and the step's ``optimizer_resets`` metric record). The files are
written before the trial is committed, so a study killed at any point resumes to the same lineage.
With ``keep_final_only`` the finished study deletes every network's weights but its final one's,
keeping the JSON files (the lineage stays readable).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from archsearch.errors import ArchsearchError
from archsearch.evaluation import Result
from archsearch.evaluation._continued import Continued, state_mismatch
from archsearch.space import Architecture
from archsearch.strategies._population import MAX_PIECE_EPOCHS
from archsearch.study._storage import StudyWriteError, read_tensors, write_tensors
from archsearch.study._untrusted import short

if TYPE_CHECKING:
    from archsearch.strategies import Start
    from archsearch.study._storage import Trial
    from archsearch.study._study import Study

log = logging.getLogger("archsearch")
#: the files a population study keeps per trial, beside its weights (``N.safetensors``)
OPTIMIZER_SUFFIX, LINEAGE_SUFFIX = ".optimizer.safetensors", ".json"


def check_population_run(study: Study, steps: int | None) -> None:
    """A population study runs its strategy's schedule, no more and no less (before anything is written)."""
    strategy = study.strategy
    for budget, what in ((steps, "steps"), (study.steps, f"{study.path}: the study's steps")):
        if budget is not None and budget != strategy.steps:
            raise ArchsearchError(f"{what}: the {strategy.name} strategy's schedule has {strategy.steps} steps "
                                  f"({strategy.schedule_text()}), got {budget}")  # fmt: skip
    if study.children_per_step != strategy.width:
        raise ArchsearchError(f"{study.path}: the study's children_per_step ({study.children_per_step}) is not the "
                              f"{strategy.name} strategy's {strategy.width}")  # fmt: skip


def continued_jobs(study: Study, archs: list[Architecture], starts: list[Start], slots: list[int]) -> list[Continued]:
    """The jobs of ``slots``: each architecture with its parent's saved weights (and optimizer state,
    when the optimizer is the same) and its epochs."""
    jobs = []
    for slot in slots:
        arch, start = archs[slot], starts[slot]
        if start.parent is None:
            jobs.append(Continued(arch, start.epochs))
            continue
        parent = study._storage.trial(start.parent)
        if parent is None or parent.status != "ok":
            raise ArchsearchError(f"{study.path}: trial {start.parent}, which the next child continues, is not a "
                                  "trained network in the study")  # fmt: skip
        weights = _read(study, start.parent, ".safetensors", "weights")
        same = not _optimizer_differs(parent.architecture, arch)
        state = _read(study, start.parent, OPTIMIZER_SUFFIX, "optimizer state") if same else None
        _check_fits(study, start.parent, arch, weights, state)
        jobs.append(Continued(arch, start.epochs, weights, state))
    return jobs


def _check_fits(study: Study, number: int, arch: Architecture, weights: dict, state: dict | None) -> None:
    """Trial ``number``'s saved weights (and optimizer state) fit ``arch``'s network, or one line naming the file:
    files are input, and a child must not fail on a damaged parent."""
    task = study.task
    model = arch.build(task.in_features, task.out_features)
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError) as exc:
        file = _file(study, number, ".safetensors")
        raise ArchsearchError(f"{file}: the saved weights of trial {number} do not fit its network "
                              f"({short(str(exc))})") from None  # fmt: skip
    if state is not None:
        why = state_mismatch(arch.optimizer(model.parameters(), 0.001, 0.0, 0), state)
        if why is not None:
            file = _file(study, number, OPTIMIZER_SUFFIX)
            raise ArchsearchError(f"{file}: the saved optimizer state of trial {number} does not fit its network "
                                  f"({why})")  # fmt: skip


def _read(study: Study, number: int, suffix: str, what: str) -> dict[str, torch.Tensor]:
    file = _file(study, number, suffix)
    if not file.exists():
        raise ArchsearchError(f"{file}: the saved {what} of trial {number}, which the next child continues, are "
                              "missing (deleted, or the study kept only its final network)")  # fmt: skip
    return read_tensors(file, f"the saved {what} of trial {number}")


def _file(study: Study, number: int, suffix: str) -> Path:
    assert study.children_dir is not None
    return study.children_dir / f"{number}{suffix}"


def save_lineage(study: Study, number: int, step: int, slot: int, arch: Architecture, parent: int | None,
                 result: Result) -> None:  # fmt: skip
    """Write trial ``number``'s optimizer state and JSON beside its weights (before it is committed)."""

    reset = parent is not None and _optimizer_changed(study, parent, arch)
    if reset:
        log.info("trial %d: optimizer changed from trial %d's; its state is re-created", number, parent)
    lineage = [*_parent_lineage(study, parent), number]
    record = {
        "trial": number, "step": step, "slot": slot, "parent": parent, "epochs": result.epochs,
        "lineage": lineage, "architecture": arch.to_dict(), "settings": settings_of(arch),
        "optimizer_state": "new" if parent is None or reset else "resumed", "status": result.status,
        "val_score": result.val_score, "train_loss": result.train_loss, "val_curve": result.val_curve,
    }  # fmt: skip
    if result.optimizer_state is not None:
        write_tensors(_file(study, number, OPTIMIZER_SUFFIX), result.optimizer_state)
    final = _file(study, number, LINEAGE_SUFFIX)
    partial = final.with_name(final.name + ".partial")
    try:
        partial.write_text(json.dumps(record, indent=1))
        os.replace(partial, final)
    except OSError as exc:  # a full disk: the trial is not committed, a resume redoes it
        partial.unlink(missing_ok=True)
        raise StudyWriteError(str(final), exc.strerror or str(exc)) from None


def _optimizer_changed(study: Study, parent: int, arch: Architecture) -> bool:
    trial = study._storage.trial(parent)
    return trial is None or _optimizer_differs(trial.architecture, arch)


def _optimizer_differs(a: Architecture, b: Architecture) -> bool:
    return getattr(a, "optimizer_name", None) != getattr(b, "optimizer_name", None)


def resets(study: Study, trial: Trial) -> bool:
    """Whether ``trial`` continued a network whose optimizer it changed (its state re-created)."""
    return trial.parent is not None and _optimizer_changed(study, trial.parent, trial.architecture)


def _parent_lineage(study: Study, parent: int | None) -> list[int]:
    """The parent's lineage as its JSON file records it (one read, where following the parents through the
    study reads every ancestor); followed through the study when that file is not a lineage ending at it."""
    if parent is None:
        return []
    try:
        recorded = json.loads(_file(study, parent, LINEAGE_SUFFIX).read_text())["lineage"]
    except (OSError, ValueError, TypeError, KeyError):
        recorded = None
    valid = isinstance(recorded, list) and recorded and all(type(n) is int for n in recorded) and (
        recorded[-1] == parent and recorded == sorted(set(recorded)))  # fmt: skip
    return recorded if valid else lineage_of(study, parent)


def lineage_of(study: Study, number: int | None) -> list[int]:
    """The trials from the first network to trial ``number``, following parents (empty for ``None``)."""
    chain: list[int] = []
    while number is not None and len(chain) <= study.steps:
        chain.append(number)
        trial = study._storage.trial(number)
        number = None if trial is None else trial.parent
    return chain[::-1]


def settings_of(arch: Architecture) -> dict[str, Any]:
    """The training settings of a settings member, flat: what the report draws over epochs."""
    network = getattr(arch, "network", None)
    return {
        "optimizer": getattr(arch, "optimizer_name", None),
        "lr": getattr(arch, "lr", None),
        "batch_size": getattr(arch, "batch", None),
        "activations": [a for _, a in network.layers] if network is not None else [],
    }


def keep_final_only(study: Study, keep: int) -> None:
    """Delete every saved network's weights and optimizer state but trial ``keep``'s (JSON files stay)."""
    folder = study.children_dir
    if folder is None or not folder.is_dir():
        return
    for path in folder.iterdir():
        number, _, suffix = path.name.partition(".")
        stale = f".{suffix}" in (".safetensors", OPTIMIZER_SUFFIX) or suffix.endswith("partial")
        if number.isdigit() and int(number) != keep and stale:
            path.unlink(missing_ok=True)


# -- the found schedule: exported with the final network, replayable from scratch ---------------------------

SCHEDULE_FORMAT = "archsearch-schedule"
MAX_PIECES = 10**5


def schedule_of(study: Study, number: int) -> dict[str, Any]:
    """The pieces of training that made trial ``number``'s network, first to last: each trial of its
    lineage with its settings, epochs and seed."""
    pieces = []
    for n in lineage_of(study, number):
        trial = study._storage.trial(n)
        if trial is None:
            raise ArchsearchError(f"{study.path}: trial {n} of trial {number}'s lineage is missing from the study")
        pieces.append({"trial": trial.number, "architecture": trial.architecture.to_dict(), "epochs": trial.epochs,
                       "seed": trial.seed, "settings": settings_of(trial.architecture)})  # fmt: skip
    return {"format": SCHEDULE_FORMAT, "version": 1, "strategy": study.config["strategy"]["name"], "trial": number,
            "epochs": sum(p["epochs"] for p in pieces), "pieces": pieces}  # fmt: skip


def read_schedule(path: Path, space: Any) -> list[tuple[Architecture, int, int]]:
    """``(architecture, epochs, seed)`` per piece of a schedule file, every field checked against ``space``."""
    from archsearch import _limits as limits

    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ArchsearchError(f"{path}: not a readable schedule ({short(str(exc))})") from None
    if not isinstance(data, dict) or data.get("format") != SCHEDULE_FORMAT or data.get("version") != 1:
        raise ArchsearchError(f"{path}: not an archsearch schedule (format {SCHEDULE_FORMAT!r}, version 1)")
    pieces = data.get("pieces")
    if not isinstance(pieces, list) or not 1 <= len(pieces) <= MAX_PIECES:
        raise ArchsearchError(f"{path}: pieces must be a list of 1 to {MAX_PIECES} pieces of training")
    read = []
    for index, piece in enumerate(pieces):
        where = f"{path}: piece {index}"
        if not isinstance(piece, dict):
            raise ArchsearchError(f"{where}: expected an object, got {type(piece).__name__}")
        try:
            arch = space.validate(Architecture.from_dict(piece.get("architecture")))
            epochs = limits.integer("epochs", piece.get("epochs"), 1, MAX_PIECE_EPOCHS)
            seed = limits.seed("seed", piece.get("seed"))
        except ArchsearchError as exc:
            raise ArchsearchError(f"{where}: {exc}") from None
        if index and _widths(arch) != _widths(read[-1][0]):
            raise ArchsearchError(f"{where}: its layers differ from the previous piece's; the weights would not fit")
        read.append((arch, epochs, seed))
    return read


def replay(pieces: list[tuple[Architecture, int, int]], trainer: Any, seed: int | None = None) -> list[Result]:
    """Train the pieces of a schedule one after another from fresh weights, each continuing the last
    one's weights (and its optimizer's state when the optimizer stays the same); ``seed``: every piece's
    seed derived from it, instead of the recorded ones (which give back the very network). Stops at a
    piece that does not finish (its result says why)."""
    from archsearch.evaluation._base import torch_threads
    from archsearch.evaluation._continued import train_continued

    with torch_threads(trainer.config.threads or 1):  # as the study trained them: the same numbers
        return _replayed(pieces, trainer, seed, train_continued)


def _replayed(pieces: list[tuple[Architecture, int, int]], trainer: Any, seed: int | None, train: Any) -> list[Result]:
    import numpy as np

    results: list[Result] = []
    weights = state = None
    previous: Architecture | None = None
    for index, (arch, epochs, recorded) in enumerate(pieces):
        piece_seed = recorded if seed is None else int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
        same = previous is not None and not _optimizer_differs(previous, arch)
        result = train(trainer, Continued(arch, epochs, weights, state if same else None), piece_seed)
        results.append(result)
        if result.status != "ok":
            break
        weights, state, previous = result.weights, result.optimizer_state, arch
    return results


def _widths(arch: Architecture) -> list[int]:
    return [units for units, _ in arch.network.layers]
