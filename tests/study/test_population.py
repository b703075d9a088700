"""Population strategies (MIHA, PBT) through the study: networks that continue earlier trials' weights,
every network saved with its lineage, the same lineage on every run and after a crash or a kill -9."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from archsearch import SerialTrainer, Study, TrainConfig
from archsearch.config import SearchConfig
from archsearch.errors import ArchsearchError
from archsearch.evaluation._continued import Continued, flat_state, load_flat_state, train_continued
from archsearch.evaluation._scoring import predict, validation_score
from archsearch.space import SettingsArchitecture, SettingsSpace
from archsearch.space._architecture import MLPArchitecture
from archsearch.study._population import lineage_of

from ..conftest import crash, trial_count
from ..conftest import crashing as crashing_trainer

SPACE = {"kind": "settings", "optimizers": ["sgd", "adam", "rmsprop"], "lrs": [0.003, 0.01, 0.03],
         "batch_sizes": [32, 64, 128], "units": [4, 8], "activations": ["relu", "tanh", "elu"], "max_layers": 2}  # fmt: skip
MIHA = {"name": "miha", "m": 2, "pop_size": 3, "n": 1, "k": 2, "c": 2}
PBT = {"name": "pbt", "population_size": 4, "interval": 2, "rounds": 3}


def config(moons, strategy, evaluator=None, **fields):
    return SearchConfig(task=moons, space=SPACE, strategy=strategy, seed=3,
                        evaluator=evaluator or SerialTrainer(moons, TrainConfig()), **fields)  # fmt: skip


def key(trial):
    return (trial.number, trial.parent, str(trial.architecture), trial.status, trial.reward, trial.train_loss,
            trial.val_curve, trial.kind)  # fmt: skip


def saved(path, number):
    return load_file(str(path.with_name(path.name + ".children") / f"{number}.safetensors"))


@pytest.mark.parametrize("strategy", [MIHA, PBT])
def test_a_population_study_continues_parents_and_repeats_exactly(tmp_path, moons, strategy):
    runs = []
    for name in ("one.db", "two.db"):
        with Study.create(tmp_path / name, config(moons, strategy)) as study:
            study.run(progress=False)
            runs.append([key(t) for t in study.trials()])
    assert runs[0] == runs[1]
    trials = Study.open(tmp_path / "one.db").trials()
    if strategy is MIHA:  # 2 + c (pop_size + 1) steps of one child; epochs m, then n per alternative, k, m
        assert len(trials) == 2 + 2 * 4 and [t.epochs for t in trials] == [2, 1, 1, 1, 2, 1, 1, 1, 2, 2]
        assert trials[0].parent is None and all(t.parent is not None for t in trials[1:])
        alternatives = trials[1:4]
        assert {t.parent for t in alternatives} == {0}
        assert all(_changes(trials[0].architecture, t.architecture) == 1 for t in alternatives)
        chosen = trials[4]
        assert chosen.parent in {1, 2, 3} and chosen.architecture == trials[chosen.parent].architecture
        assert trials[-1].parent == trials[-2].number and trials[-1].kind == "final"
    else:
        assert len(trials) == 12 and all(t.epochs == 2 for t in trials)
        assert all(t.parent is None for t in trials[:4]) and all(t.parent is not None for t in trials[4:])
        exploited = [t for t in trials[4:] if t.parent != t.number - 4]
        assert len(exploited) == 2  # one of the bottom quantile per round (floor(0.25 * 4) = 1)
        assert [t.kind for t in trials] == ["proxy"] * 8 + ["final"] * 4
    with Study.open(tmp_path / "one.db") as study:
        assert study.best().kind == "final" and study.strategy.epochs == sum(t.epochs for t in trials)


def _changes(a, b):
    layers = sum(x != y for x, y in zip(a.network.layers, b.network.layers, strict=True))
    return layers + (a.optimizer_name != b.optimizer_name) + (a.batch != b.batch) + (a.lr != b.lr)


def test_every_saved_network_loads_and_predicts_as_recorded(tmp_path, moons):
    with Study.create(tmp_path / "m.db", config(moons, MIHA)) as study:
        study.run(progress=False)
        x_val, y_val = moons.split("val")
        for trial in study.trials():
            model = study.child_model(trial.number)
            assert validation_score(predict(model, x_val), y_val, False) == pytest.approx(trial.val_score)
            record = json.loads((study.children_dir / f"{trial.number}.json").read_text())
            assert record["parent"] == trial.parent and record["epochs"] == trial.epochs
            assert record["lineage"][-1] == trial.number and record["lineage"][0] == 0
            assert record["lineage"] == lineage_of(study, trial.number)  # the parent's file, as the study says
            assert record["settings"]["optimizer"] == trial.architecture.optimizer_name
            reset = trial.parent is not None and (
                study.trials()[trial.parent].architecture.optimizer_name != trial.architecture.optimizer_name)
            assert record["optimizer_state"] == ("new" if trial.parent is None or reset else "resumed")
        resets = sum(m.get("optimizer_resets", 0) for _, m in study.step_metrics())
        assert resets == sum(json.loads((study.children_dir / f"{t.number}.json").read_text())["optimizer_state"]
                             == "new" for t in study.trials()[1:])  # fmt: skip


def test_keep_final_only_deletes_every_network_but_the_final_one(tmp_path, moons):
    with Study.create(tmp_path / "m.db", config(moons, MIHA, keep_final_only=True)) as study:
        study.run(progress=False)
        final = study.best().number
        assert final == len(study.trials()) - 1
        kept = sorted(p.name for p in study.children_dir.iterdir() if p.suffix == ".safetensors")
        assert kept == [f"{final}.optimizer.safetensors", f"{final}.safetensors"]
        assert len(list(study.children_dir.glob("*.json"))) == len(study.trials())
        study.child_model(final)
        with pytest.raises(ArchsearchError, match="no saved weights for trial 0"):
            study.child_model(0)


@pytest.mark.parametrize(("strategy", "crash_after"), [(MIHA, 1), (MIHA, 6), (PBT, 5), (PBT, 9)])
def test_a_crashed_population_study_resumes_to_the_same_lineage(tmp_path, moons, strategy, crash_after):
    with Study.create(tmp_path / "straight.db", config(moons, strategy)) as straight:
        straight.run(progress=False)
        expected = [key(t) for t in straight.trials()]
    crashing = crashing_trainer(SerialTrainer, crash_after)(moons, TrainConfig())
    crash(tmp_path / "crashed.db", config(moons, strategy, crashing))
    with Study.open(tmp_path / "crashed.db") as resumed:
        resumed.run(progress=False)
        assert [key(t) for t in resumed.trials()] == expected
    for number in range(len(expected)):
        for name, tensor in saved(tmp_path / "straight.db", number).items():
            assert torch.equal(tensor, saved(tmp_path / "crashed.db", number)[name])


def _cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "archsearch", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kwargs)  # fmt: skip


@pytest.mark.parametrize("kill_at", [2, 7])
def test_kill_9_then_resume_gives_the_uninterrupted_lineage(tmp_path, kill_at):
    search = ["search", "--space", "settings", "--max-layers", "2", "--strategy", "pbt", "--strategy-settings",
              "population_size=3,interval=3,rounds=4", "--seed", "4", "--quiet"]  # fmt: skip
    straight = _cli(*search, "--study", tmp_path / "straight.db")
    assert straight.wait() == 0, straight.stderr.read()
    killed = _cli(*search, "--study", tmp_path / "killed.db")
    while trial_count(tmp_path / "killed.db") < kill_at and killed.poll() is None:
        time.sleep(0.01)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    resumed = _cli("resume", tmp_path / "killed.db", "--quiet")
    assert resumed.wait() == 0, resumed.stderr.read()
    with Study.open(tmp_path / "straight.db") as a, Study.open(tmp_path / "killed.db") as b:
        assert [key(t) for t in a.trials()] == [key(t) for t in b.trials()] and len(a.trials()) == 12
        for trial in a.trials():
            for name, tensor in saved(tmp_path / "straight.db", trial.number).items():
                assert torch.equal(tensor, saved(tmp_path / "killed.db", trial.number)[name])


def test_continuing_with_the_saved_optimizer_state_equals_training_straight_through(moons):
    """Full-batch Adam: 2 epochs, then 3 more from the saved weights and state, equal 5 epochs at once."""
    trainer = SerialTrainer(moons, TrainConfig())
    arch = SettingsArchitecture(MLPArchitecture(((8, "tanh"), (4, "elu"))), "adam", 0.01, 10_000)
    first = train_continued(trainer, Continued(arch, 2), seed=7)
    second = train_continued(trainer, Continued(arch, 3, first.weights, first.optimizer_state), seed=7)
    straight = train_continued(trainer, Continued(arch, 5), seed=7)
    assert second.train_loss == pytest.approx(straight.train_loss[2:], rel=1e-6)
    for name, tensor in straight.weights.items():
        torch.testing.assert_close(second.weights[name], tensor)
    fresh = train_continued(trainer, Continued(arch, 3, first.weights, None), seed=7)
    assert fresh.train_loss != pytest.approx(straight.train_loss[2:], rel=1e-6)  # the state matters


def test_an_optimizer_state_that_does_not_fit_is_refused():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    state = flat_state(optimizer)
    assert set(state) == {"0.step", "0.exp_avg", "0.exp_avg_sq", "1.step", "1.exp_avg", "1.exp_avg_sq"}
    other = torch.optim.Adam(torch.nn.Linear(4, 2).parameters())
    with pytest.raises(ValueError, match="shape"):
        load_flat_state(other, state)
    with pytest.raises(ValueError, match="does not name a parameter"):
        load_flat_state(torch.optim.Adam(model.parameters()), {"9.step": torch.tensor(1.0)})


@pytest.mark.parametrize(
    ("strategy", "message"),
    [({"name": "miha", "pop_size": 0}, "strategy.pop_size: must be at least 1, got 0"),
     ({"name": "pbt", "quantile": 0.7}, "strategy.quantile: must be at most 0.5, got 0.7"),
     ({"name": "pbt", "quantile": 0}, "strategy.quantile: must be > 0, got 0"),
     ({"name": "miha", "fitness": "speed"}, "strategy.fitness: must be one of loss, val")],
)  # fmt: skip
def test_bad_population_settings_are_one_line(tmp_path, moons, strategy, message):
    with pytest.raises(ArchsearchError, match=message):
        Study.create(tmp_path / "bad.db", config(moons, strategy))
    assert not (tmp_path / "bad.db").exists()


def test_a_population_strategy_refuses_what_assumes_children_trained_from_scratch(tmp_path, moons):
    with pytest.raises(ArchsearchError, match="searches the settings space"):
        Study.create(tmp_path / "a.db", SearchConfig(task=moons, space="mlp", strategy="miha"))
    with pytest.raises(ArchsearchError, match="steps: the miha strategy's schedule has 10"):
        Study.create(tmp_path / "b.db", config(moons, MIHA, steps=12))
    with pytest.raises(ArchsearchError, match="reuse_evaluations: cannot be combined with the miha strategy"):
        Study.create(tmp_path / "c.db", config(moons, MIHA, reuse_evaluations=True))
    with pytest.raises(ArchsearchError, match="keep_final_only: keeps a population strategy's final network"):
        Study.create(tmp_path / "d.db", config(moons, "random", keep_final_only=True))
    with pytest.raises(ArchsearchError, match="saves every network"):
        Study.create(None, config(moons, MIHA))


def test_the_settings_space_takes_a_learning_rate_between_its_values():
    space = SettingsSpace(**{k: v for k, v in SPACE.items() if k != "kind"})
    arch = SettingsArchitecture(MLPArchitecture(((8, "tanh"),)), "adam", 0.0144, 64)
    assert space.validate(arch) == arch and space.decode(space.encode(arch)).lr == 0.01
    with pytest.raises(ArchsearchError, match="not in"):
        space.validate(SettingsArchitecture(MLPArchitecture(((8, "tanh"),)), "adam", 0.5, 64))


def test_pbt_records_the_same_lineage_inline_and_on_worker_processes(tmp_path, moons):
    runs = []
    for name, executor in (("inline.db", None), ("process.db", {"name": "process", "workers": 2})):
        with Study.create(tmp_path / name, config(moons, PBT, executor=executor)) as study:
            study.run(progress=False)
            runs.append([key(t) for t in study.trials()])
    assert runs[0] == runs[1] and len(runs[0]) == 12


def test_a_population_study_runs_its_schedule_no_more_and_no_less(tmp_path, moons):
    with Study.create(tmp_path / "m.db", config(moons, MIHA)) as study:
        for steps in (3, 12):
            with pytest.raises(ArchsearchError, match=f"^steps: the miha strategy's schedule has 10 steps .*got {steps}"):
                study.run(steps=steps, progress=False)
        assert study.trials() == [] and study.steps == 10
        study.run(progress=False)
        assert [t.kind for t in study.trials()].count("final") == 1


def test_miha_changes_only_the_settings_the_space_lets_it_change(tmp_path, moons):
    narrow = {**SPACE, "optimizers": ["adam"], "activations": ["tanh"], "batch_sizes": [32, 64]}
    strategy = {**MIHA, "c": 3, "pop_size": 4}
    with Study.create(tmp_path / "m.db", SearchConfig(task=moons, space=narrow, strategy=strategy, seed=3)) as study:
        study.run(progress=False)
        trials = study.trials()
    alternatives = [t for t in trials if study.strategy.phase(t.step)[0] == "alternative"]
    assert len(alternatives) == 12 and all(t.architecture.batch != trials[t.parent].architecture.batch
                                           for t in alternatives)  # fmt: skip
    nothing = {**narrow, "batch_sizes": [32]}
    with pytest.raises(ArchsearchError, match="strategy miha: the space offers no other optimizer"):
        Study.create(tmp_path / "n.db", SearchConfig(task=moons, space=nothing, strategy=MIHA))


def _tamper_checkpoint(path, change):
    state_blob = sqlite3.connect(path).execute("SELECT state FROM checkpoints").fetchone()[0]
    import io

    state = torch.load(io.BytesIO(state_blob), weights_only=True)
    change(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE checkpoints SET state = ?", (buffer.getvalue(),))


@pytest.mark.parametrize(
    ("strategy", "change"),
    [(MIHA, lambda s: s.update(alternatives=[])), (MIHA, lambda s: s.update(told=-1)),
     (MIHA, lambda s: s.update(current_loss=float("nan"))), (PBT, lambda s: s.update(members=[])),
     (PBT, lambda s: s.update(told=2))],
)  # fmt: skip
def test_a_tampered_population_checkpoint_is_one_line(tmp_path, moons, strategy, change):
    crash(tmp_path / "s.db", config(moons, strategy, crashing_trainer(SerialTrainer, 6)(moons, TrainConfig())))
    _tamper_checkpoint(tmp_path / "s.db", change)
    with Study.open(tmp_path / "s.db") as reopened, pytest.raises(ArchsearchError, match="does not fit the study's strategy"):
        reopened.run(progress=False)


@pytest.mark.parametrize(
    ("suffix", "damage", "needle"),
    [(".optimizer.safetensors", lambda t: {**t, "0.exp_avg": torch.zeros(3)}, "0.exp_avg is torch.float32 of shape"),
     (".optimizer.safetensors", lambda t: {k: v for k, v in t.items() if k != "1.step"}, "no entry '1.step'"),
     (".optimizer.safetensors", lambda t: {**t, "0.exp_avg": torch.full_like(t["0.exp_avg"], float("nan"))},
      "not finite"),
     (".safetensors", lambda t: {**t, "0.weight": torch.zeros(1, 1)}, "do not fit its network")],
)  # fmt: skip
def test_a_damaged_parent_file_is_one_line_not_a_failed_child(tmp_path, moons, suffix, damage, needle):
    from safetensors.torch import save_file

    adam = {**SPACE, "optimizers": ["adam"]}
    crashing = crashing_trainer(SerialTrainer, 1)(moons, TrainConfig())
    crash(tmp_path / "s.db", SearchConfig(task=moons, space=adam, strategy=MIHA, seed=3, evaluator=crashing))
    file = tmp_path / "s.db.children" / f"0{suffix}"
    save_file(damage(load_file(str(file))), str(file))
    with Study.open(tmp_path / "s.db") as reopened:
        with pytest.raises(ArchsearchError, match=needle):
            reopened.run(progress=False)
        assert len(reopened.trials()) == 1


def test_export_of_a_study_missing_a_trial_of_the_lineage_is_one_line(tmp_path, moons):
    from archsearch.study._population import schedule_of

    with Study.create(tmp_path / "m.db", config(moons, MIHA)) as study:
        study.run(progress=False)
    with sqlite3.connect(tmp_path / "m.db") as db:
        db.execute("DELETE FROM trials WHERE number = 4")
    with Study.open(tmp_path / "m.db", readonly=True) as study, pytest.raises(ArchsearchError, match="missing"):
        schedule_of(study, 9)


def test_miha_starts_from_an_initial_configuration_written_as_trials_prints_it(tmp_path, moons):
    text = "8-tanh/4-elu rmsprop lr=0.01 batch=64"
    assert str(SettingsArchitecture.parse(text)) == text
    with pytest.raises(ArchsearchError, match="expected LAYERS OPTIMIZER lr=RATE batch=SIZE"):
        SettingsArchitecture.parse("8-tanh adam")
    with Study.create(tmp_path / "m.db", config(moons, {**MIHA, "initial": text})) as study:
        study.run(progress=False)
        assert str(study.trials()[0].architecture) == text
    with pytest.raises(ArchsearchError, match="strategy.initial: 999-tanh: layer 999-tanh is not in MLPSpace"):
        Study.create(tmp_path / "n.db", config(moons, {**MIHA, "initial": "999-tanh adam lr=0.01 batch=64"}))


def test_an_image_task_read_as_rows_of_pixels_reopens_as_it_was_searched(tmp_path):
    searched = SearchConfig(task="digits", space="settings", units=[16], max_layers=1, strategy=MIHA, seed=2)
    with Study.create(tmp_path / "d.db", searched) as study:
        assert study.task.x_train.shape[1:] == (64,) and study.config["task"]["flatten"] is True
        study.run(progress=False)
        expected = [key(t) for t in study.trials()]
    with Study.open(tmp_path / "d.db") as reopened:
        assert reopened.task.x_train.shape[1:] == (64,) and [key(t) for t in reopened.trials()] == expected
        model = reopened.child_model(expected[-1][0])
        assert model(reopened.task.x_val).shape == (len(reopened.task.y_val), 10)
