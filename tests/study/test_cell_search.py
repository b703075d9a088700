"""A recurrent cell search with shared weights: language-model scores, the phases and the pick, and
exact resume after an interruption anywhere."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest
import torch

from archsearch import SearchConfig
from archsearch.errors import ArchsearchError
from archsearch.evaluation import LanguageTrainer, SharedCellEvaluator, TrainConfig
from archsearch.evaluation._language import REWARD_SCALE, layout, mean_loss
from archsearch.space import DagCellSpace, StandardCell, TreeCell, TreeCellSpace
from archsearch.study import Study

from ..conftest import study_rows
from archsearch.tasks import ptb

SHARED = {"derive": 4, "retrain": 2, "controller_steps": 2, "reward_words": 120}


def config(folder, **changes) -> SearchConfig:  # noqa: ANN001, ANN003
    settings = dict(task="ptb", data_dir=str(folder), weight_sharing=True, steps=4, children_per_step=3, seed=5,
                    space="dag-cell", max_layers=4, hidden=12, shared=SHARED,
                    training={"max_epochs": 1, "batch_size": 16})  # fmt: skip
    return SearchConfig(**{**settings, **changes})


def test_a_language_model_is_scored_by_its_perplexity(ptb_folder):
    task = ptb(str(ptb_folder))
    trainer = LanguageTrainer(task, TrainConfig(batch_size=8, max_epochs=4, patience=4, lr=0.1))
    arch = StandardCell("lstm", 16)
    result = trainer.train(arch, seed=4)
    assert result.status == "ok" and result.epochs == 4 and len(result.val_curve) == 4
    kept = max(range(4), key=lambda e: result.val_curve[e]) + 1
    assert result.kept_epoch == kept and result.val_score == result.val_curve[kept - 1] == -result.val_loss
    assert result.reward == pytest.approx(REWARD_SCALE / math.exp(result.val_loss))
    assert math.exp(result.val_loss) < 0.5 * task.n_classes  # learnt the corpus's habit of counting up
    # the kept weights give the kept score; training again with the seed gives the same numbers
    model = trainer.model(arch, result.weights)
    assert mean_loss(model, *layout(*task.split("val"), 10), trainer.bptt) == pytest.approx(result.val_loss, abs=1e-6)
    again = trainer.train(arch, seed=4)
    assert again.val_curve == result.val_curve and again.train_loss == result.train_loss
    assert trainer.test_score(arch, result.weights) == pytest.approx(
        -mean_loss(model, *layout(*task.split("test"), 10), trainer.bptt))


@pytest.mark.parametrize("space", ["dag-cell", "tree-cell"])
def test_phases_kinds_and_the_pick(tmp_path, ptb_folder, space):
    changes = {"max_layers": None} if space == "tree-cell" else {}
    with Study.create(tmp_path / "cells.db", config(ptb_folder, space=space, **changes)) as study:
        best = study.run(progress=False)
        trials = study.trials()
        summary = study.summary()
        passes = study.evaluator.passes
    search = [t for t in trials if t.phase == "search"]
    derived = [t for t in trials if t.phase == "derive"]
    final = [t for t in trials if t.phase == "retrain"]
    assert len(search) == 12 and {t.kind for t in search} == {"proxy"} and passes == 2
    assert 2 <= len(derived) <= 4 and len(final) == 2 and {t.kind for t in final} == {"final"}
    ranked = sorted(derived, key=lambda t: (-t.reward, t.val_loss, t.params, t.number))
    assert [t.arch_hash for t in final] == [t.arch_hash for t in ranked[:2]]
    assert best.kind == "final" and summary["metric"] == "log_likelihood"
    assert all(t.reward == pytest.approx(REWARD_SCALE * math.exp(t.val_score)) for t in trials)
    assert summary["test_score"] < 0 and all(t.val_score < 0 for t in trials)


class Interrupt(BaseException):
    """What a kill does to a run: it stops wherever it is, and only what was committed remains."""


@pytest.mark.parametrize(
    ("method", "call"),
    [("train_pass", 2), ("_proxy", 5), ("score", 2), ("train_final", 2)],
    ids=["in-a-pass", "between-proxy-trials", "in-derivation", "in-retraining"],
)
def test_an_interrupted_cell_search_resumes_to_the_uninterrupted_one(tmp_path, monkeypatch, ptb_folder, method, call):
    straight, killed = tmp_path / "straight.db", tmp_path / "killed.db"
    with Study.create(straight, config(ptb_folder)) as study:
        study.run(progress=False)
    calls = {"n": 0}
    original = getattr(SharedCellEvaluator, method)

    def interrupted(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] == call:
            raise Interrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SharedCellEvaluator, method, interrupted)
    with Study.create(killed, config(ptb_folder)) as study, pytest.raises(Interrupt):
        study.run(progress=False)
    monkeypatch.setattr(SharedCellEvaluator, method, original)
    with Study.open(killed) as study:
        study.run(progress=False)
    assert calls["n"] == call and study_rows(killed) == study_rows(straight)


@pytest.mark.parametrize("how", ["shape", "nan", "passes"])
def test_a_tampered_supernet_state_refuses_resume_in_one_line_and_changes_nothing(tmp_path, ptb_folder, how):
    from archsearch.study._storage import to_blob

    path = tmp_path / "cells.db"
    with Study.create(path, config(ptb_folder, steps=3)) as study:
        study.run(steps=2, progress=False)
    with sqlite3.connect(path) as db:
        (blob,) = db.execute("SELECT state FROM evaluator_state").fetchone()
        state = torch.load(__import__("io").BytesIO(blob), weights_only=True)
        weights = dict(state["supernet"])
        if how == "shape":
            weights["embedding"] = torch.zeros(3, 3)
        elif how == "nan":
            weights["cell.w2_1"] = torch.full_like(weights["cell.w2_1"], float("nan"))
        state = {**state, "supernet": weights, **({"passes": -1} if how == "passes" else {})}
        db.execute("UPDATE evaluator_state SET state = ?", (to_blob(state),))
    db.close()
    before = path.read_bytes()
    with Study.open(path) as study, pytest.raises(ArchsearchError) as error:
        study.run(progress=False)
    message = str(error.value)
    assert "\n" not in message and "shared weights" in message and "resume does not" in message, message
    assert path.read_bytes() == before


def test_a_tree_supernet_shares_every_weight_among_its_cells(ptb_folder):
    task = ptb(str(ptb_folder))
    space = TreeCellSpace(leaves=4, hidden=8)
    evaluator = SharedCellEvaluator(task, space, TrainConfig(batch_size=8, lr=0.01), reward_words=100)
    rng = np.random.default_rng(0)
    names = set(evaluator.supernet.state_dict())
    for _ in range(3):
        child = space.sample(rng)
        assert set(child.build(task.n_classes, task.n_classes).state_dict()) == names
    before = evaluator.score(child).val_loss
    evaluator.train_pass([space.sample(rng) for _ in range(evaluator.batches_per_pass)])
    assert evaluator.score(child).val_loss < before  # a pass through other cells trained this one's weights too


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"space": "mlp", "max_layers": None, "hidden": None}, "task 'ptb' models words"),
        ({"task": "moons", "data_dir": None}, "a recurrent cell models words"),
        ({"shared": {"sharing": "slice"}}, "not a setting of a cell search"),
        ({"max_layers": 17}, "at most 16 nodes"),
        ({"evaluator": "serial"}, "language models train with"),
    ],
)
def test_what_a_cell_search_cannot_do_is_one_line(tmp_path, ptb_folder, changes, message):
    with pytest.raises(ArchsearchError) as error:
        Study.create(tmp_path / "cells.db", config(ptb_folder, **changes))
    assert message in str(error.value) and "\n" not in str(error.value), str(error.value)
    assert not (tmp_path / "cells.db").exists()


def test_the_supernet_of_a_dag_space_holds_one_matrix_per_edge(ptb_folder):
    task = ptb(str(ptb_folder))
    evaluator = SharedCellEvaluator(task, DagCellSpace(nodes=4, hidden=8), TrainConfig(batch_size=8))
    edges = sorted(n for n in evaluator.supernet.state_dict() if n.startswith("cell.w") and n != "cell.wx")
    assert edges == ["cell.w1_0", "cell.w2_1", "cell.w3_1", "cell.w3_2", "cell.w4_1", "cell.w4_2", "cell.w4_3"]


def test_a_pass_skips_the_windows_whose_cell_blows_up_and_trains_on_the_rest(ptb_folder):
    task = ptb(str(ptb_folder))
    space = TreeCellSpace(leaves=2, hidden=8)
    evaluator = SharedCellEvaluator(task, space, TrainConfig(batch_size=16, lr=0.01), bptt=10)
    with torch.no_grad():
        for weight in evaluator.supernet.cell.values():
            weight.mul_(1e4)
    exploding = TreeCell((("mul", "identity"),) * 3, inject=2, inject_node=("add", "identity"), cell=2, hidden=8)
    tame = TreeCell((("add", "tanh"),) * 3, inject=2, inject_node=("add", "tanh"), cell=0, hidden=8)
    count = evaluator.batches_per_pass
    metrics = evaluator.train_pass([exploding if w % 2 else tame for w in range(count)])
    assert metrics["skipped_windows"] == count // 2 and math.isfinite(metrics["shared_loss"])
    assert all(torch.isfinite(p).all() for p in evaluator.supernet.parameters())
    assert evaluator.score(exploding).status == "diverged" and evaluator.score(tame).status == "ok"
    with pytest.raises(ArchsearchError, match="the shared weights diverged"):
        evaluator.train_pass([exploding] * count)


def test_passes_of_pass_words_go_through_the_training_split_in_turn(ptb_folder):
    task = ptb(str(ptb_folder))
    space = DagCellSpace(nodes=2, hidden=8)
    evaluator = SharedCellEvaluator(task, space, TrainConfig(batch_size=4), bptt=10, pass_words=80)
    rows = evaluator.laid_out("train")[0].shape[0]
    assert evaluator.batches_per_pass == 2  # 80 words: two windows of 10 rows x 4 columns
    seen = []
    for _ in range(math.ceil(rows / 20) + 1):
        rows_read = evaluator._pass_rows()
        seen.append((rows_read.start, rows_read.stop))
        evaluator.train_pass([space.sample(np.random.default_rng(0))] * 2)
    starts = [start for start, _ in seen]
    assert starts[: math.ceil(rows / 20)] == list(range(0, rows, 20)) and seen[-1][0] == 0  # in turn, then again
    assert seen[-2][1] == rows  # the last pass of a round reads to the end of the split
