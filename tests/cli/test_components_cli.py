"""Component searches from the command line: search, trials, report and export of formulas; a formula
trained with baseline; and the refusals, one line each with exit code 2 and nothing written."""

from __future__ import annotations

import html
import json

import pytest

from .conftest import one_line_error


def test_an_activation_search_from_the_command_line(tmp_path, run):
    search = run("search", "--task", "moons", "--space", "activation", "--steps", "2", "--children-per-step", "3",
                 "--max-epochs", "3", "--study", "a.db", "--quiet", cwd=tmp_path, check=True)  # fmt: skip
    assert "best: " in search.stdout
    best = json.loads(run("best", "a.db", "--json", cwd=tmp_path, check=True).stdout)
    assert best["architecture_json"]["kind"] == "activation"
    formula = best["architecture_json"]["formula"]
    trials = run("trials", "a.db", cwd=tmp_path, check=True).stdout
    assert "x" in trials
    run("report", "a.db", "--out", "r.html", cwd=tmp_path, check=True)
    assert html.escape(best["architecture"]) in (tmp_path / "r.html").read_text()
    run("export", "a.db", "--out", "out", "--no-onnx", cwd=tmp_path, check=True)
    source = (tmp_path / "out" / "model.py").read_text()
    assert "class Activation(nn.Module)" in source
    described = json.loads((tmp_path / "out" / "architecture.json").read_text())
    assert described["activation"]["as_searched"] == formula


def test_an_update_rule_search_and_a_formula_baseline(tmp_path, run):
    run("search", "--task", "moons", "--space", "update-rule", "--strategy", "random", "--steps", "1",
        "--children-per-step", "3", "--max-epochs", "2", "--study", "u.db", "--quiet", cwd=tmp_path, check=True)  # fmt: skip
    proc = run("baseline", "--task", "moons", "--update-rule", "exp(sign(g) * sign(m)) * g", "--max-epochs", "3",
               "--lr", "0.1", "--json", cwd=tmp_path, check=True)  # fmt: skip
    summary = json.loads(proc.stdout)
    assert summary["formula"] == "g * exp(sign(g) * sign(m))" and summary["space"] == "update-rule"
    assert 0.5 < summary["test_score"] <= 1.0 and summary["epochs"] == 3


def test_compare_searches_a_component_space(tmp_path, run):
    run("compare", "--task", "moons", "--space", "update-rule", "--strategies", "reinforce,random", "--seeds", "1",
        "--budget", "6", "--children-per-step", "3", "--out", "c", "--quiet", cwd=tmp_path, check=True)  # fmt: skip
    results = json.loads((tmp_path / "c" / "results.json").read_text())
    assert results["settings"]["space"] == "update-rule"
    from archsearch.study import Study

    with Study.open(tmp_path / "c" / "studies" / "random-s0.db") as study:
        assert study.space.kind == "update-rule" and len(study.trials()) == 6


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (
            ("baseline", "--task", "moons", "--activation", "relu(x)"),
            ("--activation: unknown operation or variable 'relu'",),
        ),
        (("baseline", "--task", "moons", "--activation", "sin(" * 40 + "x" + ")" * 40), ("--activation", "too deep")),
        (
            ("baseline", "--task", "moons", "--update-rule", "__import__(g)"),
            ("--update-rule: unknown operation or variable '__import__'",),
        ),
        (("baseline", "--task", "moons", "--update-rule", "g ** 2"), ("--update-rule: unexpected '*'",)),
        (("baseline", "--task", "moons"), ("--task moons", "--activation or --update-rule")),
        (("baseline", "--task", "moons", "--activation", "x", "--cell", "lstm"), ("--cell",)),
        (
            ("search", "--task", "moons", "--space", "activation", "--trainer", "batched"),
            ("--trainer batched", "serial"),
        ),
        (("search", "--task", "moons", "--space", "update-rule", "--max-layers", "3"), ("--max-layers", "units")),
        (("search", "--task", "moons", "--space", "activation", "--weight-sharing"), ("--weight-sharing",)),
        (("search", "--task", "ptb", "--space", "activation"), ("--space activation", "models words")),
        (("compare", "--benchmark", "nas-bench-macro", "--space", "activation", "--out", "o"),
         ("--space: a tabular benchmark has its own space",)),
        (("compare", "--task", "moons", "--space", "activation", "--weight-sharing", "--out", "o"),
         ("--weight-sharing",)),
    ],
)
def test_bad_formulas_and_settings_are_one_line(tmp_path, run, argv, needles):
    one_line_error(run(*argv, "--json" if argv[0] == "baseline" else "--quiet", cwd=tmp_path), *needles)
    assert list(tmp_path.iterdir()) == []
