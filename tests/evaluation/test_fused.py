"""The batched trainer's compiled epoch: against its PyTorch epoch, its own promises, and its fallback.

The comparison with the reference trainer is in test_batched.py: the batched trainer trains with
the compiled epoch wherever a compiler is at hand, as on every machine that runs this suite.
"""

import pickle
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from archsearch.evaluation import BatchedTrainer, TrainConfig, _native
from archsearch.evaluation._batched import plan_fused_groups
from archsearch.evaluation._scoring import validation_loss
from archsearch.space import MLPArchitecture, MLPSpace

from .test_batched import agreement, equivalence_archs

pytestmark = pytest.mark.skipif(_native.library() is None, reason="no C++ compiler: the compiled epoch is not built")


@pytest.fixture
def fresh_library(monkeypatch, tmp_path):
    """A library looked up again, with its cache in ``tmp_path``; restored afterwards."""
    monkeypatch.setenv("ARCHSEARCH_CACHE", str(tmp_path))
    _native.library.cache_clear()
    yield tmp_path
    monkeypatch.undo()
    _native.library.cache_clear()


def _trainer(task, monkeypatch, compiled: bool, **config):
    monkeypatch.setenv("ARCHSEARCH_KERNEL", "1" if compiled else "0")
    trainer = BatchedTrainer(task, TrainConfig(**config))
    assert trainer.fused is compiled
    return trainer


@pytest.mark.parametrize("config", [{}, {"weight_decay": 0.01}, {"monitor": "loss"}], ids=["plain", "decay", "loss"])
def test_matches_the_pytorch_epoch(moons, monkeypatch, config):
    """Same seeds, same children: the same curves within float rounding (the fast path against the plain one)."""
    archs = equivalence_archs()
    seeds = list(range(300, 300 + len(archs)))
    plain = _trainer(moons, monkeypatch, False, **config).evaluate_all(archs, seeds)
    fused = _trainer(moons, monkeypatch, True, **config).evaluate_all(archs, seeds)
    checks = [agreement(p, f) for p, f in zip(plain, fused)]
    assert sum(all(c) for c in checks) >= len(archs) - 1, checks
    for p, f in zip(plain, fused):
        assert f.status == p.status == "ok"
        assert f.train_loss[0] == pytest.approx(p.train_loss[0], rel=1e-6)
        if p.epochs == f.epochs:
            assert f.kept_epoch == p.kept_epoch
            assert f.val_score == pytest.approx(p.val_score, abs=1 / 200 + 1e-12)


def test_regression_matches_the_pytorch_epoch(friedman, monkeypatch):
    archs = equivalence_archs()[:12]
    seeds = list(range(len(archs)))
    plain = _trainer(friedman, monkeypatch, False, max_epochs=25).evaluate_all(archs, seeds)
    fused = _trainer(friedman, monkeypatch, True, max_epochs=25).evaluate_all(archs, seeds)
    for p, f in zip(plain, fused):
        n = min(p.epochs, f.epochs)
        assert f.train_loss[:n] == pytest.approx(p.train_loss[:n], rel=1e-4)
        assert f.val_curve[:n] == pytest.approx(p.val_curve[:n], abs=1e-4)
    assert sum(p.epochs == f.epochs for p, f in zip(plain, fused)) >= len(archs) - 1


def test_a_child_does_not_depend_on_its_batch_mates(moons):
    """Each child is computed at its own widths: alone, in any group, on any number of threads, the same bits."""
    rng = np.random.default_rng(5)
    archs = [MLPSpace().sample(rng) for _ in range(12)]
    together = BatchedTrainer(moons, TrainConfig(max_epochs=12, threads=2)).evaluate_all(archs, range(12))
    alone = [BatchedTrainer(moons, TrainConfig(max_epochs=12)).evaluate_all([a], [i])[0] for i, a in enumerate(archs)]
    assert len(plan_fused_groups(archs, 2, 2, 900)) < len(archs)  # some did share a group
    for a, b in zip(together, alone):
        assert a.train_loss == b.train_loss and a.val_curve == b.val_curve
        assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)


def test_the_validation_loss_is_the_kept_weights(moons, friedman):
    """Results carry the validation loss of their kept weights, as the study would compute it."""
    archs = [MLPArchitecture.parse(a) for a in ("8-tanh/4-relu", "32-relu/16-tanh/2-relu", "1-tanh")]
    for task in (moons, friedman):
        for arch, result in zip(archs, BatchedTrainer(task, TrainConfig(max_epochs=15)).evaluate_all(archs, [1, 2, 3])):
            assert result.val_loss == pytest.approx(validation_loss(arch, task, result.weights), rel=1e-5)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "pytorch"])
def test_kept_weights_that_are_not_finite_are_a_diverged_child(moons, monkeypatch, compiled):
    """Finite outputs from weights that are not a network (the study does not check weights that come
    with their validation loss, as both epochs return them with monitor=loss)."""
    from archsearch.evaluation import _batched, _fused

    group = _fused.FusedGroup if compiled else _batched._Group
    real = group._weights

    def poisoned(self, flat, child, row):
        weights = real(self, flat, child, row)
        if child.index == 1:
            weights["0.bias"][0] = float("inf")
        return weights

    monkeypatch.setattr(group, "_weights", poisoned)
    archs = [MLPArchitecture.parse("4-relu")] * 3
    results = _trainer(moons, monkeypatch, compiled, max_epochs=4, monitor="loss").evaluate_all(archs, [0, 1, 2])
    assert [r.status for r in results] == ["ok", "diverged", "ok"]
    assert re.fullmatch(r"the kept weights of epoch \d are not finite", results[1].error), results[1].error


def test_groups_plan_small_children_together_and_large_ones_alone():
    small = [MLPArchitecture.parse("2-relu/1-tanh")] * 6
    large = [MLPArchitecture.parse("32-relu/32-tanh")] * 4
    groups = plan_fused_groups(small + large, 2, 2, 900)
    assert sorted(i for g in groups for i in g) == list(range(10))
    assert [g for g in groups if g[0] >= 6] == [[6], [7], [8], [9]]
    assert any(len(g) > 1 for g in groups if g[0] < 6)


def test_stopping_early_stops_the_threads(moons):
    """A caller that stops reading (an interrupt, an error while recording) leaves no training thread behind."""
    arch = MLPArchitecture.parse("32-relu/32-relu/32-relu")
    trainer = BatchedTrainer(moons, TrainConfig(max_epochs=10_000, patience=10_000, threads=2))
    stream = trainer.evaluate([MLPArchitecture.parse("1-relu"), arch, arch], [0, 1, 2])
    next(stream)  # the small child finishes first; the large ones would train for minutes
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "archsearch-group"]


def test_without_a_compiler_one_warning_and_the_pytorch_epoch(moons, monkeypatch, fresh_library):
    archs = equivalence_archs()[:6]
    plain = _trainer(moons, monkeypatch, False, max_epochs=5).evaluate_all(archs, range(6))
    monkeypatch.setenv("ARCHSEARCH_KERNEL", "1")
    monkeypatch.setenv("CXX", str(fresh_library / "no-such-compiler"))
    with pytest.warns(UserWarning) as warned:
        trainer = BatchedTrainer(moons, TrainConfig(max_epochs=5))
        assert not trainer.fused
        results = trainer.evaluate_all(archs, range(6))
        BatchedTrainer(moons, TrainConfig(max_epochs=5)).evaluate_all(archs, range(6))  # decided once
    assert len(warned) == 1
    assert "no-such-compiler" in str(warned[0].message) and "PyTorch epoch" in str(warned[0].message)
    for p, r in zip(plain, results):
        assert p.train_loss == r.train_loss and p.val_curve == r.val_curve


def test_a_worker_process_without_the_kernel_trains_the_pytorch_epoch(moons, monkeypatch):
    """A trainer sent to a worker process that cannot load the kernel (another machine of a cluster)
    trains its groups there with the PyTorch epoch instead of failing them."""
    archs = equivalence_archs()[:8]
    trainer = BatchedTrainer(moons, TrainConfig(max_epochs=8))
    assert trainer.fused
    fused = trainer.evaluate_all(archs, range(8))
    copy = pickle.loads(pickle.dumps(trainer))  # what a worker receives
    monkeypatch.setattr(_native, "library", lambda: None)
    results = {}
    for members in copy.jobs(archs, list(range(8))):  # planned by the process that holds the kernel
        results.update(copy.run_job(members, archs, list(range(8))))
    assert len(results) == 8
    for index, result in results.items():
        assert result.status == "ok" and agreement(fused[index], result) == (True, True, True)


def test_a_compiler_that_fails_is_named_in_the_warning(moons, monkeypatch, fresh_library):
    monkeypatch.setenv("CXX", "false")
    with pytest.warns(UserWarning, match="false could not build the compiled epoch"):
        assert not BatchedTrainer(moons).fused
    assert not list(fresh_library.rglob("*.so"))  # nothing half-written is left to be loaded later


def test_the_library_is_built_once_and_then_reused(fresh_library):
    first = _native.build(_native.compiler())
    built = first.stat().st_mtime_ns
    time.sleep(0.01)
    assert _native.build(_native.compiler()) == first
    assert first.stat().st_mtime_ns == built
    assert first.parent == fresh_library / "kernels"


def test_a_damaged_library_in_the_cache_is_built_again(fresh_library, recwarn):
    path = _native.build(_native.compiler())
    path.write_bytes(b"not a library")
    assert _native.library() is not None
    assert path.read_bytes() != b"not a library" and not recwarn.list


def test_the_command_line_warns_in_one_line(tmp_path):
    """Without a compiler, a search still runs, after one warning line."""
    env = {"ARCHSEARCH_CACHE": str(tmp_path / "cache"), "CXX": str(tmp_path / "missing"), "PATH": "/usr/bin:/bin"}
    study = tmp_path / "s.db"
    proc = subprocess.run(
        [sys.executable, "-m", "archsearch", "search", "--task", "moons", "--trainer", "batched", "--steps", "1",
         "--children", "3", "--max-epochs", "2", "--study", str(study), "--quiet"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("archsearch search: warning: batched trainer:"), proc.stderr
