"""MIHA and PBT from the command line: a search, its lineage in trials and the report, the export with
its schedule, replaying the schedule, and the refusals (one line, exit code 2, nothing written)."""

from __future__ import annotations

import json

import pytest

from .conftest import one_line_error

MIHA = ("--space", "settings", "--max-layers", "2", "--strategy", "miha", "--strategy-settings",
        "m=2,pop_size=2,n=1,k=1,c=2", "--seed", "1")  # fmt: skip


def test_a_miha_search_its_lineage_export_and_replay(tmp_path, run):
    searched = run("search", *MIHA, "--study", "m.db", "--quiet", cwd=tmp_path, check=True)
    assert "8 steps x 1 children" in searched.stdout and "schedule: miha, 8 steps, 10 training epochs" in searched.stdout
    trials = json.loads(run("trials", "m.db", "--json", cwd=tmp_path, check=True).stdout)
    assert [t["parent"] for t in trials][:3] == [None, 0, 0] and len(trials) == 8
    table = run("trials", "m.db", cwd=tmp_path, check=True).stdout.splitlines()
    assert table[0].split()[:3] == ["#", "step", "parent"] and table[1].split()[:3] == ["0", "0", "-"]
    best = json.loads(run("best", "m.db", "--json", cwd=tmp_path, check=True).stdout)
    assert best["trial"] == 7
    run("report", "m.db", "-o", "m.html", cwd=tmp_path, check=True)
    assert 'id="lineage"' in (tmp_path / "m.html").read_text()
    run("export", "m.db", "--out", "out", "--no-onnx", cwd=tmp_path, check=True)
    schedule = json.loads((tmp_path / "out" / "schedule.json").read_text())
    assert schedule["trial"] == 7 and [p["trial"] for p in schedule["pieces"]][0] == 0
    assert schedule["epochs"] == sum(p["epochs"] for p in schedule["pieces"]) == 2 + 2 * (1 + 1) + 2
    again = json.loads(run("replay", "out/schedule.json", "--study", "m.db", "--json", cwd=tmp_path, check=True).stdout)
    assert again["val_score"] == pytest.approx(best["val_score"]) and again["test_score"] == pytest.approx(
        best["test_score"])  # the recorded seeds give back the very network
    fresh = json.loads(run("replay", "out/schedule.json", "--study", "m.db", "--seed", "5", "--json", cwd=tmp_path,
                           check=True).stdout)  # fmt: skip
    assert fresh["trained"] == fresh["pieces"] == len(schedule["pieces"]) and fresh["epochs"] == schedule["epochs"]


def test_a_pbt_search_keeps_only_its_final_network(tmp_path, run):
    run("search", "--space", "settings", "--max-layers", "2", "--strategy", "pbt", "--strategy-settings",
        "population_size=3,interval=1,rounds=2", "--keep-final-only", "--study", "p.db", "--quiet", "--executor",
        "process", "--workers", "2", cwd=tmp_path, check=True)  # fmt: skip
    best = json.loads(run("best", "p.db", "--json", cwd=tmp_path, check=True).stdout)
    weights = sorted(p.name for p in (tmp_path / "p.db.children").glob("*.safetensors"))
    assert weights == [f"{best['trial']}.optimizer.safetensors", f"{best['trial']}.safetensors"]
    assert len(list((tmp_path / "p.db.children").glob("*.json"))) == 6


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (("--strategy-settings", "m=2,pop_size=0"), ("strategy.pop_size: must be at least 1, got 0",)),
        (("--strategy-settings", "fitness=speed"), ("strategy.fitness: must be one of loss, val",)),
        (("--strategy-settings", "speed=2"), ("strategy: bad settings for 'miha'", "speed")),
        (("--strategy-settings", "pop_size"), ("--strategy-settings", "KEY=VALUE")),
        (("--steps", "3"), ("--steps: the miha strategy's schedule has 27",)),
        (("--refit",), ("--refit: cannot be combined with the miha strategy",)),
        (("--optimizers", "sgd,nadam"), ("--optimizers: unknown 'nadam'",)),
        (("--trainer", "batched"), ("--trainer batched",)),
    ],
)
def test_bad_population_searches_are_one_line(tmp_path, run, argv, needles):
    one_line_error(run("search", "--space", "settings", "--strategy", "miha", *argv, "--quiet", cwd=tmp_path),
                   *needles)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_miha_needs_the_settings_space_and_keep_final_only_a_population(tmp_path, run):
    one_line_error(run("search", "--strategy", "miha", "--quiet", cwd=tmp_path), "searches the settings space")
    one_line_error(run("search", "--keep-final-only", "--quiet", cwd=tmp_path), "--keep-final-only: keeps a population")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda s: "{", "not a readable schedule"),
        (lambda s: {**s, "format": "other"}, "not an archsearch schedule"),
        (lambda s: {**s, "pieces": []}, "pieces must be a list of 1 to"),
        (lambda s: {**s, "pieces": [{**s["pieces"][0], "epochs": 0}]}, "piece 0: epochs: must be"),
        (lambda s: {**s, "pieces": [{**s["pieces"][0], "seed": -1}]}, "piece 0: seed"),
        (lambda s: {**s, "pieces": [{**s["pieces"][0], "architecture": {"kind": "mlp", "layers": []}}]}, "piece 0:"),
        (lambda s: {**s, "pieces": [s["pieces"][0], {**s["pieces"][1], "architecture": {
            **s["pieces"][1]["architecture"], "layers": [{"units": 1, "activation": "relu"}] * 2}}]},
         "piece 1: its layers differ"),
    ],
)  # fmt: skip
def test_a_damaged_schedule_is_one_line(tmp_path, run, damage, needle):
    run("search", *MIHA, "--study", "m.db", "--quiet", cwd=tmp_path, check=True)
    run("export", "m.db", "--out", "out", "--no-onnx", cwd=tmp_path, check=True)
    schedule = json.loads((tmp_path / "out" / "schedule.json").read_text())
    damaged = damage(schedule)
    (tmp_path / "bad.json").write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
    one_line_error(run("replay", "bad.json", "--study", "m.db", cwd=tmp_path), needle)


def test_compare_refuses_a_population_strategy_it_would_budget_in_queries(tmp_path, run):
    one_line_error(run("compare", "--task", "moons", "--space", "settings", "--strategies", "miha,tpe", "--budget",
                       "10", "--quiet", cwd=tmp_path), "strategies: miha sets its own budget")  # fmt: skip
    assert not (tmp_path / "runs").exists()


def test_replay_refuses_a_study_that_is_not_a_population_study(tmp_path, run):
    run("search", *MIHA, "--study", "m.db", "--quiet", cwd=tmp_path, check=True)
    run("export", "m.db", "--out", "out", "--no-onnx", cwd=tmp_path, check=True)
    run("search", "--steps", "1", "--children-per-step", "2", "--max-epochs", "2", "--study", "r.db", "--quiet",
        cwd=tmp_path, check=True)  # fmt: skip
    one_line_error(run("replay", "out/schedule.json", "--study", "r.db", cwd=tmp_path),
                   "r.db: a reinforce study; replay trains a schedule on the data of the miha or pbt study")  # fmt: skip
