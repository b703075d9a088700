import collections

import numpy as np
import pytest

from archsearch import ArchsearchError
from archsearch.space import MLPArchitecture, MLPSpace, SearchSpace


def test_default_space_is_the_seed_papers():
    space = MLPSpace()
    assert space.units == (1, 2, 4, 8, 16, 32)
    assert space.activations == ("relu", "tanh")
    assert space.max_layers == 5 and space.min_layers == 1
    assert space.size() == sum(12**n for n in range(1, 6)) == 271_452


def test_schedule_alternates_units_and_activation_with_eos_after_min_layers():
    space = MLPSpace(max_layers=3, min_layers=2)
    assert [(s.decision, s.eos) for s in space.slots] == [
        (0, False),
        (1, False),
        (0, False),
        (1, False),
        (0, True),
        (1, False),
    ]


def test_enumerate_matches_size_and_every_member_round_trips(tiny_space):
    members = list(tiny_space.enumerate())
    assert len(members) == tiny_space.size() == 12
    assert len({m.hash for m in members}) == 12
    for arch in members:
        assert tiny_space.decode(tiny_space.encode(arch)) == arch


def test_encode_ends_short_networks_with_eos(space):
    arch = MLPArchitecture.parse("8-tanh/4-relu")
    assert space.encode(arch) == [3, 1, 2, 0, 6]
    assert space.encode(MLPArchitecture.parse("1-relu/1-relu/1-relu/1-relu/1-relu")) == [0, 0] * 5


@pytest.mark.parametrize(
    "tokens, message",
    [
        ([6], "not valid for 'units'"),
        ([3, 1, 6, 0], "continue after EOS"),
        ([3, 2], "not valid for 'activation'"),
        ([3, 1, 2], "inside a layer"),
        ([0, 0] * 6, "exceed the schedule"),
    ],
)
def test_decode_refuses_invalid_token_sequences(space, tokens, message):
    with pytest.raises(ArchsearchError, match=message):
        space.decode(tokens)


def test_members_and_non_members(space):
    assert space.contains(MLPArchitecture.parse("32-tanh"))
    assert not space.contains(MLPArchitecture.parse("3-tanh"))
    assert not space.contains(MLPArchitecture.parse("/".join(["8-relu"] * 6)))
    with pytest.raises(ArchsearchError, match="not in"):
        space.validate(MLPArchitecture.parse("64-relu"))


def test_sample_is_uniform_over_members(tiny_space):
    rng = np.random.default_rng(0)
    counts = collections.Counter(str(tiny_space.sample(rng)) for _ in range(12_000))
    assert len(counts) == 12
    # 1000 expected per member; a binomial standard deviation is ~29
    assert all(850 < c < 1150 for c in counts.values()), counts


def test_sample_depths_follow_member_counts(space):
    rng = np.random.default_rng(1)
    depths = collections.Counter(len(space.sample(rng).layers) for _ in range(5000))
    share_of_depth_5 = 12**5 / space.size()
    assert abs(depths[5] / 5000 - share_of_depth_5) < 0.02


def test_mutate_changes_exactly_one_decision(space):
    rng = np.random.default_rng(2)
    arch = MLPArchitecture.parse("8-tanh/4-relu/4-relu")
    kinds = collections.Counter()
    for _ in range(300):
        child = space.mutate(arch, rng)
        assert space.contains(child) and child != arch
        if len(child.layers) == len(arch.layers):
            changed = sum(a != b for a, b in zip(child.layers, arch.layers))
            diff = [(a, b) for a, b in zip(child.layers, arch.layers) if a != b][0]
            assert changed == 1
            assert (diff[0].units == diff[1].units) != (diff[0].activation == diff[1].activation)
            kinds["edit"] += 1
        else:
            assert abs(len(child.layers) - len(arch.layers)) == 1
            kinds["depth"] += 1
    assert kinds["edit"] > 100 and kinds["depth"] > 50


def test_mutate_of_a_single_member_space_is_an_error():
    space = MLPSpace(units=(4,), activations=("relu",), max_layers=1)
    with pytest.raises(ArchsearchError, match="single member"):
        space.mutate(MLPArchitecture.parse("4-relu"), np.random.default_rng(0))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"units": ()}, "space.units"),
        ({"units": (4, 4)}, "space.units"),
        ({"units": (0, 4)}, "space.units"),
        ({"activations": ("relu", "swish")}, "space.activations"),
        ({"min_layers": 0}, "space.min_layers"),
        ({"max_layers": 2, "min_layers": 3}, "space.max_layers"),
    ],
)
def test_bad_constructor_arguments_name_the_field(kwargs, field):
    with pytest.raises(ArchsearchError, match=field):
        MLPSpace(**kwargs)


def test_config_round_trip():
    space = MLPSpace(units=(2, 8), max_layers=3)
    again = SearchSpace.from_config(space.to_config())
    assert again == space and isinstance(again, MLPSpace)
    with pytest.raises(ArchsearchError, match="unknown space"):
        SearchSpace.from_config({"kind": "graph"})
