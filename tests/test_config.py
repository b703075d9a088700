"""SearchConfig: one place builds the parts, so Study.create and the command line store the same study."""

import json

import pytest

from archsearch import SearchConfig, Study
from archsearch.cli import _flag, main
from archsearch.config import IMAGE_TRAINING, Parts
from archsearch.errors import ArchsearchError
from archsearch.evaluation import TABULAR_BENCHMARKS, TrainConfig, get_benchmark
from archsearch.registry import Registry
from archsearch.space import CNNSpace, MLPSpace
from archsearch.strategies import RandomSearch
from archsearch.tasks import from_file, get_task

ONE_CHILD = ["--steps", "1", "--children-per-step", "1", "--quiet"]


def _cli_config(tmp_path, *args: str) -> dict:
    study = tmp_path / "cli.db"
    assert main(["search", *args, *ONE_CHILD, "--study", str(study)]) == 0
    with Study.open(study, readonly=True) as opened:
        return opened.config


def _python_config(tmp_path, task, **keywords) -> dict:
    """The config ``Study.create`` stores for ``task`` (a task, or a whole ``SearchConfig``)."""
    if isinstance(task, SearchConfig):
        with Study.create(tmp_path / "py.db", task) as study:
            return study.config
    with Study.create(tmp_path / "py.db", task, steps=1, children_per_step=1, **keywords) as study:
        return study.config


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "points.csv"
    rows = [f"{i % 7},{(i * 3) % 11},{'a' if i % 3 else 'b'}" for i in range(60)]
    path.write_text("x,y,label\n" + "\n".join(rows) + "\n")
    return path


def test_python_and_the_command_line_store_the_same_moons_study(tmp_path):
    assert _python_config(tmp_path, get_task("moons")) == _cli_config(tmp_path, "--task", "moons")


@pytest.mark.slow
def test_python_and_the_command_line_store_the_same_digits_study(tmp_path):
    digits = get_task("digits")
    defaults = SearchConfig(task=digits, steps=1).build().evaluator.config  # built, not trained
    assert {k: getattr(defaults, k) for k in IMAGE_TRAINING} == IMAGE_TRAINING
    one_epoch = SearchConfig(task=digits, training={"max_epochs": 1}, steps=1, children_per_step=1)
    python = _python_config(tmp_path, one_epoch)
    assert python == _cli_config(tmp_path, "--task", "digits", "--max-epochs", "1")
    assert python["space"]["kind"] == "cnn" and python["trainer"]["name"] == "serial"
    assert {k: python["trainer"][k] for k in IMAGE_TRAINING if k != "max_epochs"} == {
        k: v for k, v in IMAGE_TRAINING.items() if k != "max_epochs"
    }


def test_python_and_the_command_line_store_the_same_csv_study(tmp_path, csv_file):
    cli = _cli_config(tmp_path, "--data", str(csv_file), "--target", "label", "--max-epochs", "3")
    config = SearchConfig(data=str(csv_file), target="label", training={"max_epochs": 3}, steps=1, children_per_step=1)
    with Study.create(tmp_path / "py.db", config) as study:
        python = study.config
    assert python == cli
    assert python["task"]["name"] == "file" and python["trainer"]["max_epochs"] == 3
    with Study.create(None, from_file(str(csv_file), "label"), steps=1) as study:
        assert study.config["task"] == cli["task"]


def test_python_and_the_command_line_store_the_same_benchmark_study(tmp_path):
    config = SearchConfig(benchmark="nas-bench-macro", strategy="evolution", steps=1, children_per_step=1)
    with Study.create(tmp_path / "py.db", config) as study:
        python = study.config
    assert python == _cli_config(tmp_path, "--benchmark", "nas-bench-macro", "--strategy", "evolution")
    assert python["task"] is None and python["trainer"] == {"name": "lookup", "benchmark": "nas-bench-macro",
                                                            "noisy": False}  # fmt: skip


def test_defaults_follow_the_task(tmp_path):
    moons = SearchConfig(task="moons", steps=1).build()
    assert isinstance(moons.space, MLPSpace) and moons.evaluator.name == "batched"
    assert moons.space.max_layers == 5 and moons.evaluator.config.max_epochs == 50
    digits = SearchConfig(task=get_task("digits"), workers=2, steps=1).build()
    assert isinstance(digits.space, CNNSpace) and digits.evaluator.name == "serial"
    assert digits.evaluator.config.batch_size == 64 and digits.executor.workers == 2
    from archsearch._limits import available_cores

    assert digits.evaluator.config.threads == max(1, available_cores() // 2)


@pytest.mark.parametrize(
    "config",
    [
        SearchConfig(),
        SearchConfig(task="digits", space="cnn", max_layers=3, skips=False, training={"lr": 0.1}, seed=7),
        SearchConfig(data="x.csv", target="y", problem="regression", split=(0.5, 0.3, 0.2), split_seed=3),
        SearchConfig(benchmark="nas-bench-macro", noisy=True, strategy={"name": "evolution", "sample_size": 4}),
        SearchConfig(executor="process", workers=3, retries=0, curriculum=[2, 10], asynchronous=False),
    ],
)
def test_a_config_survives_its_dict(config):
    data = json.loads(json.dumps(config.to_dict()))
    assert SearchConfig.from_dict(data) == config


def test_a_config_from_parts_builds_nothing_new():
    parts = SearchConfig(task="moons", strategy="random", steps=2).build()
    again = SearchConfig(task="moons", strategy="random", steps=2).with_parts(parts).build()
    assert again == parts and isinstance(again, Parts)


@pytest.mark.parametrize(
    "data, needle",
    [
        ([], "config: expected an object of fields, got list"),
        ({"bogus": 1}, "config: unknown field 'bogus'"),
        ({"steps": "3"}, "config.steps: expected int, got str"),
        ({"noisy": 1}, "config.noisy: expected bool, got int"),
        ({"max_layers": True}, "config.max_layers: expected int | None, got bool"),
    ],
)
def test_a_bad_config_dict_is_one_line(data, needle):
    with pytest.raises(ArchsearchError) as caught:
        SearchConfig.from_dict(data)
    assert str(caught.value).startswith(needle) and "\n" not in str(caught.value)


#: (fields, the start of the refusal in Python, the same on the command line)
REFUSALS = [
    ({"task": "moons", "benchmark": "nas-bench-macro"}, "task and benchmark: give one", "--task and --benchmark:"),
    ({"task": "moons", "data": "x.csv"}, "task and data: give one", "--task and --data:"),
    ({"noisy": True}, "noisy: only a tabular benchmark (benchmark)", "--noisy: only a tabular benchmark (--benchmark)"),
    ({"target": "y"}, "target: names a column of your data file", "--target: names a column of your --data file"),
    ({"problem": "regression"}, "problem: describes your data file", "--problem: describes your --data file"),
    ({"split_seed": 3}, "split_seed: splits your data file", "--split-seed: splits your --data file"),
    ({"data_dir": "."}, "data_dir: only task mnist, fashion-mnist, ptb", "--data-dir: only --task mnist,"),
    ({"task": "mnist"}, "task mnist: needs data_dir", "--task mnist: needs --data-dir"),
    ({"asynchronous": True}, "asynchronous: the reinforce strategy learns from whole steps",
     "--asynchronous: the reinforce strategy learns from whole steps; use --strategy evolution or random"),
    ({"asynchronous": True, "strategy": "random", "reuse_evaluations": True},
     "asynchronous: cannot be combined with reuse_evaluations",
     "--asynchronous: cannot be combined with --reuse-evaluations"),
    ({"strategy": "evolution", "curriculum": [2, 5]}, "curriculum: grows the reinforce controller's children, not "
     "evolution's", "--curriculum: grows the reinforce"),
    ({"benchmark": "nas-bench-macro", "space": "cnn"}, "space: a tabular benchmark has its own space", "--space: a"),
    ({"benchmark": "nas-bench-macro", "batch_norm": False}, "batch_norm: a tabular", "--no-batch-norm: a tabular"),
    ({"task": {"name": "digits"}, "space": "mlp"}, "space mlp: task 'digits' is images; search it with space cnn",
     "--space mlp: task 'digits' is images; search it with --space cnn"),
    ({"space": "cnn"}, "space cnn: task 'moons' has feature vectors", "--space cnn: task 'moons' has feature"),
    ({"skips": False}, "skips: only the cnn space", "--no-skips: only the cnn space"),
    ({"task": "digits", "evaluator": "batched"}, "evaluator batched: trains MLP children only; the cnn space trains "
     "with evaluator serial", "--trainer batched: trains MLP children only; the cnn space trains with --trainer"),
    ({"task": "digits", "max_layers": 17}, "max_layers: at most 16 for the cnn space, got 17", "--max-layers: at most 16"),
    ({"address": "auto"}, "address: names a Ray cluster, and the executor is 'inline'; add executor ray",
     "--address: names a Ray cluster, and the executor is 'inline'; add --executor ray"),
    ({"executor": "inline", "workers": 2}, "workers: the inline executor runs in this process alone",
     "--workers: the inline executor runs in this process alone; use --executor process"),
    ({"steps": 0}, "steps: must be a positive integer, got 0", "--steps: must be a positive integer"),
    ({"seed": -1}, "seed: must be a non-negative integer, got -1", "--seed: must be a non-negative"),
    ({"strategy": "annealing"}, "strategy: unknown strategy 'annealing' (known: evolution, miha, nsga2, pareto-evolution, pbt, "
     "random, reinforce, tpe; a plugin adds one through the 'archsearch.strategies' entry-point group)", "--strategy: unknown strategy"),
]  # fmt: skip


@pytest.mark.parametrize("fields, python, cli", REFUSALS, ids=[str(sorted(r[0])) for r in REFUSALS])
def test_every_refusal_across_fields_is_one_line_naming_the_field(fields, python, cli):
    config = SearchConfig(**fields)
    for names, needle in ((None, python), (_flag, cli)):
        with pytest.raises(ArchsearchError) as caught:
            config.check(*([names] if names else []))
        message = str(caught.value)
        assert message.startswith(needle) and "\n" not in message, message


def test_a_refit_of_a_lookup_is_refused_when_built():
    with pytest.raises(ArchsearchError, match="^refit: retrains the final pick; the 'lookup' evaluator trains nothing"):
        SearchConfig(benchmark="nas-bench-macro", refit=True).build()


def test_an_unknown_name_says_which_entry_point_group_adds_one():
    with pytest.raises(ArchsearchError) as caught:
        get_benchmark("nas-bench-999")
    message = str(caught.value)
    assert message.startswith("benchmark: unknown benchmark 'nas-bench-999' (known: ")
    assert "nas-bench-macro" in message
    assert message.endswith("; a plugin adds one through the 'archsearch.benchmarks' entry-point group)")
    with pytest.raises(ArchsearchError, match="^space.kind: unknown space 'hex' .*'archsearch.spaces' entry-point"):
        Study.create(None, SearchConfig(space={"kind": "hex"}, steps=1))


def test_a_registry_is_a_mapping_that_a_decorator_fills():
    registry = Registry("widget", "widgets")

    @registry.register("round")
    def round_widget() -> str:
        return "round"

    assert list(registry) == ["round"] and registry.lookup("round") is round_widget and "square" not in registry
    assert registry.group == "archsearch.widgets" and len(registry) == 1
    with pytest.raises(KeyError):
        registry["square"]


def test_a_test_may_add_a_benchmark_for_a_while(monkeypatch):
    bench = get_benchmark("nas-bench-macro")
    monkeypatch.setitem(TABULAR_BENCHMARKS, "copy", lambda: bench)
    assert get_benchmark("copy") is bench and "copy" in list(TABULAR_BENCHMARKS)
    monkeypatch.undo()
    assert "copy" not in TABULAR_BENCHMARKS


def test_instances_pass_through_and_must_agree(tmp_path):
    space = MLPSpace(max_layers=2)
    with pytest.raises(ArchsearchError, match="^strategy: its search space differs"):
        Study.create(None, get_task("moons"), steps=1, strategy=RandomSearch(space, seed=0))
    with Study.create(None, get_task("moons"), steps=1, space=space, strategy=RandomSearch(space, seed=0)) as study:
        assert study.space is space and study.config["strategy"]["name"] == "random"

def test_the_command_line_sets_folds_and_monitor_and_says_how_children_train(tmp_path, csv_file, capsys):
    given = _cli_config(tmp_path, "--data", str(csv_file), "--target", "label", "--folds", "3", "--monitor", "loss")
    assert given["trainer"] == {"name": "batched", **TrainConfig(folds=3, monitor="loss").to_config()}
    assert given["refit"] is True  # cross-validated: the pick is refit on all the rows
    out = capsys.readouterr().out
    assert "children: batched trainer, 3-fold cross-validated rewards, at most 50 epochs, patience 10, lr 0.01, " \
           "full batch, early stopping on the validation loss" in out
    (tmp_path / "cli.db").unlink()
    plain = _cli_config(tmp_path, "--data", str(csv_file), "--target", "label")
    assert plain["trainer"] == {"name": "batched", **TrainConfig().to_config()} and plain["refit"] is False
