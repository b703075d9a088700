"""Tabular benchmarks: tables checked on reading, missing codes as trials, test metric, params, old studies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from archsearch.errors import ArchsearchError
from archsearch.evaluation import TABULAR_BENCHMARKS, LookupEvaluator, TabularBenchmark, get_benchmark
from archsearch.space import CodeSpace, canonical_form
from archsearch.study import STRATEGIES, Study, build_strategy

DATA = Path(__file__).parent / "data"
DECISIONS = [("input1", [0, 1]), ("op1", ["conv3", "conv5", "skip"]), ("input2", [0, 1, 2]), ("op2", ["conv3", "skip"])]
TARGET = ["1", "conv5", "2", "conv3"]


def cell_table(space: CodeSpace) -> dict[str, dict]:
    """acc = 60 + 10 x positions matching TARGET (one best, 100); codes with input2=2 and op2=skip are absent."""
    table = {}
    for number, arch in enumerate(space.enumerate()):
        parts = arch.code.split("-")
        if parts[2:] != ["2", "skip"]:
            acc = 60.0 + 10.0 * sum(a == b for a, b in zip(parts, TARGET))
            table[arch.code] = {"acc": acc, "test": acc - 1.0, "size": 100 * number}
    return table


def cell_benchmark(**options) -> TabularBenchmark:
    space = CodeSpace.from_decisions(DECISIONS, benchmark="cells")
    options = {"metric": "acc", "scale": 0.01, **options}
    return TabularBenchmark("cells", space, cell_table(space), **options)


def search(bench: TabularBenchmark, strategy: str, steps: int, path=None, seed: int = 0) -> Study:
    study = Study.create(
        path,
        None,
        steps=steps,
        children_per_step=4,
        seed=seed,
        space=bench.space,
        strategy=build_strategy({"name": strategy, "seed": seed}, bench.space),
        evaluator=LookupEvaluator(bench),
    )
    study.run(progress=False)
    return study


def test_a_missing_code_is_a_trial_with_status_missing_and_reward_zero():
    bench = cell_benchmark()
    assert len(bench.records) == 30 and bench.space.size() == 36
    archs = [bench.space.parse("1-conv5-2-conv3"), bench.space.parse("0-skip-2-skip")]
    results = LookupEvaluator(bench).evaluate_all(archs, [0, 1])
    assert (results[0].status, results[0].reward) == ("ok", pytest.approx(1.0))
    assert (results[1].status, results[1].reward, results[1].params) == ("missing", 0.0, 0)
    assert results[1].error == "code 0-skip-2-skip: not in the cells table"
    with pytest.raises(ArchsearchError, match="no record for code '0-skip-2-skip'"):
        bench.value(archs[1])


def test_a_declared_default_stands_in_for_missing_codes():
    bench = cell_benchmark(default={"acc": 10.0})
    (result,) = LookupEvaluator(bench).evaluate_all([bench.space.parse("0-skip-2-skip")], [0])
    assert (result.status, result.reward) == ("ok", pytest.approx(0.1))
    assert bench.best_value == 100.0  # the default is not part of the table
    with pytest.raises(ArchsearchError, match=r"^benchmark cells: default: 'acc' is not a finite number"):
        cell_benchmark(default={"accuracy": 10.0})


@pytest.mark.parametrize("strategy", sorted(s for s in STRATEGIES if not (STRATEGIES.lookup(s).multi_objective or STRATEGIES.lookup(s).continues)))
def test_every_strategy_searches_a_space_of_named_decisions_with_missing_codes(strategy):
    """Every strategy of one reward; those of several objectives need objectives (test_multi_objective.py)."""
    if strategy == "tpe":
        pytest.importorskip("optuna", reason="the tpe strategy needs the optional extra archsearch[optuna]")
    bench = cell_benchmark()
    # random search without repeats exhausts the 36 codes in 9 steps; the others get 15
    study = search(bench, strategy, steps=9 if strategy == "random" else 15)
    trials = study.trials()
    assert all(bench.space.contains(t.architecture) for t in trials)
    missing = [t for t in trials if t.architecture.code not in bench.records]
    assert missing and all(t.status == "missing" and t.reward == 0.0 for t in missing)
    assert all(t.status == "ok" for t in trials if t.architecture.code in bench.records)
    assert study.best().architecture.code == "1-conv5-2-conv3" and study.best().reward == pytest.approx(1.0)
    summary = study.summary()
    assert summary["architecture"] == "1-conv5-2-conv3"
    assert summary["benchmark"]["value"] == 100.0 and summary["benchmark"]["best_architectures"] == ["1-conv5-2-conv3"]


def test_a_study_with_missing_trials_reopens_from_its_file(tmp_path, monkeypatch):
    bench = cell_benchmark()
    monkeypatch.setitem(TABULAR_BENCHMARKS, "cells", lambda: bench)
    with search(bench, "random", steps=9, path=tmp_path / "cells.db") as study:
        expected = [(t.architecture.code, t.status, t.reward, t.arch_hash) for t in study.trials()]
    assert sum(status == "missing" for _, status, _, _ in expected) == 6
    with Study.open(tmp_path / "cells.db", readonly=True) as study:
        assert [(t.architecture.code, t.status, t.reward, t.arch_hash) for t in study.trials()] == expected
        assert study.space == bench.space and study.best().architecture.code == "1-conv5-2-conv3"
        assert study.trials(top=1)[0].status == "ok"


def test_test_metric_and_params_key_are_reported():
    bench = cell_benchmark(test_metric="test", params_key="size")
    study = search(bench, "random", steps=9)
    best = study.best()
    assert best.params == 100 * [str(a) for a in bench.space.enumerate()].index("1-conv5-2-conv3")
    section = study.summary()["benchmark"]
    assert section == {
        "name": "cells",
        "metric": "acc",
        "value": 100.0,
        "best_value": 100.0,
        "best_architectures": ["1-conv5-2-conv3"],
        "test_metric": "test",
        "test_value": 99.0,
    }
    assert "test_metric" not in search(cell_benchmark(), "random", steps=9).summary()["benchmark"]


def test_trials_best_and_report_show_a_study_with_missing_trials(tmp_path, monkeypatch, capsys):
    from archsearch.cli import main

    bench = cell_benchmark(test_metric="test")
    monkeypatch.setitem(TABULAR_BENCHMARKS, "cells", lambda: bench)
    search(bench, "random", steps=9, path=tmp_path / "cells.db").close()
    capsys.readouterr()
    assert main(["trials", str(tmp_path / "cells.db"), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(t["status"] for t in listed).count("missing") == 6 and len(listed) == 36
    assert main(["best", str(tmp_path / "cells.db")]) == 0
    out = capsys.readouterr().out
    assert "best: 1-conv5-2-conv3  cells acc 100 (the benchmark's best)  test test 99  (trial" in out
    assert main(["report", str(tmp_path / "cells.db"), "-o", str(tmp_path / "cells.html")]) == 0
    assert "1-conv5-2-conv3" in (tmp_path / "cells.html").read_text()


@canonical_form
def second_op_ignored(code: str) -> str:
    """Test form: the second op never matters (the table keeps only conv3 there)."""
    return code.rsplit("-", 1)[0] + "-conv3"


def test_a_table_of_canonical_codes_answers_for_every_equivalent_code():
    space = CodeSpace.from_decisions(DECISIONS, benchmark="cells", canonical=second_op_ignored)
    table = {code: record for code, record in cell_table(space).items() if code.endswith("-conv3")}
    bench = TabularBenchmark("cells", space, table, metric="acc")
    archs = [space.parse("1-conv5-1-skip"), space.parse("1-conv5-1-conv3")]
    results = LookupEvaluator(bench).evaluate_all(archs, [0, 0])
    assert [r.reward for r in results] == [90.0, 90.0] and {r.status for r in results} == {"ok"}


def write_table(tmp_path, table) -> Path:
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table) if not isinstance(table, str) else table)
    return path


@pytest.mark.parametrize(
    ("table", "options", "message"),
    [
        ({}, {}, r"benchmark cells: the table has no usable code \(need records such as \{code: \{'acc': value\}\}\)"),
        ([1, 2], {}, "the table must be a JSON object of code -> record"),
        ({"0-conv3-0-conv3": {"accuracy": 90}}, {}, r"record '0-conv3-0-conv3': 'acc' is not a finite number"),
        ({"0-conv3-0-conv3": {"acc": "90"}}, {}, r"record '0-conv3-0-conv3': 'acc' is not a finite number"),
        ({"0-conv3-0-conv3": {"acc": True}}, {}, r"record '0-conv3-0-conv3': 'acc' is not a finite number"),
        ({"0-conv3-0-conv3": [90]}, {}, r"record '0-conv3-0-conv3': must be an object of metrics"),
        ({"0-conv7-0-conv3": {"acc": 90}}, {}, r"record '0-conv7-0-conv3': code '0-conv7-0-conv3': not a code of"),
        ({"0-conv3-0-conv3": {"acc": 90}}, {"runs": "r"}, r"'r' is not a non-empty list of finite numbers"),
        ({"0-conv3-0-conv3": {"acc": 90, "r": []}}, {"runs": "r"}, r"'r' is not a non-empty list"),
        ({"0-conv3-0-conv3": {"acc": 90}}, {"test_metric": "t"}, r"'t' is not a finite number \(None\)"),
        ({"0-conv3-0-conv3": {"acc": 90, "p": -1}}, {"params_key": "p"}, r"'p' is not a non-negative integer \(-1\)"),
        ({"0-conv3-0-conv3": {"acc": 90}}, {"scale": 0}, r"scale must be a positive number"),
        ("{not json", {}, r"cannot read the cells table"),
    ],
)
def test_from_json_refuses_a_bad_table_in_one_line_naming_the_file_and_field(tmp_path, table, options, message):
    path = write_table(tmp_path, table)
    space = CodeSpace.from_decisions(DECISIONS, benchmark="cells")
    with pytest.raises(ArchsearchError, match=message) as caught:
        TabularBenchmark.from_json("cells", path, space, metric="acc", **options)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


def test_a_table_given_in_python_is_checked_alike():
    space = CodeSpace("toy", 2, "01")
    with pytest.raises(ArchsearchError, match=r"^benchmark toy: record 1: a code is text"):
        TabularBenchmark("toy", space, {1: {"acc": 1.0}}, metric="acc")
    with pytest.raises(ArchsearchError, match=r"^benchmark toy: record '012': code '012': not a code of the toy space"):
        TabularBenchmark("toy", space, {"01": {"acc": 1.0}, "012": {"acc": 1.0}}, metric="acc")


def test_from_json_reads_a_table_that_lacks_codes(tmp_path):
    space = CodeSpace.from_decisions(DECISIONS, benchmark="cells")
    path = write_table(tmp_path, cell_table(space))
    bench = TabularBenchmark.from_json("cells", path, space, metric="acc", test_metric="test", params_key="size")
    assert len(bench.records) == 30 and bench.best_codes == ("1-conv5-2-conv3",)
    assert bench.codes_within(10.0) == tuple(sorted(c for c, r in bench.records.items() if r["acc"] >= 90))
    # the best, and one position off: input1 (1 other choice), op1 (2), input2 (2); op2 off is absent
    assert len(bench.codes_within(10.0)) == 1 + 1 + 2 + 2


def test_nas_bench_macro_is_read_with_its_numbers():
    bench = get_benchmark("nas-bench-macro")
    assert len(bench.records) == bench.space.size() == 6561
    assert bench.best_value == pytest.approx(93.12666, abs=1e-4)
    assert bench.best_codes == ("22212202", "22212220")
    assert len({a.hash for a in bench.space.enumerate()}) == 3969
    (result,) = LookupEvaluator(bench).evaluate_all([bench.space.parse("22212220")], [0])
    assert result.reward == pytest.approx(0.9312666) and result.params == bench.records["22212220"]["params"]
    (noisy,) = LookupEvaluator(bench, noisy=True).evaluate_all([bench.space.parse("22212220")], [0])
    assert noisy.reward * 100 in bench.records["22212220"]["test_acc"]


def test_a_study_of_nas_bench_macro_written_before_named_decisions_opens_and_resumes(tmp_path):
    """Written by the code before this package: config without a canonical form, three of four steps run."""
    path = tmp_path / "macro.db"
    shutil.copy(DATA / "nas-bench-macro-before-17.db", path)
    with Study.open(path) as study:
        assert study.config["space"] == {"kind": "code", "benchmark": "nas-bench-macro", "length": 8,
                                         "choices": ["0", "1", "2"]}  # fmt: skip
        trials = study.trials()
        assert len(trials) == 15 and trials[1].architecture.code == "00210201"
        assert trials[1].arch_hash == study.space.parse("00210210").hash == "ad5af5e2008c42a3"
        assert study.summary()["benchmark"]["value"] == pytest.approx(92.37666575113933)
        study.run(steps=4, progress=False)
        # the codes and hashes the code before this package gave for the fourth step
        assert [(t.architecture.code, t.arch_hash) for t in study.trials()[15:]] == [
            ("10202102", "486ea7bf00a860d0"),
            ("12201021", "878a73a65cb828a8"),
            ("22222001", "3668a9b43c8bf3b0"),
            ("12211120", "a071f560fb57a429"),
            ("12122212", "96ba6bb574282fb9"),
        ]
        assert study.best().architecture.code == "12122212"


def test_an_asynchronous_study_of_nas_bench_macro_resumes_with_canonical_hashes(tmp_path):
    """Proposals in flight are read back from the checkpoint: they must hash through the space's canonical form."""
    bench = get_benchmark("nas-bench-macro")

    def create(path):
        strategy = build_strategy({"name": "evolution", "seed": 2, "population_size": 6, "sample_size": 3}, bench.space)
        return Study.create(path, None, steps=8, children_per_step=3, seed=2, space=bench.space, strategy=strategy,
                            evaluator=LookupEvaluator(bench), asynchronous=True)  # fmt: skip

    with create(tmp_path / "straight.db") as study:
        study.run(progress=False)
        expected = [(t.architecture.code, t.arch_hash) for t in study.trials()]
    assert any(bench.space.parse(code).canonical().code != code for code, _ in expected)
    with create(tmp_path / "split.db") as study:
        study.run(steps=3, progress=False)
    with Study.open(tmp_path / "split.db") as study:
        study.run(steps=8, progress=False)
        assert [(t.architecture.code, t.arch_hash) for t in study.trials()] == expected

