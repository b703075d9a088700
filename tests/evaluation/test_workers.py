"""The batched trainer's worker processes: same results, no lost work, nothing left behind."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from archsearch import Study
from archsearch.evaluation import BatchedTrainer, TrainConfig
from archsearch.evaluation._batched import plan_groups
from archsearch.space import MLPSpace


@pytest.fixture(autouse=True)
def _pytorch_epoch(monkeypatch):
    """Worker processes train the batched trainer's PyTorch epoch (minibatches, folds, or no compiler);
    its compiled epoch trains groups on threads instead (tests/evaluation/test_fused.py)."""
    monkeypatch.setenv("ARCHSEARCH_KERNEL", "0")


def _batch(n, seed=3):
    rng = np.random.default_rng(seed)
    return [MLPSpace().sample(rng) for _ in range(n)]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too (it only waits for its parent to collect it)
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


def _same(a, b):
    assert [r.train_loss for r in a] == [r.train_loss for r in b]
    assert [r.val_curve for r in a] == [r.val_curve for r in b]
    for x, y in zip(a, b):
        assert x.weights.keys() == y.weights.keys()
        assert all((x.weights[k] == y.weights[k]).all() for k in x.weights)


def test_a_worker_that_dies_loses_nothing(moons):
    """Killing both workers mid-batch: their groups are trained in this process, with the same numbers."""
    archs = _batch(10)
    assert len(plan_groups(archs, 2, 2, 900)) >= 3
    config = TrainConfig(max_epochs=20, patience=30)
    inline = BatchedTrainer(moons, TrainConfig(max_epochs=20, patience=30, threads=1)).evaluate_all(archs, range(10))
    trainer = BatchedTrainer(moons, TrainConfig(**{**config.to_config(), "threads": 2}))
    results = [None] * 10
    with pytest.warns(UserWarning, match="worker process"):
        stream = trainer.evaluate(archs, range(10))
        index, result = next(stream)
        results[index] = result
        for worker in list(trainer._workers._workers):
            worker.process.kill()
        for index, result in stream:
            assert results[index] is None
            results[index] = result
    _same(inline, results)
    assert trainer._workers.alive == 0
    # the next batch starts new workers
    again = trainer.evaluate_all(archs, range(10))
    assert trainer._workers.alive == 2
    _same(inline, again)
    trainer.close()


def test_workers_start_only_when_the_batch_pays_for_them(moons):
    trainer = BatchedTrainer(moons, TrainConfig(max_epochs=3))
    trainer.evaluate_all(_batch(6), range(6))
    assert trainer._workers is None  # 6 small children x 3 epochs: a few milliseconds


def test_workers_live_as_long_as_a_run(tmp_path, moons):
    evaluator = BatchedTrainer(moons, TrainConfig(max_epochs=4, threads=2))
    processes = []

    def during(info):
        processes.extend(w.process for w in evaluator._workers._workers)
        assert all(p.poll() is None for p in processes)

    with Study.create(tmp_path / "s.db", moons, steps=1, children_per_step=8, seed=0, evaluator=evaluator) as study:
        study.run(progress=False, callback=during)
        assert len(processes) == 2
        assert evaluator._workers is None
        assert all(p.poll() is not None for p in processes)


def test_workers_exit_when_the_study_process_is_killed(tmp_path):
    script = tmp_path / "search.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, numpy as np
            from archsearch.evaluation import BatchedTrainer, TrainConfig
            from archsearch.space import MLPSpace
            from archsearch.tasks import get_task
            trainer = BatchedTrainer(get_task("moons"), TrainConfig(max_epochs=500, patience=1000, threads=2))
            rng = np.random.default_rng(0)
            archs = [MLPSpace().sample(rng) for _ in range(12)]
            stream = trainer.evaluate(archs, range(12))
            print(*[w.process.pid for w in trainer._pool(2)._workers], flush=True)
            next(stream)
            """
        )
    )
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in process.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    time.sleep(0.5)  # mid-training
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 120  # generous: only a worker that never exits reaches it
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), "a worker outlived the killed study process"


def test_a_worker_that_died_while_idle_is_replaced_by_this_process(moons):
    archs = _batch(10)
    inline = BatchedTrainer(moons, TrainConfig(max_epochs=5, threads=1)).evaluate_all(archs, range(10))
    trainer = BatchedTrainer(moons, TrainConfig(max_epochs=5, threads=2))
    pool = trainer._pool(2)
    pool._workers[0].process.kill()
    pool._workers[0].process.wait()
    with pytest.warns(UserWarning, match="worker process was killed by SIGKILL"):
        results = trainer.evaluate_all(archs, range(10))
    _same(inline, results)
    trainer.close()


def test_workers_that_cannot_start_leave_the_work_to_this_process(moons, monkeypatch):
    from archsearch.evaluation import _workers

    monkeypatch.setattr(_workers, "_ENTRY", "import sys; sys.exit(3)")
    archs = _batch(10)
    inline = BatchedTrainer(moons, TrainConfig(max_epochs=5, threads=1)).evaluate_all(archs, range(10))
    trainer = BatchedTrainer(moons, TrainConfig(max_epochs=5, threads=2))
    with pytest.warns(UserWarning, match=r"could not start \(exit code 3\); training in this process only"):
        results = trainer.evaluate_all(archs, range(10))
    _same(inline, results)
    assert trainer._workers is None


@pytest.mark.slow
def test_a_job_sent_ahead_to_a_worker_that_dies_is_counted_only_once_started(moons, faulty_evaluator):
    """One worker, one child per job: each job after the first is sent while its predecessor is
    still finishing. A victim that always kills its worker costs exactly its own tries; the jobs
    queued behind it are re-sent untried to the worker that replaces it (the pool stays at
    strength after giving a job up), and every other child comes back once."""
    from archsearch.evaluation._workers import WorkerPool, job_for

    archs = _batch(6, seed=5)
    victim = str(archs[2])
    assert sum(str(a) == victim for a in archs) == 1
    trainer = faulty_evaluator.KillingTrainer(moons, TrainConfig(max_epochs=3, patience=10), victim=victim)
    pool = WorkerPool(trainer, 1)
    try:
        jobs = [job_for(archs, range(6), [i]) for i in range(6)]
        # one retry: the victim's worker is replaced once to retry it and once after it is given up,
        # and each replacement is a process start-up, most of this test's time
        results = dict(pool.run(jobs, retries=1))
    finally:
        pool.close()
    assert sorted(results) == list(range(6))
    assert results[2].status == "failed" and results[2].attempts == 2
    assert "killed by SIGKILL (2 attempts)" in results[2].error
    assert all(results[i].status == "ok" and results[i].attempts == 1 for i in (0, 1, 3, 4, 5))
