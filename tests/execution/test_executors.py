"""Executors: the same study wherever children run, and a dead worker costs a retry, not the search."""

import ast
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest

from archsearch import Study
from archsearch.errors import ArchsearchError
from archsearch.evaluation import TABULAR_BENCHMARKS, BatchedTrainer, LookupEvaluator, SerialTrainer, TrainConfig
from archsearch.execution import InlineExecutor, ProcessExecutor, RayExecutor, build_executor
from archsearch.space import MLPSpace

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


@pytest.mark.slow
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
@pytest.mark.slow
def test_ray_gives_the_inline_study_and_retries_then_fails_a_child_that_kills_its_worker(tmp_path, moons,
                                                                                          faulty_evaluator):  # fmt: skip
    """One local Ray instance, started by an executor as a search starts one where no cluster runs, and
    shared by three searches whose executors found it running, so leave it running (as with a user's own
    ray.init()); the executor that started it stops it. Starting Ray is most of this test's time."""
    import ray

    inline, _ = _search(tmp_path / "inline.db", moons, InlineExecutor())
    expected, victim = inline[:5], str(inline[1].architecture)  # the first step: what _victim's probe gives
    owner = RayExecutor(workers=2)
    owner.connect()
    try:
        on_ray, _ = _search(tmp_path / "ray.db", moons, RayExecutor(workers=2))
        assert ray.is_initialized()
        _same_trials(inline, on_ray)
        assert {(t.executor, t.workers) for t in on_ray} == {("ray", 2)}
        executor, trainer = RayExecutor(workers=2, retries=1), faulty_evaluator.KillingTrainer
        marker = str(tmp_path / "killed-once")
        trials, _ = _search(tmp_path / "once.db", moons, executor, trainer, 1, victim=victim, marker=marker)
        assert (tmp_path / "killed-once").exists()
        _same_trials(expected, trials)  # Ray re-ran the task, the child trained normally
        trials, best = _search(tmp_path / "always.db", moons, executor, trainer, 1, victim=victim)
    finally:
        owner.close()
    assert not ray.is_initialized()
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


def _results(evaluator, archs):
    return [(i, r.reward, r.val_curve, r.train_loss) for i, r in evaluator.run_job(range(len(archs)), archs, [7] * 9)]


def test_every_evaluator_reaches_its_workers_by_value(moons, monkeypatch):
    """Workers and Ray tasks receive the evaluator pickled: every built-in one round-trips, also
    after the batched trainer has started worker processes of its own (its PyTorch epoch) or
    trained with its compiled epoch, and trains alike."""
    rng = np.random.default_rng(0)
    archs = [MLPSpace().sample(rng) for _ in range(3)]
    compiled = BatchedTrainer(moons, TrainConfig(max_epochs=3, threads=2))
    compiled.evaluate_all(archs * 3, range(9))
    monkeypatch.setenv("ARCHSEARCH_KERNEL", "0")
    batched = BatchedTrainer(moons, TrainConfig(max_epochs=3, threads=2))
    batched.evaluate_all(archs * 3, range(9))  # its own pool is running
    assert batched._workers is not None
    for trainer in (SerialTrainer(moons, TrainConfig(max_epochs=3)), batched, compiled):
        copy = pickle.loads(pickle.dumps(trainer))
        assert type(copy) is type(trainer) and copy.to_config() == trainer.to_config()
        assert _results(copy, archs) == _results(trainer, archs)
    assert pickle.loads(pickle.dumps(batched))._workers is None
    batched.close()
    for name in TABULAR_BENCHMARKS:
        lookup = LookupEvaluator(name)
        codes = [lookup.benchmark.space.sample(rng) for _ in range(3)]
        copy = pickle.loads(pickle.dumps(lookup))
        assert copy.to_config() == lookup.to_config() and _results(copy, codes) == _results(lookup, codes)


def test_an_evaluator_that_cannot_be_sent_to_workers_is_one_clear_error(moons):
    trainer = SerialTrainer(moons, TrainConfig(max_epochs=3))
    trainer.on_epoch = lambda epoch: None  # a lambda does not pickle
    executor = ProcessExecutor(workers=2)
    with pytest.raises(ArchsearchError, match=r"^executor: trainer: the evaluator cannot be sent to worker processes"):
        list(executor.run(trainer, [MLPSpace().sample(np.random.default_rng(0))], [0]))
    assert executor._pool is None


def test_execution_and_evaluation_never_import_the_study():
    """Not even inside a function, as workers once did to rebuild their evaluator from its settings."""
    import archsearch

    root = Path(archsearch.__file__).parent
    upward = []
    for path in sorted([*root.glob("execution/*.py"), *root.glob("evaluation/*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            upward += [(path.name, name) for name in names if name.startswith("archsearch.study")]
    assert len(list(root.glob("execution/*.py"))) >= 5
    assert upward == []
