"""Executors: the same study wherever children run, and a dead worker costs a retry, not the search."""

import importlib.util

import pytest

from archsearch import Study
from archsearch.errors import ArchsearchError
from archsearch.evaluation import BatchedTrainer, SerialTrainer, TrainConfig
from archsearch.execution import InlineExecutor, ProcessExecutor, RayExecutor, build_executor

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install 'archsearch[ray]')")


def _search(path, task, executor, trainer=SerialTrainer, steps=2, per_step=5, seed=3, **faults):
    evaluator = trainer(task, TrainConfig(max_epochs=6, patience=20), **faults)
    with Study.create(
        path, task, steps=steps, children_per_step=per_step, seed=seed, evaluator=evaluator, executor=executor
    ) as study:
        study.run(progress=False)
        return study.trials(), study.best()


def _same_trials(a, b):
    def key(t):
        return (t.number, t.arch_hash, t.status, t.reward, t.val_curve, t.train_loss, t.seed, t.val_loss)

    assert [key(t) for t in a] == [key(t) for t in b]


@pytest.mark.parametrize("trainer", [SerialTrainer, BatchedTrainer])
def test_process_workers_give_the_inline_study(tmp_path, moons, trainer):
    inline, best_inline = _search(tmp_path / "inline.db", moons, InlineExecutor(), trainer)
    parallel, best_parallel = _search(tmp_path / "process.db", moons, ProcessExecutor(workers=2), trainer)
    _same_trials(inline, parallel)
    assert best_inline.number == best_parallel.number
    assert {(t.executor, t.workers, t.attempts) for t in inline} == {("inline", 1, 1)}
    assert {(t.executor, t.workers, t.attempts) for t in parallel} == {("process", 2, 1)}


@needs_ray
def test_ray_gives_the_inline_study(tmp_path, moons):
    inline, _ = _search(tmp_path / "inline.db", moons, InlineExecutor())
    executor = RayExecutor(workers=2)
    try:
        on_ray, _ = _search(tmp_path / "ray.db", moons, executor)
    finally:
        executor.close()
    _same_trials(inline, on_ray)
    assert {(t.executor, t.workers) for t in on_ray} == {("ray", 2)}


def _victim(tmp_path, moons):
    """The architecture of trial 1 of the small search that the tests below run."""
    trials, _ = _search(tmp_path / "probe.db", moons, InlineExecutor(), steps=1)
    return trials, str(trials[1].architecture)


def test_a_child_that_kills_its_worker_once_is_retried(tmp_path, moons, faulty_evaluator):
    expected, victim = _victim(tmp_path, moons)
    marker = str(tmp_path / "killed-once")
    trainer = faulty_evaluator.KillingTrainer
    trials, _ = _search(tmp_path / "s.db", moons, ProcessExecutor(workers=2), trainer, 1, victim=victim, marker=marker)
    assert (tmp_path / "killed-once").exists()  # the worker did die
    _same_trials(expected, trials)  # the retry trained it exactly as an undisturbed worker would have
    assert [t.attempts for t in trials if str(t.architecture) == victim] == [2]
    assert all(t.attempts == 1 for t in trials if str(t.architecture) != victim)


def test_a_child_that_always_kills_its_worker_fails_and_the_search_goes_on(tmp_path, moons, faulty_evaluator):
    _, victim = _victim(tmp_path, moons)
    executor, trainer = ProcessExecutor(workers=2, retries=1), faulty_evaluator.KillingTrainer
    trials, best = _search(tmp_path / "s.db", moons, executor, trainer, steps=2, victim=victim)
    assert len(trials) == 10 and best is not None
    failed = [t for t in trials if t.status == "failed"]
    assert failed and all(str(t.architecture) == victim for t in failed)
    assert all(t.reward == 0 and t.attempts == 2 for t in failed)
    assert "worker process was killed by SIGKILL (2 attempts)" in failed[0].error
    assert all(t.status == "ok" for t in trials if str(t.architecture) != victim)
    with Study.open(tmp_path / "s.db", readonly=True) as study:
        assert study.completed_steps() == 2


@needs_ray
def test_on_ray_a_child_that_kills_its_worker_is_retried_by_ray_then_failed(tmp_path, moons, faulty_evaluator):
    expected, victim = _victim(tmp_path, moons)
    executor, trainer = RayExecutor(workers=2, retries=1), faulty_evaluator.KillingTrainer
    try:
        marker = str(tmp_path / "killed-once")
        trials, _ = _search(tmp_path / "once.db", moons, executor, trainer, 1, victim=victim, marker=marker)
        assert (tmp_path / "killed-once").exists()
        _same_trials(expected, trials)  # Ray re-ran the task, the child trained normally
        trials, best = _search(tmp_path / "always.db", moons, executor, trainer, 1, victim=victim)
    finally:
        executor.close()
    failed = [t for t in trials if t.status == "failed"]
    assert [str(t.architecture) for t in failed] == [victim] and best is not None
    assert failed[0].error.startswith("ray: WorkerCrashedError") and failed[0].attempts == 2


def test_resuming_elsewhere_records_where_each_trial_ran(tmp_path, moons):
    path = tmp_path / "s.db"
    evaluator = SerialTrainer(moons, TrainConfig(max_epochs=4))
    with Study.create(path, moons, steps=1, children_per_step=3, evaluator=evaluator) as study:
        study.run(progress=False)
    with Study.open(path, executor=ProcessExecutor(workers=2)) as study:
        study.run(steps=2, progress=False)
        assert [(t.executor, t.workers) for t in study.trials()] == [("inline", 1)] * 3 + [("process", 2)] * 3
        assert study.config["executor"]["name"] == "inline"  # the stored default is unchanged


def test_executor_settings_are_checked():
    with pytest.raises(ArchsearchError, match="executor.workers: the inline executor is one process"):
        InlineExecutor(workers=2)
    with pytest.raises(ArchsearchError, match="executor.workers: must be a positive integer, got 0"):
        ProcessExecutor(workers=0)
    with pytest.raises(ArchsearchError, match="executor.retries: must be a non-negative integer"):
        ProcessExecutor(retries=-1)
    with pytest.raises(ArchsearchError, match="executor: unknown executor 'dask'"):
        build_executor({"name": "dask"})
    assert build_executor(None).name == "inline"
    assert build_executor(ProcessExecutor(workers=3, retries=0).to_config()).to_config() == {
        "name": "process",
        "workers": 3,
        "retries": 0,
    }


def test_without_ray_the_ray_executor_says_how_to_get_it(moons, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    executor = RayExecutor()
    with pytest.raises(ArchsearchError, match=r"pip install 'archsearch\[ray\]'"):
        list(executor.run(SerialTrainer(moons), [], []))
