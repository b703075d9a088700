"""The settings space: an MLP with the optimizer, learning rate and batch size it trains with, searched
together; members train as they say, every strategy proposes members, and bad settings are one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archsearch import ArchsearchError, SerialTrainer, Study, TrainConfig
from archsearch.config import SearchConfig, build_strategy
from archsearch.space import OPTIMIZERS, Architecture, MLPArchitecture, SearchSpace, SettingsArchitecture, SettingsSpace

SMALL = SettingsSpace(optimizers=["sgd", "adam"], lrs=[0.01, 0.1], batch_sizes=[16, 700], units=[2, 4],
                      activations=["tanh"], max_layers=2)  # fmt: skip


def member(layers="4-tanh", optimizer="sgd", lr=0.1, batch=16) -> SettingsArchitecture:
    return SettingsArchitecture(MLPArchitecture.parse(layers), optimizer, lr, batch)


def test_the_space_is_the_settings_times_the_layouts():
    members = list(SMALL.enumerate())
    assert len(members) == len(set(members)) == SMALL.size() == 2 * 2 * 2 * (2 + 4)
    assert SettingsSpace().size() == len(OPTIMIZERS) * 5 * 5 * sum(30**layers for layers in range(1, 6)) == 3_770_689_500


def test_members_encode_decode_mutate_and_round_trip():
    space, rng = SettingsSpace(), np.random.default_rng(0)
    for _ in range(200):
        arch = space.sample(rng)
        assert space.decode(space.encode(arch)) == arch
        assert Architecture.from_dict(arch.to_dict()) == arch
        mutated = space.mutate(arch, rng)
        assert space.contains(mutated) and mutated != arch
    assert SearchSpace.from_config(space.to_config()) == space


def test_every_strategy_proposes_members():
    for name in ("reinforce", "evolution", "random", "tpe"):
        proposed = build_strategy({"name": name, "seed": 0}, SMALL).ask(4)
        assert all(SMALL.contains(arch) for arch in proposed)


def test_a_member_trains_with_its_own_optimizer_learning_rate_and_batch_size(moons):
    arch = member(optimizer="rmsprop", lr=0.003, batch=100)
    optimizer = arch.optimizer([torch.nn.Parameter(torch.zeros(2))], lr=0.5, weight_decay=0.0, seed=0)
    assert isinstance(optimizer, torch.optim.RMSprop) and optimizer.param_groups[0]["lr"] == 0.003
    steps = []

    class Counting(SettingsArchitecture):
        def optimizer(self, params, lr, weight_decay, seed):
            inner = super().optimizer(params, lr, weight_decay, seed)
            original = inner.step
            inner.step = lambda *a, **k: (steps.append(1), original(*a, **k))[1]
            return inner

    counting = Counting(arch.network, arch.optimizer_name, arch.lr, arch.batch)
    result = SerialTrainer(moons, TrainConfig(max_epochs=2, patience=5, lr=0.5)).train(counting, 0)
    assert result.status == "ok" and len(steps) == 2 * 7  # 700 training rows in batches of 100, two epochs


def test_the_same_network_trained_otherwise_is_another_architecture(moons):
    trainer = SerialTrainer(moons, TrainConfig(max_epochs=3))
    results = {(o, b): trainer.train(member(optimizer=o, batch=b), 0) for o in ("sgd", "adam") for b in (16, 700)}
    assert len({tuple(r.train_loss) for r in results.values()}) == 4
    assert len({member(optimizer=o, batch=b).hash for o, b in results}) == 4


def test_a_settings_search_resumes_and_records_its_members(tmp_path, moons):
    config = SearchConfig(task=moons, space=SMALL, strategy="tpe", steps=3, children_per_step=3, seed=1,
                          evaluator=SerialTrainer(moons, TrainConfig(max_epochs=2)))  # fmt: skip
    with Study.create(tmp_path / "s.db", config) as study:
        study.run(progress=False)
    with Study.open(tmp_path / "s.db") as study:
        trials = study.trials()
        assert len(trials) == 9 and all(isinstance(t.architecture, SettingsArchitecture) for t in trials)
        assert " lr=" in str(study.best().architecture)


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: SettingsSpace(optimizers=["lbfgs"]), "space.optimizers: unknown 'lbfgs'"),
        (lambda: SettingsSpace(lrs=[0.0]), "space.lrs: must be > 0"),
        (lambda: SettingsSpace(batch_sizes=[16, 16]), "space.batch_sizes: need distinct values"),
        (lambda: member(optimizer="magic"), "unknown optimizer 'magic'"),
        (lambda: member(lr=float("nan")), "architecture.lr: must be a finite number"),
        (lambda: member(batch=0), "architecture.batch_size: must be at least 1"),
        (lambda: Architecture.from_dict({"kind": "settings", "layers": []}), "no 'batch_size'"),
        (lambda: SMALL.encode(member(lr=0.5)), "its training settings are not in"),
    ],
)
def test_bad_settings_are_one_line(build, needle):
    with pytest.raises(ArchsearchError, match=needle):
        build()


def test_a_space_given_whole_trains_serially_and_refuses_the_batched_trainer(moons):
    assert SearchConfig(task=moons, space=SMALL).build().evaluator.name == "serial"
    with pytest.raises(ArchsearchError, match="batched: trains MLP children with Adam only; the settings space"):
        SearchConfig(task=moons, space=SMALL, evaluator="batched").build()
