import dataclasses
import json

import pytest
import torch

from archsearch import ArchsearchError
from archsearch.space import Architecture, MLPArchitecture


def test_short_readable_form_and_parse_round_trip():
    arch = MLPArchitecture(((8, "tanh"), (4, "relu"), (4, "relu")))
    assert str(arch) == "8-tanh/4-relu/4-relu"
    assert MLPArchitecture.parse(str(arch)) == arch


def test_json_round_trip_and_kind_dispatch():
    arch = MLPArchitecture(((32, "relu"), (1, "tanh")))
    text = arch.to_json()
    assert json.loads(text) == {
        "kind": "mlp",
        "layers": [{"units": 32, "activation": "relu"}, {"units": 1, "activation": "tanh"}],
    }
    assert Architecture.from_json(text) == arch
    assert Architecture.from_dict(arch.to_dict()) == arch


def test_is_immutable_and_hashable():
    arch = MLPArchitecture(((8, "tanh"),))
    with pytest.raises(dataclasses.FrozenInstanceError):
        arch.layers = ()  # type: ignore[misc]
    assert len({arch, MLPArchitecture(((8, "tanh"),))}) == 1


def test_canonical_hash_is_stable_and_distinguishes():
    a = MLPArchitecture(((8, "tanh"), (4, "relu")))
    assert a.hash == MLPArchitecture.parse("8-tanh/4-relu").hash
    assert len(a.hash) == 16
    assert a.hash != MLPArchitecture.parse("8-relu/4-tanh").hash
    assert a.hash != MLPArchitecture.parse("8-tanh/4-relu/4-relu").hash


@pytest.mark.parametrize(
    "text, message",
    [
        ("not json", "not valid JSON"),
        ('{"layers": []}', "'kind'"),
        ('{"kind": "transformer"}', "unknown kind 'transformer'"),
        ('{"kind": "mlp", "layers": [{"units": 0, "activation": "relu"}]}', "units must be >= 1"),
        ('{"kind": "mlp", "layers": [{"units": 3, "activation": "swish"}]}', "unknown activation 'swish'"),
        ('{"kind": "mlp", "layers": [{"units": 3}]}', "malformed"),
    ],
)
def test_bad_json_is_one_clear_error(text, message):
    with pytest.raises(ArchsearchError, match=message):
        Architecture.from_json(text)


def test_build_has_expected_shapes_and_parameter_count():
    arch = MLPArchitecture.parse("8-tanh/4-relu/4-relu")
    model = arch.build(2, 2)
    assert model(torch.zeros(5, 2)).shape == (5, 2)
    n = sum(p.numel() for p in model.parameters())
    assert n == arch.num_params(2, 2) == (2 * 8 + 8) + (8 * 4 + 4) + (4 * 4 + 4) + (4 * 2 + 2)
    assert [type(m).__name__ for m in model] == ["Linear", "Tanh", "Linear", "ReLU", "Linear", "ReLU", "Linear"]


def test_build_with_generator_is_deterministic_and_uses_linear_default_bounds():
    arch = MLPArchitecture.parse("32-relu/1-tanh")
    first = arch.build(3, 2, generator=torch.Generator().manual_seed(7))
    second = arch.build(3, 2, generator=torch.Generator().manual_seed(7))
    other = arch.build(3, 2, generator=torch.Generator().manual_seed(8))
    for a, b, c in zip(first.parameters(), second.parameters(), other.parameters()):
        assert torch.equal(a, b)
        assert not torch.equal(a, c)
    first_linear = first[0]
    bound = 1 / 3**0.5
    assert first_linear.weight.abs().max() <= bound
    assert first_linear.weight.abs().max() > 0.8 * bound
