"""The CNN space: every member builds and runs, encodings round-trip, skips follow the rules,
and the controller's anchor-point attention is a proper, learnable distribution."""

import math

import numpy as np
import pytest
import torch

from archsearch.errors import ArchsearchError
from archsearch.space import Architecture, CNNArchitecture, CNNLayer, CNNSpace, SearchSpace
from archsearch.strategies import TPE, RandomSearch, RegularizedEvolution, Reinforce, outcomes

TINY = CNNSpace(filters=(4, 8), kernels=(3,), strides=(1,), pools=("none",), dropouts=(0.0,), max_layers=4)


def _runs(arch: CNNArchitecture, channels: int = 1, classes: int = 10) -> None:
    """Builds, has num_params parameters, and runs forward and backward on 28x28 and 8x8 images."""
    model = arch.build(channels, classes, torch.Generator().manual_seed(0))
    assert sum(p.numel() for p in model.parameters()) == arch.num_params(channels, classes), arch
    for side in (28, 8):
        out = model(torch.randn(1, channels, side, side))
        assert out.shape == (1, classes), (arch, side)
        out.sum().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters()), arch
        model.zero_grad()


def _resizing(arch: CNNArchitecture) -> tuple:
    """What decides the tensor shapes a member's forward pass goes through: per layer, how much it
    shrinks the image (a stride of 2 and a 2x2 max pool each halve a side) and which layers it reads."""
    return tuple((layer.stride * (2 if layer.pool == "max" else 1), layer.skips) for layer in arch.layers)


def _one_per_resizing(archs: list[CNNArchitecture], n: int | None = None) -> list[CNNArchitecture]:
    """The first member of each distinct :func:`_resizing`, at most ``n`` of them."""
    kept: dict[tuple, CNNArchitecture] = {}
    for arch in archs:
        kept.setdefault(_resizing(arch), arch)
    return list(kept.values())[:n]


@pytest.mark.slow
def test_every_sampled_member_builds_and_runs_on_28x28_and_8x8():
    """Members with skips from the space's sampler (mostly 4 layers: most members have 4) and from a
    controller (all depths), one per way of resizing: 300 of the sampler's (its first 500 members hold
    fewer distinct ones) and those among the controller's first 500; 100 members without skips."""
    space = CNNSpace()  # the default: up to 4 layers, kernels 3 and 5, strides 1 and 2, both pools
    rng = np.random.default_rng(0)
    sampled = _one_per_resizing([space.sample(rng) for _ in range(1000)], 300)
    controlled = _one_per_resizing(Reinforce(space, seed=0, init_range=1.0).ask(500))
    assert len(sampled) == 300 and len(controlled) > 150
    archs = sampled + controlled
    no_skips = CNNSpace(skips=False, kernels=(1, 3, 7), strides=(1, 3), max_layers=5)
    archs += [no_skips.sample(rng) for _ in range(100)]
    assert sum(a.uses_skips for a in archs) > 300
    assert not any(a.uses_skips for a in archs[-100:])
    assert {len(a.layers) for a in controlled} == {1, 2, 3, 4}
    torch.manual_seed(0)
    for arch in archs:
        _runs(arch)


def test_extremes_run_on_a_single_pixel():
    """Stride 2 and pooling on every layer shrink 8x8 to one pixel; padding keeps it there."""
    layer = CNNLayer(8, 7, 2, "max", 0.5)
    arch = CNNArchitecture((layer, layer, layer._replace(skips=(0,)), layer._replace(skips=(0, 1))))
    _runs(arch, channels=3)
    assert arch.build(3, 2)(torch.randn(2, 3, 1, 1)).shape == (2, 2)


def test_encode_decode_parse_and_json_round_trip():
    rng = np.random.default_rng(1)
    for space in (CNNSpace(), CNNSpace(skips=False, max_layers=3)):
        for _ in range(200):
            arch = space.sample(rng)
            assert space.decode(space.encode(arch)) == arch
            assert CNNArchitecture.parse(str(arch)) == arch
            assert Architecture.from_json(arch.to_json()) == arch
            assert arch.hash == Architecture.from_dict(arch.to_dict()).hash


def test_batch_norm_is_a_setting_of_the_space_written_in_each_layer():
    """On by default; ``-bn`` in the text; without it a layer has a conv bias instead (and the
    JSON of such a layer is what it was before the setting existed, so stored hashes hold)."""
    rng = np.random.default_rng(4)
    with_bn, without = CNNSpace().sample(rng), CNNSpace(batch_norm=False).sample(rng)
    assert all(layer.batch_norm for layer in with_bn.layers) and "-bn" in str(with_bn)
    assert not any(layer.batch_norm for layer in without.layers) and "bn" not in str(without)
    arch = CNNArchitecture.parse("16c3-bn-max/8c5s2-d0.25")
    assert [layer.batch_norm for layer in arch.layers] == [True, False]
    assert str(arch) == "16c3-bn-max/8c5s2-d0.25"
    assert arch.num_params(1, 10) == (9 * 16 + 2 * 16) + (16 * 25 + 1) * 8 + (8 * 16 + 1) * 10
    _runs(arch)
    plain = CNNArchitecture.parse("8c3")
    assert plain.to_dict() == {"kind": "cnn", "layers": [
        {"filters": 8, "kernel": 3, "stride": 1, "pool": "none", "dropout": 0.0, "skips": []}]}  # fmt: skip
    with pytest.raises(ArchsearchError, match="not in CNNSpace"):
        CNNSpace().encode(plain)
    with pytest.raises(ArchsearchError, match="layer 0 is malformed"):
        CNNArchitecture(((8, 3, 1, "none", 0.0, (), "yes"),))
    # a study written before the setting existed searched without it, and reopens that way
    old = {key: value for key, value in CNNSpace().to_config().items() if key != "batch_norm"}
    assert SearchSpace.from_config(old).batch_norm is False
    assert SearchSpace.from_config(CNNSpace().to_config()) == CNNSpace()


def test_batch_norm_trains_on_a_single_image_shrunk_to_one_pixel():
    """PyTorch refuses to normalize one value per channel while training; a child must not fail."""
    arch = CNNArchitecture.parse("4c3s2-bn-max/4c3s2-bn-max")
    model = arch.build(1, 3, torch.Generator().manual_seed(0))
    model.train()
    out = model(torch.randn(1, 1, 4, 4))
    out.sum().backward()
    assert torch.isfinite(out).all() and all(p.grad is not None for p in model.parameters())
    assert int(model.norms[1].num_batches_tracked) == 0 and int(model.norms[0].num_batches_tracked) == 1


def test_skips_must_come_from_layers_before_the_previous_one():
    base = CNNLayer(8, 3)
    with pytest.raises(ArchsearchError, match="layer 2: skips \\[1\\]"):
        CNNArchitecture((base, base, base._replace(skips=(1,))))
    with pytest.raises(ArchsearchError, match="layer 1"):
        CNNArchitecture((base, base._replace(skips=(0,))))
    with pytest.raises(ArchsearchError, match="does not allow"):
        CNNSpace(skips=False, batch_norm=False).encode(CNNArchitecture((base, base, base._replace(skips=(0,)))))
    with pytest.raises(ArchsearchError, match="dropout"):
        CNNArchitecture((base._replace(dropout=1.0),))
    with pytest.raises(ArchsearchError, match="space.kernels"):
        CNNSpace(kernels=(3, 3))
    with pytest.raises(ArchsearchError, match="expected e.g."):
        CNNArchitecture.parse("32x5")


def test_size_matches_enumeration_and_sampling_is_uniform():
    members = list(TINY.enumerate())
    assert len(members) == TINY.size() == 2 + 4 + 8 * 2 + 16 * 2 * 4
    assert len({m.hash for m in members}) == len(members)
    rng = np.random.default_rng(2)
    counts = np.zeros(len(members))
    index = {m: i for i, m in enumerate(members)}
    for _ in range(15_000):
        counts[index[TINY.sample(rng)]] += 1
    assert np.abs(counts / counts.sum() - 1 / len(members)).max() < 0.004


def test_mutation_changes_one_thing_and_stays_in_the_space():
    space = CNNSpace(max_layers=5)
    rng = np.random.default_rng(3)
    arch = space.sample(rng)
    skip_moves = 0
    for _ in range(500):
        child = space.mutate(arch, rng)
        assert child != arch and space.contains(child)
        if len(child.layers) == len(arch.layers) and [c.skips for c in child.layers] != [a.skips for a in arch.layers]:
            skip_moves += 1
            assert sum(len(set(c.skips) ^ set(a.skips)) for c, a in zip(child.layers, arch.layers)) == 1
        arch = child
    assert skip_moves > 20


@pytest.mark.parametrize("strategy", [RandomSearch, RegularizedEvolution, TPE])
def test_other_strategies_search_the_cnn_space_with_skips(strategy):
    search = strategy(CNNSpace(), seed=0)
    seen = []
    for _ in range(10):
        archs = search.ask(8)
        seen += archs
        search.tell(outcomes(archs, [sum(len(layer.skips) for layer in a.layers) / 3 for a in archs]))
    assert all(CNNSpace().contains(a) for a in seen)
    assert sum(a.uses_skips for a in seen) > 10


def test_controller_probabilities_of_all_members_sum_to_one():
    """Bernoulli skips and softmax decisions together are one proper distribution over the space."""
    strategy = Reinforce(TINY, seed=3, init_range=0.5)
    members = list(TINY.enumerate())
    with torch.no_grad():
        log_prob, _ = strategy.controller.log_probs(strategy._tokens(members))
    assert math.isclose(float(log_prob.exp().sum()), 1.0, rel_tol=1e-5)
    archs = strategy.ask(20_000)  # and the sampler draws from that distribution
    index = {m: i for i, m in enumerate(members)}
    observed = np.bincount([index[a] for a in archs], minlength=len(members)) / len(archs)
    assert np.abs(observed - log_prob.exp().numpy()).max() < 0.01


def test_anchor_attention_receives_gradients():
    strategy = Reinforce(CNNSpace(), seed=0)
    controller = strategy.controller
    log_prob, entropy = controller.log_probs(strategy._tokens(strategy.ask(30)))
    (log_prob.sum() + entropy.sum()).backward()
    for module in (controller.attend_prev, controller.attend_curr, controller.attend_v):
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0


def test_controller_learns_to_use_skips_when_they_pay():
    """Reward: the fraction of allowed skip connections a 4-layer child uses (0 for shallower ones)."""
    space = CNNSpace()
    strategy = Reinforce(space, seed=0)

    def used(arch: CNNArchitecture) -> float:
        return sum(len(layer.skips) for layer in arch.layers) / 3 if len(arch.layers) == 4 else 0.0

    first = [used(a) for a in strategy.ask(300)]
    for _ in range(80):  # from ~0.25 it reaches ~0.98 in 50 steps (seeds 0-2)
        archs = strategy.ask(15)
        strategy.tell(outcomes(archs, [used(a) for a in archs]))
    last = [used(a) for a in strategy.ask(300)]
    assert np.mean(first) < 0.4 and np.mean(last) > 0.85, (np.mean(first), np.mean(last))
