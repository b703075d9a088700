"""Asynchronous studies: results told in trial order as they come in, reproducible and resumable."""

import pytest

from archsearch import Study
from archsearch.errors import ArchsearchError
from archsearch.evaluation import SerialTrainer, TrainConfig
from archsearch.execution import InlineExecutor, ProcessExecutor
from archsearch.space import MLPSpace
from archsearch.strategies import RandomSearch, RegularizedEvolution, Reinforce


class _Crash(Exception):
    pass


class _CrashingTrainer(SerialTrainer):
    """Raises on its ``crash_at``-th child: a search killed in the middle of a step."""

    crash_at = -1
    count = 0

    def evaluate(self, archs, seeds):
        for item in super().evaluate(archs, seeds):
            type(self).count += 1
            if type(self).count == self.crash_at:
                raise _Crash
            yield item


def _create(path, task, executor=None, strategy="evolution", steps=6, per_step=4, trainer=SerialTrainer):
    space = MLPSpace()
    if strategy == "evolution":
        chosen = RegularizedEvolution(space, seed=5, population_size=6, sample_size=3)
    else:
        chosen = RandomSearch(space, seed=5)
    return Study.create(
        path, task, steps=steps, children_per_step=per_step, seed=5, space=space, strategy=chosen,
        evaluator=trainer(task, TrainConfig(max_epochs=8, patience=20)), executor=executor, asynchronous=True,
    )  # fmt: skip


def _key(study):
    return [(t.number, t.step, t.slot, t.arch_hash, t.reward, t.val_curve, t.seed) for t in study.trials()]


def test_inline_and_process_workers_give_the_same_asynchronous_study(tmp_path, moons):
    with (
        _create(tmp_path / "a.db", moons, InlineExecutor()) as a,
        _create(tmp_path / "b.db", moons, ProcessExecutor(workers=2)) as b,
    ):
        a.run(progress=False)
        b.run(progress=False)
        assert _key(a) == _key(b) and len(a.trials()) == 24
        assert a.step_metrics() == b.step_metrics() and a.completed_steps() == 6
        assert a.best().number == b.best().number


def test_evolution_learns_from_each_result_before_the_step_ends(tmp_path, moons):
    """Asynchronous evolution's first mutants appear within the first step's window, not a step later."""
    with _create(tmp_path / "a.db", moons) as study:
        study.run(progress=False)
        sync_space = MLPSpace()
        strategy = RegularizedEvolution(sync_space, seed=5, population_size=6, sample_size=3)
        synchronous = Study.create(
            tmp_path / "s.db", moons, steps=6, children_per_step=4, seed=5, space=sync_space, strategy=strategy,
            evaluator=SerialTrainer(moons, TrainConfig(max_epochs=8, patience=20)),
        )  # fmt: skip
        synchronous.run(progress=False)
        # both start with the same 6 random members; afterwards the tells interleave differently
        assert _key(study)[:4] == _key(synchronous)[:4]
        assert [t.arch_hash for t in study.trials()] != [t.arch_hash for t in synchronous.trials()]
        synchronous.close()


@pytest.mark.parametrize("crash_at", [3, 9, 14])
def test_a_killed_asynchronous_study_resumes_to_the_uninterrupted_one(tmp_path, moons, crash_at):
    with _create(tmp_path / "straight.db", moons) as straight:
        straight.run(progress=False)
    _CrashingTrainer.count, _CrashingTrainer.crash_at = 0, crash_at
    path = tmp_path / "crashed.db"
    with _create(path, moons, trainer=_CrashingTrainer) as crashed, pytest.raises(_Crash):
        crashed.run(progress=False)
    with Study.open(path, readonly=True) as partial:
        assert 0 < len(partial.trials()) < 24
    with Study.open(path) as resumed:
        resumed.run(progress=False)
        with Study.open(tmp_path / "straight.db", readonly=True) as straight:
            assert _key(resumed) == _key(straight)
            assert resumed.step_metrics() == straight.step_metrics()


def test_extending_an_asynchronous_budget_equals_the_larger_budget_from_the_start(tmp_path, moons):
    with _create(tmp_path / "long.db", moons, strategy="random", steps=5) as long:
        long.run(progress=False)
        with _create(tmp_path / "short.db", moons, strategy="random", steps=2) as short:
            short.run(progress=False)
            assert len(short.trials()) == 8
            short.run(steps=5, progress=False)
            assert _key(short) == _key(long)


def test_only_strategies_that_learn_from_single_results_run_asynchronously(tmp_path, moons):
    space = MLPSpace()
    with pytest.raises(ArchsearchError, match="asynchronous: the reinforce strategy learns from whole steps"):
        Study.create(tmp_path / "r.db", moons, steps=2, space=space, strategy=Reinforce(space), asynchronous=True)
    with pytest.raises(ArchsearchError, match="cannot be combined with reuse_evaluations"):
        Study.create(
            tmp_path / "e.db", moons, steps=2, space=space, strategy=RandomSearch(space),
            asynchronous=True, reuse_evaluations=True,
        )  # fmt: skip
    assert not (tmp_path / "r.db").exists() and not (tmp_path / "e.db").exists()


def test_random_search_without_repeats_can_exhaust_a_small_space_asynchronously(tmp_path, moons):
    space = MLPSpace(units=(2, 4), activations=("tanh",), max_layers=1)  # 2 members
    with Study.create(
        tmp_path / "s.db", moons, steps=1, children_per_step=2, seed=0, space=space,
        strategy=RandomSearch(space, seed=0), evaluator=SerialTrainer(moons, TrainConfig(max_epochs=3)),
        asynchronous=True,
    ) as study:  # fmt: skip
        study.run(progress=False)
        assert sorted(str(t.architecture) for t in study.trials()) == ["2-tanh", "4-tanh"]
        with pytest.raises(ArchsearchError, match="all 2 architectures proposed already"):
            study.run(steps=2, progress=False)
