"""Issue 16, point 3: every size, count, rate and seed is bounded before anything starts or is written.

The command line refuses an out-of-bounds flag with one line naming it (exit 2, no study file), and
the constructors refuse the same values from Python or from a study file's config, naming the field.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from archsearch import _limits as limits
from archsearch.cli import build_parser, main
from archsearch.errors import ArchsearchError
from archsearch.evaluation import TrainConfig
from archsearch.execution import ProcessExecutor, RayExecutor, build_executor
from archsearch.space import CNNSpace, CodeSpace, MLPSpace, SearchSpace
from archsearch.strategies import TPE, RandomSearch, RegularizedEvolution, Reinforce
from archsearch.study import build_strategy, child_seed

MACHINE_WORKERS = limits.max_workers()
CORES = limits.available_cores()


def _refused(capsys, *argv: str) -> str:
    """Run the CLI in this process; it must exit 2 with one stderr line, which is returned."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--max-layers", "100000"], ["--max-layers", "at most 64"]),
        (["--max-layers", "65"], ["--max-layers", "at most 64"]),
        (["--workers", str(MACHINE_WORKERS + 1)], ["--workers", f"at most {MACHINE_WORKERS}"]),
        (["--workers", "100000"], ["--workers", f"at most {MACHINE_WORKERS}"]),
        (["--threads", str(CORES + 1)], ["--threads", f"at most {CORES}", "cores"]),
        (["--children-per-step", "100001"], ["--children-per-step", "at most 100000"]),
        (["--steps", "10000001"], ["--steps", "at most 10000000"]),
        (["--batch-size", str(2**20 + 1)], ["--batch-size", "at most 1048576"]),
        (["--max-epochs", "100001"], ["--max-epochs", "at most 100000"]),
        (["--patience", "1000001"], ["--patience", "at most 1000000"]),
        (["--seed", str(2**63)], ["--seed", "at most 9223372036854775807"]),
        (["--split-seed", "-1"], ["--split-seed", "non-negative"]),
        (["--split-seed", str(2**63)], ["--split-seed", "at most"]),
        (["--time-limit", "1e308"], ["--time-limit", "at most 1000000"]),
        (["--time-limit", "inf"], ["--time-limit", "finite"]),
        (["--lr", "11"], ["--lr", "at most 10"]),
        (["--lr", "nan"], ["--lr", "finite"]),
        (["--weight-decay", "inf"], ["--weight-decay", "finite"]),
        (["--controller-lr", "1e300"], ["--controller-lr", "at most 10"]),
        (["--entropy-weight", "nan"], ["--entropy-weight", "finite"]),
        (["--retries", "101"], ["--retries", "at most 100"]),
        (["--curriculum", "2,10000000000"], ["--curriculum", "at most"]),
        (["--curriculum", "100,5"], ["--curriculum", "START must be at most 64"]),
        (["--device", "banana"], ["--device", "cpu, cuda or cuda:N", "banana"]),
        (["--device", "cuda:x"], ["--device", "cuda:N"]),
    ],
)
def test_search_refuses_out_of_bounds_flags(tmp_path, monkeypatch, capsys, flags, needles):
    monkeypatch.chdir(tmp_path)
    line = _refused(capsys, "search", "--study", str(tmp_path / "s.db"), "--quiet", *flags)
    for needle in needles:
        assert needle in line
    assert list(tmp_path.iterdir()) == []


def test_cnn_depth_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    line = _refused(capsys, "search", "--task", "digits", "--max-layers", "17", "--study", str(tmp_path / "s.db"))
    assert line == "archsearch search: error: --max-layers: at most 16 for the cnn space, got 17"
    assert list(tmp_path.iterdir()) == []


def test_unavailable_cuda_is_one_line(tmp_path, monkeypatch, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.chdir(tmp_path)
    line = _refused(capsys, "search", "--device", "cuda:0", "--study", str(tmp_path / "s.db"), "--quiet")
    assert line == (
        "archsearch search: error: trainer.device: 'cuda:0' is not available on this machine (it has no CUDA device)"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["compare", "--benchmark", "nas-bench-macro", "--jobs", str(MACHINE_WORKERS + 1)], ["--jobs", "at most"]),
        (["compare", "--benchmark", "nas-bench-macro", "--seeds", "10001"], ["--seeds", "at most 10000"]),
        (["compare", "--benchmark", "nas-bench-macro", "--budget", "10000001"], ["--budget", "at most 10000000"]),
        (["compare", "--benchmark", "nas-bench-macro", "--children-per-step", "100001"], ["--children-per-step"]),
        (["sample", "--n", "10000001"], ["--n", "at most 10000000"]),
        (["sample", "--seed", str(2**63)], ["--seed", "at most"]),
        (["trials", "s.db", "--top", "1000001"], ["--top", "at most 1000000"]),
        (["report", "s.db", "--top", "1000001"], ["--top", "at most 1000000"]),
        (["resume", "s.db", "--steps", "10000001"], ["--steps", "at most 10000000"]),
        (["resume", "s.db", "--workers", "100000"], ["--workers", "at most"]),
        (["baseline", "--task", "digits", "--threads", str(CORES + 1)], ["--threads", "at most"]),
        (["baseline", "--task", "digits", "--device", "gpu"], ["--device", "gpu"]),
    ],
)
def test_other_commands_refuse_out_of_bounds_flags(tmp_path, monkeypatch, capsys, argv, needles):
    monkeypatch.chdir(tmp_path)
    line = _refused(capsys, *argv)
    for needle in needles:
        assert needle in line
    assert list(tmp_path.iterdir()) == []


def test_flags_at_their_bounds_are_accepted():
    parser = build_parser()
    args = parser.parse_args(
        ["search", "--seed", str(2**63 - 1), "--split-seed", "0", "--max-layers", "64", "--steps", "10000000"]
        + ["--children-per-step", "100000", "--lr", "10", "--entropy-weight", "0", "--weight-decay", "-0"]
        + ["--threads", str(CORES), "--workers", str(MACHINE_WORKERS), "--retries", "100", "--device", "cuda:1"]
    )
    assert (args.seed, args.max_layers, args.lr) == (2**63 - 1, 64, 10.0)
    assert (args.threads, args.workers) == (CORES, MACHINE_WORKERS)
    assert math.copysign(1.0, args.weight_decay) == 1.0  # -0 is read as 0
    # the largest seed is one the study's child seeds and a controller accept
    assert 0 <= child_seed(2**63 - 1, 10**7, 10**5) < 2**32
    assert Reinforce(MLPSpace(), seed=2**63 - 1).seed == 2**63 - 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"kind": "mlp", "max_layers": 100000}, "space.max_layers: must be at most 64, got 100000"),
        ({"kind": "mlp", "max_layers": "5"}, "space.max_layers: must be an integer, got '5'"),
        ({"kind": "mlp", "max_layers": 5.5}, "space.max_layers: must be an integer, got 5.5"),
        ({"kind": "mlp", "min_layers": True}, "space.min_layers: must be an integer, got True"),
        ({"kind": "mlp", "units": [1, 10**9]}, "space.units: must be at most 4096, got 1000000000"),
        ({"kind": "mlp", "units": list(range(1, 66))}, "space.units: at most 64 choices, got 65"),
        ({"kind": "mlp", "units": 7}, "space.units: need a list of distinct positive integers, got 7"),
        ({"kind": "cnn", "max_layers": 17}, "space.max_layers: must be at most 16, got 17"),
        ({"kind": "cnn", "filters": [8, 10**6]}, "space.filters: must be at most 1024, got 1000000"),
        ({"kind": "cnn", "kernels": [3, 99]}, "space.kernels: must be at most 15, got 99"),
        ({"kind": "cnn", "strides": [1, 64]}, "space.strides: must be at most 8, got 64"),
        ({"kind": "cnn", "dropouts": [0.0] + [i / 100 for i in range(1, 66)]}, "space.dropouts: at most 64 choices"),
        ({"kind": "code", "benchmark": "b", "length": 65, "choices": "01"}, "space.length: must be at most 64, got 65"),
        ({"kind": "code", "benchmark": "b", "length": 4, "choices": 3}, "space.choices: need a list of single"),
    ],
)
def test_space_configs_are_bounded(config, message):
    with pytest.raises(ArchsearchError) as caught:
        SearchSpace.from_config(config)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_space_sizes_are_exact_integers_and_sampling_never_overflows():
    mlp = MLPSpace(units=range(1, 65), max_layers=64)
    assert mlp.size() == sum(128**n for n in range(1, 65))
    assert isinstance(mlp.size(), int) and mlp.size() > 2**448
    rng = np.random.default_rng(0)
    for _ in range(5):
        arch = mlp.sample(rng)
        assert mlp.contains(arch)
    cnn = CNNSpace(filters=range(1, 65), kernels=range(1, 16), strides=range(1, 9), max_layers=16)
    per_layer = [64 * 15 * 8 * 2 * 2 * (2 ** (i - 1) if i >= 2 else 1) for i in range(16)]
    assert cnn.size() == sum(math.prod(per_layer[:n]) for n in range(1, 17))
    arch = cnn.sample(rng)
    assert cnn.contains(arch)
    assert len(arch.layers) == 16  # the deepest networks outnumber all others by far
    assert CodeSpace("b", 64, "0123").size() == 4**64


def test_depth_shares_are_the_float_ones_for_default_spaces():
    """Exact shares change nothing where the old float weights were exact: default spaces sample as before."""
    from archsearch.space._mlp import _shares

    weights = np.array([12.0**n for n in range(1, 6)])
    assert np.array_equal(_shares([12**n for n in range(1, 6)]), weights / weights.sum())
    counts = CNNSpace()._per_depth()
    floats = np.array(counts, dtype=np.float64)
    assert np.array_equal(_shares(counts), floats / floats.sum())


def test_deepest_spaces_build_a_controller():
    for space in (MLPSpace(max_layers=64), CNNSpace(max_layers=16)):
        strategy = Reinforce(space, seed=0)
        archs = strategy.ask(2)
        assert all(space.contains(a) for a in archs)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lr": float("inf")}, "strategy.lr: must be a finite number"),
        ({"lr": float("nan")}, "strategy.lr: must be a finite number"),
        ({"lr": 11}, "strategy.lr: must be at most 10, got 11"),
        ({"lr": "0.1"}, "strategy.lr: must be a number, got '0.1'"),
        ({"entropy_weight": float("nan")}, "strategy.entropy_weight: must be a finite number"),
        ({"entropy_weight": 1e9}, "strategy.entropy_weight: must be at most 10"),
        ({"baseline_decay": float("nan")}, "strategy.baseline_decay: must be a finite number"),
        ({"hidden_size": 10**6}, "strategy.hidden_size: must be at most 1024, got 1000000"),
        ({"num_layers": 100}, "strategy.num_layers: must be at most 8, got 100"),
        ({"rank_window": 10**9}, "strategy.rank_window: must be at most 1000000"),
        ({"init_range": float("inf")}, "strategy.init_range: must be a finite number"),
        ({"device": "banana"}, "strategy.device: must be cpu, cuda or cuda:N, got 'banana'"),
        ({"seed": -1}, "strategy.seed: must be at least 0, got -1"),
        ({"seed": 2**63}, "strategy.seed: must be at most 9223372036854775807"),
        ({"seed": 1.5}, "strategy.seed: must be an integer, got 1.5"),
        ({"curriculum": (1, 10**10)}, "strategy.curriculum: every and by must be at most 1000000000"),
        ({"curriculum": 5}, "strategy.curriculum: must be (start, every)"),
    ],
)
def test_reinforce_settings_are_bounded(options, message):
    with pytest.raises(ArchsearchError) as caught:
        Reinforce(MLPSpace(), **options)
    assert str(caught.value).startswith(message)


def test_other_strategies_and_study_configs_are_bounded():
    space = CodeSpace("b", 3, "01")
    with pytest.raises(ArchsearchError, match=r"^strategy\.population_size: must be at most 1000000"):
        RegularizedEvolution(space, population_size=10**7)
    with pytest.raises(ArchsearchError, match=r"^strategy\.n_startup_trials: must be at least 0"):
        TPE(space, n_startup_trials=-1)
    with pytest.raises(ArchsearchError, match=r"^strategy\.seed: must be at most"):
        RandomSearch(space, seed=2**64)
    with pytest.raises(ArchsearchError, match=r"^strategy\.hidden_size: must be at most 1024"):
        build_strategy({"name": "reinforce", "seed": 0, "hidden_size": 200000}, MLPSpace())
    with pytest.raises(ArchsearchError, match=r"^strategy\.seed: must be an integer"):
        build_strategy({"name": "evolution", "seed": "7"}, space)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_epochs": 10**6}, "trainer.max_epochs: must be at most 100000, got 1000000"),
        ({"max_epochs": True}, "trainer.max_epochs: must be an integer, got True"),
        ({"patience": 0}, "trainer.patience: must be at least 1, got 0"),
        ({"patience": 10**6 + 1}, "trainer.patience: must be at most 1000000"),
        ({"batch_size": 10**9}, "trainer.batch_size: must be at most 1048576"),
        ({"lr": float("inf")}, "trainer.lr: must be a finite number"),
        ({"lr": 0}, "trainer.lr: must be > 0, got 0"),
        ({"lr": 100.0}, "trainer.lr: must be at most 10, got 100.0"),
        ({"weight_decay": float("nan")}, "trainer.weight_decay: must be a finite number"),
        ({"reward_power": float("inf")}, "trainer.reward_power: must be a finite number"),
        ({"reward_window": 10**6}, "trainer.reward_window: must be at most 100000"),
        ({"threads": 257}, "trainer.threads: must be at most 256, got 257"),
        ({"time_limit": 1e308}, "trainer.time_limit: must be at most 1000000"),
        ({"device": "gpu"}, "trainer.device: must be cpu, cuda or cuda:N, got 'gpu'"),
        ({"device": None}, "trainer.device: must be cpu, cuda or cuda:N, got None"),
    ],
)
def test_train_config_is_bounded(settings, message):
    with pytest.raises(ArchsearchError) as caught:
        TrainConfig.from_config(settings)
    assert str(caught.value).startswith(message)


def test_train_config_keeps_valid_values_as_given():
    config = TrainConfig(max_epochs=np.int64(7), lr=1, threads=256, time_limit=10**6, batch_size=2**20)
    assert TrainConfig(max_epochs=10**5, patience=10**5 + 1).patience == 10**5 + 1  # a refit's settings
    assert config.to_config()["max_epochs"] == 7 and type(config.max_epochs) is int  # JSON-ready
    assert config.to_config()["lr"] == 1 and type(config.lr) is int  # a stored config keeps its bytes


def test_cuda_device_needs_cuda():
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        with pytest.raises(ArchsearchError, match=rf"^trainer\.device: 'cuda:{count}' is not available"):
            TrainConfig(device=f"cuda:{count}")
    else:
        with pytest.raises(ArchsearchError, match=r"^trainer\.device: 'cuda' is not available on this machine"):
            TrainConfig(device="cuda")
        with pytest.raises(ArchsearchError, match=r"^strategy\.device: 'cuda:0' is not available"):
            Reinforce(MLPSpace(), device="cuda:0")


def test_executors_are_bounded_by_the_machine():
    with pytest.raises(ArchsearchError, match=rf"^executor\.workers: must be at most {MACHINE_WORKERS} on this"):
        ProcessExecutor(workers=MACHINE_WORKERS + 1)
    assert ProcessExecutor(workers=MACHINE_WORKERS).workers == MACHINE_WORKERS
    with pytest.raises(ArchsearchError, match=r"^executor\.workers: must be at most 256, got 1000000"):
        build_executor({"name": "process", "workers": 10**6})
    with pytest.raises(ArchsearchError, match=r"^executor\.retries: must be at most 100, got 101"):
        build_executor({"name": "inline", "retries": 101})
    with pytest.raises(ArchsearchError, match=r"^executor\.workers: must be at most .* on this machine"):
        RayExecutor(workers=MACHINE_WORKERS + 1)  # a local Ray instance starts its workers here
    assert RayExecutor(workers=MACHINE_WORKERS + 1, address="auto").requested_workers == MACHINE_WORKERS + 1
    with pytest.raises(ArchsearchError, match=r"^executor\.workers: must be at most 256"):
        RayExecutor(workers=257, address="auto")
