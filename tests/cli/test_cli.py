"""End-to-end tests of the command line."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ..conftest import benchmark_script, trial_count
from .conftest import COMMAND, FAST, one_line_error, uninterrupted


def test_search_then_best_then_trials(tmp_path, run):
    study = tmp_path / "moons.db"
    proc = run(
        "search",
        "--task",
        "moons",
        "--steps",
        "2",
        "--children-per-step",
        "3",
        "--seed",
        "0",
        "--study",
        study,
        *FAST,
        check=True,
    )
    assert f"study: {study}" in proc.stdout and "best: " in proc.stdout
    best = json.loads(run("best", study, "--json", check=True).stdout)
    # the console script, in its own process, prints what archsearch.cli.main prints here
    assert run("best", study, "--json", process=True).stdout == json.dumps(best, indent=2) + "\n"
    assert {"architecture", "val_score", "test_score", "params"} <= set(best)
    assert best["trials"] == 6 and best["test_score"] > 0.8  # even 4 epochs separate the half-moons
    listed = json.loads(run("trials", study, "--json", check=True).stdout)
    assert len(listed) == 6 and listed[0]["number"] == 0
    top = json.loads(run("trials", study, "--top", "2", "--json", check=True).stdout)
    assert [t["reward"] for t in top] == sorted((t["reward"] for t in listed), reverse=True)[:2]
    table = run("trials", study, "--top", "3", check=True).stdout
    assert "architecture" in table and best["architecture"] in table


def test_resume_of_a_finished_study_just_reports(tmp_path, run):
    study = tmp_path / "s.db"
    run("search", "--steps", "1", "--children-per-step", "2", "--study", study, *FAST, check=True)
    proc = run("resume", study, "--quiet", check=True)
    assert "best: " in proc.stdout
    assert len(json.loads(run("trials", study, "--json", check=True).stdout)) == 2


def test_default_study_path(tmp_path, run):
    proc = run("search", "--steps", "1", "--children-per-step", "2", "--seed", "4", *FAST, cwd=tmp_path, check=True)
    assert (tmp_path / "runs" / "moons-reinforce-s4.db").exists()
    assert "runs/moons-reinforce-s4.db" in proc.stdout


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--task", "cifar"], ["--task", "cifar"]),
        (["--strategy", "magic"], ["--strategy", "magic"]),
        (["--steps", "0"], ["--steps", "positive"]),
        (["--steps", "-3"], ["--steps", "-3"]),
        (["--steps", "many"], ["--steps", "many"]),
        (["--children-per-step", "-1"], ["--children-per-step"]),
        (["--seed", "-1"], ["--seed"]),
        (["--max-epochs", "-2"], ["--max-epochs"]),
        (["--patience", "0"], ["--patience"]),
        (["--lr", "-0.1"], ["--lr"]),
        (["--entropy-weight", "-1"], ["--entropy-weight"]),
        (["--trainer", "gpu-magic"], ["--trainer"]),
        (["--advantage", "zscore"], ["--advantage", "zscore"]),
        (["--benchmark", "nas-bench-101"], ["--benchmark", "nas-bench-101"]),
        (["--benchmark", "nas-bench-macro", "--task", "moons"], ["--task", "--benchmark", "not both"]),
        (["--noisy"], ["--noisy", "--benchmark"]),
        (["--executor", "dask"], ["--executor", "dask"]),
        (["--curriculum", "2"], ["--curriculum", "START,EVERY"]),
        (["--asynchronous"], ["--asynchronous", "reinforce", "evolution or random"]),
        (["--asynchronous", "--strategy", "random", "--reuse-evaluations"], ["--asynchronous", "--reuse-evaluations"]),
        (["--curriculum", "2,3", "--strategy", "random"], ["--curriculum", "random"]),
        (["--curriculum", "7,3"], ["curriculum", "start must be within", "1..5"]),
        (["--executor", "inline", "--workers", "2"], ["--workers", "inline", "--executor process"]),
        (["--workers", "0"], ["--workers"]),
        (["--retries", "-1"], ["--retries"]),
        (["--address", "auto"], ["--address", "--executor ray"]),
        (["--executor", "process", "--address", "auto"], ["--address", "'process'"]),
    ],
)
def test_bad_search_arguments(tmp_path, run, args, needles):
    proc = run("search", "--study", tmp_path / "s.db", *args, cwd=tmp_path)
    one_line_error(proc, *needles)
    assert list(tmp_path.iterdir()) == []


def test_study_in_a_missing_directory(tmp_path, run):
    proc = run("search", "--study", tmp_path / "nope" / "s.db", *FAST)
    one_line_error(proc, "nope", "does not exist")
    assert list(tmp_path.iterdir()) == []


def test_study_under_a_file(tmp_path, run):
    (tmp_path / "file").write_text("x")
    proc = run("search", "--study", tmp_path / "file" / "s.db", *FAST)
    one_line_error(proc, "not a directory")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_unwritable_study_location(run):
    proc = run("search", "--study", "/proc/archsearch-test.db", *FAST)
    one_line_error(proc, "/proc/archsearch-test.db")
    assert not os.path.exists("/proc/archsearch-test.db")


def test_unavailable_device(tmp_path, run):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run("search", "--study", tmp_path / "s.db", "--device", "cuda", *FAST)
    one_line_error(proc, "trainer.device", "cuda")
    assert list(tmp_path.iterdir()) == []


def test_search_refuses_to_overwrite_a_study(tmp_path, run):
    study = tmp_path / "s.db"
    run("search", "--steps", "1", "--children-per-step", "2", "--study", study, *FAST, check=True)
    before = study.read_bytes()
    proc = run("search", "--steps", "1", "--study", study, *FAST)
    one_line_error(proc, "already exists", "resume")
    assert study.read_bytes() == before


def test_overwrite_replaces_a_study_and_its_saved_children(tmp_path, run):
    study = tmp_path / "s.db"
    run("search", "--steps", "1", "--children-per-step", "2", "--save-children", "--study", study, *FAST, check=True)
    assert (tmp_path / "s.db.children").is_dir()
    run("search", "--steps", "1", "--children-per-step", "3", "--seed", "7", "--study", study, "--overwrite", *FAST,
        check=True)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.db"]  # no temporary file, no old children
    with sqlite3.connect(study) as db:
        config = json.loads(db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0])
        assert db.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 3
    assert config["seed"] == 7
    again = run("trials", study, "--json", check=True)
    assert len(json.loads(again.stdout)) == 3


def test_overwrite_refuses_anything_but_a_study_and_a_bad_search_changes_nothing(tmp_path, run):
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,0\n2,1\n")
    proc = run("search", "--steps", "1", "--study", data, "--overwrite", *FAST)
    one_line_error(proc, "data.csv", "replaces only a study")
    assert data.read_text() == "a,b\n1,0\n2,1\n"
    study = tmp_path / "s.db"
    run("search", "--steps", "1", "--children-per-step", "2", "--study", study, *FAST, check=True)
    before = study.read_bytes()
    proc = run("search", "--steps", "1", "--study", study, "--overwrite", "--max-epochs", "0", *FAST[2:])
    one_line_error(proc, "--max-epochs")
    assert study.read_bytes() == before
    (tmp_path / "link.db").symlink_to(study)  # replacing the link would leave the study it names
    proc = run("search", "--steps", "1", "--study", tmp_path / "link.db", "--overwrite", *FAST)
    one_line_error(proc, "link.db", "replaces only a study")
    assert study.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "link.db", "s.db"]


def test_overwrite_refuses_a_study_that_another_process_runs(tmp_path, run):
    import fcntl

    study = tmp_path / "s.db"
    run("search", "--steps", "1", "--children-per-step", "2", "--study", study, *FAST, check=True)
    before = study.read_bytes()
    with open(study, "rb") as held:  # what a running search holds
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = run("search", "--steps", "1", "--study", study, "--overwrite", *FAST)
    one_line_error(proc, "another process is running")
    assert study.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".new")]  # no half-written replacement


@pytest.mark.parametrize("command", ["resume", "trials", "best"])
def test_missing_study_file(tmp_path, run, command):
    proc = run(command, tmp_path / "missing.db")
    one_line_error(proc, "missing.db", "no such study")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["resume", "trials", "best"])
def test_a_file_that_is_not_a_study(tmp_path, run, command):
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    before = path.read_bytes()
    proc = run(command, path)
    one_line_error(proc, "notes.db", "not an archsearch study")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_missing_command_and_unknown_option(run):
    one_line_error(run(), "COMMAND")
    one_line_error(run("best", "x.db", "--colour"), "--colour")


def _rows(path):
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT number, step, slot, arch_hash, status, reward, seed, val_curve, train_loss FROM trials ORDER BY number"
        ).fetchall()


@pytest.mark.slow
def test_sigkill_then_resume_completes_and_loses_nothing(tmp_path, run):
    args = ["--steps", "30", "--children-per-step", "5", "--seed", "7", "--max-epochs", "8", "--quiet"]
    killed = tmp_path / "killed.db"
    proc = subprocess.Popen(
        [*COMMAND, "search", *args, "--study", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    while trial_count(killed) < 40 and proc.poll() is None:  # a hang is ended by pytest-timeout
        time.sleep(0.01)
    assert proc.poll() is None, "the search finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _rows(killed)
    assert 40 <= len(before) < 150

    run("resume", killed, "--quiet", check=True)
    after = _rows(killed)
    assert len(after) == 150
    # Every trial committed before the kill is still there, unchanged. A step's children are
    # committed as they finish (early stoppers first), so the killed file may have holes.
    by_number = {row[0]: row for row in after}
    assert [by_number[row[0]] for row in before] == before

    straight = tmp_path / "straight.db"
    run("search", *args, "--study", straight, check=True)
    assert _rows(straight) == after  # and the resumed study is the uninterrupted one
    assert (
        json.loads(run("best", killed, "--json").stdout)["architecture"]
        == json.loads(run("best", straight, "--json").stdout)["architecture"]
    )


@pytest.mark.slow
def test_process_workers_give_the_inline_study_and_a_resume_can_change_them(tmp_path, run):
    args = ["--steps", "3", "--children-per-step", "6", "--seed", "2", "--trainer", "serial", *FAST]
    run("search", *args, "--executor", "inline", "--study", tmp_path / "inline.db", check=True)
    parallel = tmp_path / "process.db"
    run("search", *args, "--workers", "2", "--steps", "2", "--study", parallel, check=True)  # process by default
    run("resume", parallel, "--steps", "3", "--executor", "inline", "--quiet", check=True)
    assert _rows(parallel) == _rows(tmp_path / "inline.db")
    with sqlite3.connect(parallel) as db:
        ran = db.execute("SELECT executor, workers, attempts FROM trials ORDER BY number").fetchall()
    assert ran == [("process", 2, 1)] * 12 + [("inline", 1, 1)] * 6


def test_serial_trainer_and_reused_evaluations(tmp_path, run):
    serial = tmp_path / "serial.db"
    run(
        "search",
        "--steps",
        "2",
        "--children-per-step",
        "3",
        "--trainer",
        "serial",
        "--study",
        serial,
        *FAST,
        check=True,
    )
    with sqlite3.connect(serial) as db:
        config = json.loads(db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0])
    assert config["trainer"]["name"] == "serial" and config["reuse_evaluations"] is False

    reused = tmp_path / "reused.db"
    run(
        "search",
        "--steps",
        "40",
        "--children-per-step",
        "8",
        "--reuse-evaluations",
        "--controller-lr",
        "0.1",
        "--study",
        reused,
        *FAST,
        check=True,
    )
    trials = json.loads(run("trials", reused, "--json", check=True).stdout)
    hits = [t for t in trials if t["cached_from"] is not None]
    assert hits, "a controller with a high learning rate repeats itself within 40 steps"
    by_number = {t["number"]: t for t in trials}
    for hit in hits:
        source = by_number[hit["cached_from"]]
        assert source["hash"] == hit["hash"] and source["reward"] == hit["reward"] and source["cached_from"] is None


def test_best_reports_whether_the_controller_learned(tmp_path, run):
    study = tmp_path / "s.db"
    run("search", "--steps", "3", "--children-per-step", "2", "--study", study, *FAST, check=True)
    text = run("best", study, check=True).stdout
    assert "mean reward: first 1 steps" in text and "last 1 steps" in text  # halves of 3 steps
    summary = json.loads(run("best", study, "--json", check=True).stdout)
    trials = json.loads(run("trials", study, "--json", check=True).stdout)
    first, last = ([t["reward"] for t in trials if t["step"] == step] for step in (0, 2))
    assert summary["mean_reward_first_steps"] == pytest.approx(sum(first) / len(first))
    assert summary["mean_reward_last_steps"] == pytest.approx(sum(last) / len(last))


def test_search_a_tabular_benchmark(tmp_path, run):
    study = tmp_path / "macro.db"
    args = ["--benchmark", "nas-bench-macro", "--strategy", "evolution", "--steps", "8", "--children-per-step", "5"]
    proc = run("search", *args, "--study", study, "--quiet", check=True)
    assert "nas-bench-macro mean_acc" in proc.stdout
    summary = json.loads(run("best", study, "--json", check=True).stdout)
    assert summary["trials"] == 40 and len(summary["architecture"]) == 8
    assert summary["benchmark"]["best_value"] == pytest.approx(93.1267, abs=1e-4)
    assert summary["benchmark"]["value"] == pytest.approx(100 * summary["reward"])
    # resumable like any study; --noisy rewards are single recorded runs
    run("resume", study, "--steps", "10", "--quiet", check=True)
    noisy = run("search", *args, "--noisy", "--study", tmp_path / "noisy.db", "--quiet", check=True)
    assert "mean_acc" in noisy.stdout


def test_compare_writes_table_json_and_plot(tmp_path, run):
    out = tmp_path / "cmp"
    proc = run(
        "compare", "--benchmark", "nas-bench-macro", "--strategies", "random,evolution", "--seeds", "3",
        "--budget", "60", "--out", out, "--quiet", check=True,
    )  # fmt: skip
    assert "| evolution |" in proc.stdout and "| random |" in proc.stdout
    assert "median of 1922 queries" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert set(results["strategies"]) == {"random", "evolution"}
    for name, entry in results["strategies"].items():
        assert list(entry["mean_best_at"]) == ["50", "60"]
        hits = [one["queries_to_best"] for one in results["runs"] if one["strategy"] == name]
        assert len(hits) == entry["seeds"] == 3 and entry["seconds"] > 0
        assert entry["success_rate"] == pytest.approx(sum(hit is not None for hit in hits) / 3)
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--strategies", "random,annealing", "--benchmark", "nas-bench-macro"], ["--strategies", "annealing"]),
        (["--strategies", "random,random", "--benchmark", "nas-bench-macro"], ["--strategies", "twice"]),
        (["--strategies", "random"], ["--benchmark", "--task", "required"]),
        (["--benchmark", "nas-bench-macro", "--task", "moons"], ["--task", "not allowed"]),
        (["--benchmark", "nas-bench-macro", "--budget", "0"], ["--budget"]),
    ],
)
def test_bad_compare_arguments(tmp_path, run, args, needles):
    proc = run("compare", "--out", tmp_path / "cmp", *args, cwd=tmp_path)
    one_line_error(proc, *needles)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("task", ["digits", "ptb"])
def test_a_refused_sample_leaves_no_default_folder(tmp_path, run, task):
    proc = run("sample", "--task", task, "--n", "2", "--quiet", cwd=tmp_path)
    one_line_error(proc, "evaluator batched")
    assert list(tmp_path.iterdir()) == []  # not even the runs/ folder it would have written in


def test_sample_then_reuse(tmp_path, run):
    study = tmp_path / "sample.db"
    proc = run("sample", "--task", "moons", "--n", "24", "--study", study, "--quiet", check=True)
    assert "24 architectures (24 trained now" in proc.stdout and "mode(s) at" in proc.stdout
    assert (tmp_path / "sample.png").read_bytes()[:4] == b"\x89PNG"
    numbers = json.loads((tmp_path / "sample.json").read_text())
    assert numbers["n"] == 24 and len(numbers["peaks"]) >= 1
    again = run("sample", "--task", "moons", "--n", "24", "--study", study, "--quiet", check=True)
    assert "(0 trained now" in again.stdout


def _wine_csv(path):
    import csv

    from sklearn.datasets import load_wine

    data = load_wine()
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*data.feature_names, "cultivar"])
        writer.writerows([*x, "abc"[y]] for x, y in zip(data.data, data.target))
    return path


def test_search_your_own_csv(tmp_path, run):
    data = _wine_csv(tmp_path / "wine.csv")
    proc = run("search", "--data", data, "--target", "cultivar", "--steps", "3", "--children-per-step", "4", *FAST,
               cwd=tmp_path, check=True)  # fmt: skip
    assert "runs/wine-reinforce-s0.db" in proc.stdout and "test_accuracy" in proc.stdout
    summary = json.loads(run("best", tmp_path / "runs" / "wine-reinforce-s0.db", "--json", check=True).stdout)
    assert summary["trials"] == 12 and summary["test_score"] > 0.5  # three cultivars: chance is a third
    # the study remembers the file: a changed file is refused on resume, one line, exit 2
    data.write_text(data.read_text().replace(",a\n", ",b\n", 1))
    proc = run("resume", tmp_path / "runs" / "wine-reinforce-s0.db", "--steps", "4", "--quiet")
    one_line_error(proc, "wine.csv", "has changed")


def test_split_seed_fixes_the_split_whatever_the_study_seed(tmp_path, run):
    from archsearch import Study

    _wine_csv(tmp_path / "wine.csv")
    tests = []
    for seed, split_seed in [(0, 5), (1, 5), (5, None), (1, None)]:
        study = tmp_path / f"s{seed}-{split_seed}.db"
        extra = [] if split_seed is None else ["--split-seed", str(split_seed)]
        run("search", "--data", "wine.csv", "--target", "cultivar", "--seed", seed, *extra, "--steps", "1",
            "--children-per-step", "2", "--study", study, *FAST, cwd=tmp_path, check=True)  # fmt: skip
        with Study.open(study, readonly=True) as opened:
            assert opened.config["task"]["split_seed"] == (seed if split_seed is None else split_seed)
            tests.append(opened.task.x_test)
    assert torch.equal(tests[0], tests[1]) and torch.equal(tests[0], tests[2])
    assert not torch.equal(tests[0], tests[3])


def test_search_a_regression_csv_then_export(tmp_path, run):
    """Fractional target values: inferred as regression; R^2 is reported and model.py predicts values."""
    import csv

    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=200, noise=0.5, random_state=0)
    with open(tmp_path / "prices.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*(f"f{i}" for i in range(10)), "price"])
        writer.writerows([*row, value] for row, value in zip(x, y))
    proc = run("search", "--data", "prices.csv", "--target", "price", "--steps", "2", "--children-per-step", "4",
               "--refit", *FAST, cwd=tmp_path, check=True)  # fmt: skip
    assert "val_r2" in proc.stdout and "test_r2" in proc.stdout and "accuracy" not in proc.stdout
    assert "refit: retrained on 180 training + validation rows for" in proc.stdout
    study = tmp_path / "runs" / "prices-reinforce-s0.db"
    summary = json.loads(run("best", study, "--json", check=True).stdout)
    assert summary["metric"] == "r2" and summary["val_score"] > 0.1 and summary["test_score"] > 0.1  # beats the mean
    assert "val_r2" in run("trials", study, "--top", "3", check=True).stdout
    run("export", study, "--out", tmp_path / "best", "--no-onnx", check=True)
    predicted = subprocess.run(
        [sys.executable, "-c", f"import model; print(model.predict({x[:3].tolist()}))"],
        cwd=tmp_path / "best", capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert len(json.loads(predicted)) == 3 and all(0 < v < 40 for v in json.loads(predicted))


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--data", "nope.csv", "--target", "y"], ["nope.csv", "no such file"]),
        (["--data", "wine.csv", "--target", "colour"], ["--target", "no column 'colour'"]),
        (["--data", "wine.csv"], ["--target", "wine.csv"]),
        (["--data", "wine.csv", "--target", "cultivar", "--task", "moons"], ["--task", "--data", "not both"]),
        (["--target", "cultivar"], ["--target", "no --data"]),
        (["--data", "wine.csv", "--target", "cultivar", "--problem", "regression"], ["cultivar", "not numeric"]),
        (["--data", "wine.csv", "--target", "cultivar", "--problem", "ranking"], ["--problem", "ranking"]),
        (["--problem", "regression"], ["--problem", "no --data"]),
        (["--split-seed", "3"], ["--split-seed", "no --data"]),
        (["--data", "wine.csv", "--target", "cultivar", "--split", "0.5,0.2"], ["--split"]),
        (["--data", "wine.csv", "--target", "cultivar", "--split", "a,b,c"], ["--split", "a,b,c"]),
    ],
)
def test_bad_data_arguments(tmp_path, run, args, needles):
    _wine_csv(tmp_path / "wine.csv")
    proc = run("search", "--study", tmp_path / "s.db", *args, cwd=tmp_path)
    one_line_error(proc, *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wine.csv"]


def test_export_the_best_network(tmp_path, run):
    study = tmp_path / "s.db"
    run("search", "--steps", "2", "--children-per-step", "3", "--study", study, *FAST, check=True)
    proc = run("export", study, "--no-onnx", check=True)
    out = tmp_path / "s"
    assert f"to {out}/" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["architecture.json", "model.py", "weights.safetensors"]
    missing = run("export", tmp_path / "nope.db")
    one_line_error(missing, "nope.db")
    (tmp_path / "a-file").write_text("x")
    one_line_error(run("export", study, "--out", tmp_path / "a-file"), "--out", "is a file")


def test_save_children_from_the_command_line(tmp_path, run):
    study = tmp_path / "s.db"
    run("search", "--steps", "2", "--children-per-step", "2", "--save-children", "--study", study, *FAST, check=True)
    assert sorted(p.name for p in (tmp_path / "s.db.children").iterdir()) == [f"{n}.safetensors" for n in range(4)]


@pytest.mark.slow
def test_cnn_search_on_digits_end_to_end(tmp_path, run):
    """Image tasks default to the CNN space and the serial trainer with minibatches."""
    from archsearch import Study

    proc = run("search", "--task", "digits", "--steps", "1", "--children-per-step", "3", "--max-epochs", "2",
               "--quiet", cwd=tmp_path, check=True)  # fmt: skip
    study = tmp_path / "runs" / "digits-reinforce-s0.db"
    assert "test_accuracy" in proc.stdout
    with Study.open(study, readonly=True) as opened:
        assert opened.config["space"]["kind"] == "cnn" and opened.config["space"]["skips"] is True
        assert opened.config["space"]["batch_norm"] is True
        trainer = opened.config["trainer"]
        assert trainer["name"] == "serial" and trainer["batch_size"] == 64 and trainer["max_epochs"] == 2
        trials = opened.trials()
        assert len(trials) == 3 and all(t.status == "ok" for t in trials)
        assert all(t.architecture.kind == "cnn" and "-bn" in str(t.architecture) for t in trials)
        assert opened.best().val_score > 0.3  # ten classes: chance is 0.1
    summary = json.loads(run("best", study, "--json", check=True).stdout)
    assert 0.2 < summary["test_score"] <= 1
    run("search", "--task", "digits", "--steps", "1", "--children-per-step", "2", "--max-epochs", "1",
        "--no-batch-norm", "--study", "plain.db", "--quiet", cwd=tmp_path, check=True)  # fmt: skip
    with Study.open(tmp_path / "plain.db", readonly=True) as opened:
        assert opened.config["space"]["batch_norm"] is False
        assert all("bn" not in str(t.architecture) for t in opened.trials())


def test_baseline_command(tmp_path, run):
    proc = run("baseline", "--task", "digits", "--max-epochs", "2", "--json", check=True)
    summary = json.loads(proc.stdout)
    assert summary["params"] == 86282 and summary["epochs"] == 2 and summary["test_score"] > 0.5
    assert summary["architecture"] == "32c5-max/64c5-max-d0.25/dense128-d0.5"


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--task", "moons", "--space", "cnn"], ["--space cnn", "feature vectors, not images"]),
        (["--task", "moons", "--space", "cnn"], ["--space cnn", "feature vectors"]),
        (["--task", "digits", "--trainer", "batched"], ["--trainer batched", "MLP children only"]),
        (["--task", "mnist"], ["--task mnist", "--data-dir"]),
        (["--task", "moons", "--data-dir", "."], ["--data-dir", "mnist"]),
        (["--task", "moons", "--no-skips"], ["--no-skips", "cnn"]),
        (["--task", "moons", "--no-batch-norm"], ["--no-batch-norm", "cnn"]),
        (["--benchmark", "nas-bench-macro", "--no-batch-norm"], ["--no-batch-norm", "benchmark"]),
        (["--benchmark", "nas-bench-macro", "--space", "cnn"], ["--space", "benchmark"]),
        (["--task", "mnist", "--data-dir", "nowhere"], ["nowhere"]),
        (["--task", "moons", "--time-limit", "5"], ["time_limit", "serial"]),
    ],
)
def test_bad_image_arguments(tmp_path, run, args, needles):
    proc = run("search", "--study", tmp_path / "s.db", *args, cwd=tmp_path)
    one_line_error(proc, *needles)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_kill_anywhere_script_finds_the_uninterrupted_study(tmp_path):
    """benchmarks/kill_anywhere.py, on a small search with a few kills (the benchmark runs 20)."""
    script = benchmark_script("kill_anywhere")
    search = [
        *("--task", "moons", "--trainer", "serial", "--steps", "4", "--children-per-step", "4"),
        *("--max-epochs", "20", "--seed", "4", "--executor", "inline"),
    ]  # the benchmark itself kills a search on worker processes
    # killed once 3 and 8 trials are in (not at timed instants, which a busy machine can outrun): the search
    # in the middle of its first step, then its resume once a step's children are all in; each launch costs
    # a process start-up, most of this test's time
    reference = uninterrupted(search, tmp_path / "straight.db")
    result = script.run(seed=1, search=search, workdir=tmp_path, at_trials=[3, 8], reference=reference)
    assert result["trials"] == 16 and result["kills"] == 2
    at_kill = [event["trials_at_kill"] for event in result["events"]]
    assert len(at_kill) == 2 and all(at >= due for at, due in zip(at_kill, [3, 8])) and at_kill[-1] < 16
    assert result["same_trials"] and result["same_steps"] and result["same"], result


def test_archsearch_warnings_are_one_line_and_others_keep_their_form(capsys, monkeypatch):
    import warnings

    from archsearch.cli import _one_line_warnings

    others = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, *rest: others.append(str(message)))
    _one_line_warnings("resume")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn_explicit("trainer: a worker process died", UserWarning, "/x/archsearch/evaluation/_b.py", 9)
        warnings.warn_explicit("something else", UserWarning, "/x/otherlib/module.py", 3)
    assert capsys.readouterr().err.splitlines() == ["archsearch resume: warning: trainer: a worker process died"]
    assert others == ["something else"]  # left to Python's (here: the test's) handler


def test_resume_flags_change_only_what_they_name():
    import argparse

    from archsearch.cli import _executor

    def given(**flags):
        return argparse.Namespace(**{"executor": None, "workers": None, "retries": None, "address": None, **flags})

    process = {"name": "process", "workers": 4, "retries": 2}
    ray = {"name": "ray", "workers": None, "retries": 2, "address": "auto"}
    assert _executor(given(), process) is None  # nothing named: the stored executor runs
    assert _executor(given(retries=5), process).to_config() == {**process, "retries": 5}
    assert _executor(given(workers=8), ray).to_config() == {**ray, "workers": 8}
    assert _executor(given(address="head:6379"), ray).to_config() == {**ray, "address": "head:6379"}
    assert _executor(given(executor="inline"), process).to_config() == {"name": "inline", "workers": 1, "retries": 2}
    assert _executor(given(workers=2), {"name": "inline", "workers": 1, "retries": 2}).to_config()["name"] == "process"


@pytest.mark.slow
def test_image_search_on_workers_shares_the_cores_and_stores_the_threads(tmp_path, run):
    from archsearch.evaluation._workers import available_cores

    study = tmp_path / "d.db"
    run("search", "--task", "digits", "--workers", "2", "--steps", "1", "--children-per-step", "2",
        "--max-epochs", "1", "--study", study, "--quiet", check=True)  # fmt: skip
    with sqlite3.connect(study) as db:
        config = json.loads(db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0])
    assert config["trainer"]["threads"] == max(1, available_cores() // 2)
    assert config["executor"] == {"name": "process", "workers": 2, "retries": 2}


@pytest.mark.slow
def test_an_unreachable_ray_cluster_is_one_line_and_writes_nothing(tmp_path, run):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'archsearch[ray]')")
    env_address = os.environ.get("RAY_ADDRESS")
    if env_address:
        pytest.skip(f"RAY_ADDRESS is set ({env_address}): a cluster may be reachable")
    proc = run("search", "--executor", "ray", "--address", "auto", "--study", tmp_path / "s.db", *FAST, cwd=tmp_path)
    one_line_error(proc, "executor: cannot connect to Ray at auto")
    assert list(tmp_path.iterdir()) == []


def test_pareto_lists_the_trials_that_no_other_beats(tmp_path, run):
    study = tmp_path / "s.db"
    run("search", "--steps", "3", "--children-per-step", "5", "--study", study, *FAST, check=True)
    trials = [t for t in json.loads(run("trials", study, "--json", check=True).stdout) if t["status"] == "ok"]
    first = {}
    for t in trials:  # an architecture trained again counts once
        first.setdefault(t["hash"], t)
    points = {t["number"]: (t["val_score"], t["params"]) for t in first.values()}
    expected = sorted(n for n, (acc, size) in points.items()
                      if not any(a >= acc and p <= size and (a, p) != (acc, size) for a, p in points.values()))  # fmt: skip
    result = json.loads(run("pareto", study, "--json", check=True).stdout)
    assert result["objectives"] == ["val_score:max", "params:min"] and result["trials"] == len(points)
    assert sorted(t["number"] for t in result["front"]) == expected
    accuracies = [t["objectives"]["val_score:max"] for t in result["front"]]
    assert accuracies == sorted(accuracies, reverse=True)  # best first, so fewer parameters down the list
    text = run("pareto", study, check=True).stdout
    assert text.startswith(f"{len(expected)} of {len(points)} trials are not dominated")
    both = json.loads(run("pareto", study, "--objectives", "params:min,epochs:max", "--json", check=True).stdout)
    assert both["objectives"] == ["params:min", "epochs:max"] and both["front"]


@pytest.mark.parametrize(
    ("objectives", "needle"),
    [("val_score:max,latency:min", "unknown metric 'latency'"), ("val_score:up,params:min", "min or max"),
     ("val_score:max", "at least two")],
)  # fmt: skip
def test_pareto_refuses_bad_objectives_in_one_line(tmp_path, run, objectives, needle):
    proc = run("pareto", tmp_path / "missing.db", "--objectives", objectives)
    one_line_error(proc, "--objectives", needle)
    assert list(tmp_path.iterdir()) == []
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    one_line_error(run("pareto", data), "data.csv", "not an archsearch study")


def test_search_with_an_ensemble_then_best_report_and_export(tmp_path, run):
    proc = run("search", "--task", "moons", "--steps", "2", "--children-per-step", "4", "--ensemble", "3", *FAST,
               "--study", "e.db", cwd=tmp_path, check=True)  # fmt: skip
    summary = json.loads(run("best", "e.db", "--json", cwd=tmp_path, check=True).stdout)
    ensemble = summary["ensemble"]
    assert ensemble["size"] == 3 and len(ensemble["members"]) == 3 and ensemble["members"][0] == summary["trial"]
    members = ", ".join(map(str, ensemble["members"]))
    score = f"{ensemble['test_score']:.4f}"
    assert f"ensemble: the 3 best architectures (trials {members}) averaged  test_accuracy {score}" in proc.stdout
    run("report", "e.db", "--out", "r.html", cwd=tmp_path, check=True)
    assert f"the ensemble of 3 best architectures (trials {members})" in (tmp_path / "r.html").read_text()
    exported = run("export", "e.db", "--out", "out", "--no-onnx", cwd=tmp_path, check=True).stdout
    assert f"exported the ensemble of 3 networks (trials {members}) to out/" in exported
    assert "member-3/model.py" in exported and (tmp_path / "out" / "ensemble.json").exists()
    third = ensemble["members"][2]
    exported = run("export", "e.db", "--trial", third, "--out", "t", "--no-onnx", cwd=tmp_path, check=True).stdout
    assert f"(trial {third}) to t/" in exported and (tmp_path / "t" / "model.py").exists()
    other = next(n for n in range(8) if n not in ensemble["members"])
    one_line_error(run("export", "e.db", "--trial", other, "--out", "o", cwd=tmp_path),
                   f"no weights of trial {other}", "--save-children")  # fmt: skip
    assert not (tmp_path / "o").exists()
    for value, why in (("99999999999999999999", "must be at most 1000000000000 (a trial number)"),
                       ("-1", "non-negative integer")):  # fmt: skip
        one_line_error(run("export", "e.db", "--trial", value, "--out", "o", cwd=tmp_path), "--trial", why)
    for value, why in (("0", "must be a positive integer, got 0"), ("101", "must be at most 100"),
                       ("x", "expected a positive integer, got 'x'")):  # fmt: skip
        one_line_error(run("search", "--task", "moons", "--ensemble", value, cwd=tmp_path), "--ensemble", why)
    one_line_error(run("search", "--benchmark", "nas-bench-macro", "--ensemble", "2", cwd=tmp_path),
                   "--ensemble: trains the best architectures again as the final model; the 'lookup' evaluator")


def test_a_pareto_search_records_costs_and_its_front_reads_its_own_objectives(tmp_path, run):
    proc = run("search", "--task", "moons", "--strategy", "pareto-evolution", "--steps", "3", "--children-per-step",
               "5", "--objectives", "val_score:max,flops:min", "--max-params", "300", "--latency", "--study", "p.db",
               *FAST, cwd=tmp_path, check=True)  # fmt: skip
    assert "goals: objectives val_score:max, flops:min; at most 300 params; latency timed on this CPU" in proc.stdout
    trials = json.loads(run("trials", "p.db", "--json", cwd=tmp_path, check=True).stdout)
    assert all(t["flops"] > 0 and t["latency_ms"] > 0 for t in trials)
    assert all(t["params"] <= 300 for t in trials if t["status"] == "ok")
    assert all(t["status"] == "infeasible" and t["epochs"] == 0 for t in trials if t["params"] > 300)
    front = json.loads(run("pareto", "p.db", "--json", cwd=tmp_path, check=True).stdout)
    assert front["objectives"] == ["val_score:max", "flops:min"]
    assert {t["status"] for t in front["front"]} == {"ok"}
    run("report", "p.db", "--reference", "0.5,2000", cwd=tmp_path, check=True)
    assert "Accuracy and cost: the Pareto front" in (tmp_path / "p.html").read_text()


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--max-params", "3"], "--max-params: no architecture of the space has at most 3 params (the smallest has 7)"),
        (["--objectives", "val_score:max,size:min"], "--objectives: unknown metric 'size'"),
        (["--objectives", "val_score:up,params:min"], "--objectives: the direction of val_score must be min or max"),
        (["--strategy", "pareto-evolution"], "--strategy pareto-evolution: ranks by several objectives; give --objectives"),
        (["--cost-target", "params"], "--cost-target: expected COST=VALUE"),
        (["--max-latency-ms", "0"], "--max-latency-ms: must be a positive finite number"),
    ],
)
def test_bad_goals_are_one_line_with_exit_2_and_no_study(tmp_path, run, flags, needle):
    proc = run("search", "--task", "moons", "--steps", "2", *flags, "--study", "s.db", *FAST, cwd=tmp_path)
    one_line_error(proc, needle)
    assert list(tmp_path.iterdir()) == []
