"""The supernet against the plain networks it shares weights for: every child computed through it
is the stand-alone child loaded with the weights ``extract`` returns; gradients and running
statistics reach only the path; initialization and bounds are as documented."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from archsearch import ArchsearchError
from archsearch.evaluation import SHARINGS, Supernet, build_supernet
from archsearch.evaluation._supernet import MAX_SUPERNET_PARAMS
from archsearch.space import CNNArchitecture, CNNSpace, CodeSpace, MLPArchitecture, MLPSpace

SMALL_CNN = CNNSpace(filters=(2, 4), kernels=(1, 3), strides=(1, 2), dropouts=(0.0,), max_layers=4)


def _subset(options, size=3):
    return st.lists(st.sampled_from(options), min_size=1, max_size=size, unique=True)


@st.composite
def cnn_cases(draw):
    """A small CNN space, one of its members, the image's channels and side, and a sharing."""
    max_layers = draw(st.integers(1, 5))
    space = CNNSpace(
        filters=draw(_subset([1, 2, 3, 5, 8])),
        kernels=draw(_subset([1, 3, 5])),
        strides=draw(_subset([1, 2, 3])),
        pools=draw(_subset(["none", "max"], 2)),
        dropouts=draw(_subset([0.0, 0.25], 2)),
        max_layers=max_layers,
        min_layers=draw(st.integers(1, max_layers)),
        skips=draw(st.booleans()),
        batch_norm=draw(st.booleans()),
    )
    arch = space.sample(np.random.default_rng(draw(st.integers(0, 2**32 - 1))))
    channels, side = draw(st.sampled_from([1, 3])), draw(st.sampled_from([1, 5, 7, 28]))
    return space, arch, channels, side, draw(st.sampled_from(SHARINGS))


@st.composite
def mlp_cases(draw):
    max_layers = draw(st.integers(1, 6))
    space = MLPSpace(
        units=draw(_subset([1, 2, 3, 8, 16], 4)),
        activations=draw(_subset(["relu", "tanh"], 2)),
        max_layers=max_layers,
        min_layers=draw(st.integers(1, max_layers)),
    )
    arch = space.sample(np.random.default_rng(draw(st.integers(0, 2**32 - 1))))
    return space, arch, draw(st.integers(1, 5)), draw(st.integers(1, 4)), draw(st.sampled_from(SHARINGS))


def _standalone(supernet: Supernet, arch):
    """The child as ``arch.build`` makes it, loaded with the supernet's weights for it."""
    model = arch.build(supernet.in_features, supernet.out_features)
    state = supernet.extract(arch)
    reference = model.state_dict()
    assert list(state) == list(reference)
    assert all(state[k].shape == reference[k].shape and state[k].dtype == reference[k].dtype for k in state)
    model.load_state_dict(state)
    return model


def _same_child(supernet: Supernet, arch, x: torch.Tensor) -> None:
    """Eval mode: equal logits. Train mode (where nothing drops out): equal logits and equal running
    statistics after one batch, so batch normalization trains alike."""
    supernet.train()
    supernet(x, arch)  # running statistics away from their initial values
    model = _standalone(supernet, arch)
    supernet.eval(), model.eval()
    torch.testing.assert_close(supernet(x, arch), model(x), rtol=1e-5, atol=1e-6)
    if not any(getattr(layer, "dropout", 0.0) for layer in arch.layers):
        supernet.train(), model.train()
        torch.testing.assert_close(supernet(x, arch), model(x), rtol=1e-5, atol=1e-6)
        after = supernet.extract(arch)
        for name, value in model.state_dict().items():
            torch.testing.assert_close(after[name], value, rtol=1e-5, atol=1e-6, msg=name)


@settings(max_examples=40, deadline=None)
@given(case=cnn_cases())
def test_a_cnn_child_through_the_supernet_is_the_standalone_child(case):
    space, arch, channels, side, sharing = case
    supernet = build_supernet(space, channels, 3, sharing, torch.Generator().manual_seed(0))
    x = torch.randn(3, channels, side, side, generator=torch.Generator().manual_seed(1))
    _same_child(supernet, arch, x)


@settings(max_examples=40, deadline=None)
@given(case=mlp_cases())
def test_an_mlp_child_through_the_supernet_is_the_standalone_child(case):
    space, arch, in_features, out_features, sharing = case
    supernet = build_supernet(space, in_features, out_features, sharing, torch.Generator().manual_seed(0))
    _same_child(supernet, arch, torch.randn(4, in_features, generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("sharing", SHARINGS)
def test_chosen_cnn_children_with_every_skip_and_odd_images(sharing):
    """Skips from every earlier layer into the last of 5, strides that shrink 7x7 to 1x1, 3 channels."""
    space = CNNSpace(filters=(1, 3, 8), kernels=(3, 5), strides=(1, 2, 3), max_layers=5)
    supernet = build_supernet(space, 3, 10, sharing, torch.Generator().manual_seed(0))
    x = torch.randn(2, 3, 7, 7, generator=torch.Generator().manual_seed(1))
    for text in ("8c3-bn/1c5s2-bn/3c3-bn+0/8c5s3-bn-max+0,1/1c3-bn+0,1,2", "1c5s3-bn-max", "3c3-bn/8c5-bn/1c3-bn+0"):
        _same_child(supernet, CNNArchitecture.parse(text), x)
        supernet.to(memory_format=torch.channels_last)  # the layout the serial trainer gives images
        _same_child(supernet, CNNArchitecture.parse(text), x.contiguous(memory_format=torch.channels_last))
        supernet.to(memory_format=torch.contiguous_format)
    _same_child(supernet, CNNArchitecture.parse("3c3-bn/8c5-bn/1c3-bn+0"), x[:1, :, :1, :1])  # one value per channel


@pytest.mark.parametrize("sharing", SHARINGS)
def test_only_the_path_gets_gradients_and_running_statistics(sharing):
    supernet = build_supernet(SMALL_CNN, 1, 3, sharing, torch.Generator().manual_seed(0)).train()
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    arch = CNNArchitecture.parse("2c3-bn/4c1s2-bn/4c3-bn+0")
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    F.cross_entropy(supernet(x, arch), torch.tensor([0, 1, 2, 0])).backward()
    path = {"conv0_k3_s1", "conv1_k1_s2", "conv2_k3_s1", "head3", "head3_bias"}
    if sharing == "separate":
        path = {"conv0_k3_s1_w2", "conv1_k1_s2_w4", "conv2_k3_s1_w4", "head3", "head3_bias"}
    norms = {"norm0_k3_s1_w2", "norm1_k1_s2_w4", "norm2_k3_s1_w4"}
    for name, param in supernet.weights.items():
        assert (param.grad is not None and param.grad.abs().sum() > 0) == (name in path), name
    for name, norm in supernet.norms.items():
        assert (norm.weight.grad is not None) == (name in norms), name
        moved = not torch.equal(before[f"norms.{name}.running_mean"], norm.running_mean)
        assert moved == (name in norms) and int(norm.num_batches_tracked) == (name in norms), name
    # input blocks of layer 2: previous layer (columns 0..3), layer 0 (4..7), of which the child reads 4 + 2
    grad = supernet.weights["conv2_k3_s1" + ("_w4" if sharing == "separate" else "")].grad
    assert grad.abs().sum(dim=(0, 2, 3)).gt(0).tolist() == [True] * 6 + [False] * 2
    if sharing == "slice":  # rows beyond the child's width: zero gradient
        assert not supernet.weights["conv0_k3_s1"].grad[2:].any()
        assert not supernet.weights["head3"].grad[:, 4 * 16 :].any()


@pytest.mark.parametrize("sharing", SHARINGS)
def test_only_the_mlp_path_gets_gradients(sharing):
    space = MLPSpace(units=(2, 4), activations=("relu", "tanh"), max_layers=3)
    supernet = build_supernet(space, 3, 2, sharing, torch.Generator().manual_seed(0))
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    supernet(x, MLPArchitecture.parse("4-tanh/2-relu")).sum().backward()
    path = {"linear0_tanh", "linear0_tanh_bias", "linear1_relu", "linear1_relu_bias", "head2", "head2_bias"}
    if sharing == "separate":
        path = {"linear0_tanh_w4", "linear0_tanh_w4_bias", "linear1_relu_w2", "linear1_relu_w2_bias"}
        path |= {"head2", "head2_bias"}
    assert {name for name, p in supernet.weights.items() if p.grad is not None and p.grad.any()} == path
    assert all(supernet.weights[name].grad is None for name in supernet.weights if name not in path)
    if sharing == "slice":  # layer 1 has 2 of 4 rows and reads all 4 columns; the head reads 2 of 4
        assert not supernet.weights["linear1_relu"].grad[2:].any()
        assert not supernet.weights["head2"].grad[:, 2:].any()


def test_slice_shares_the_leading_rows_and_separate_does_not():
    arch8, arch2 = CNNArchitecture.parse("2c3-bn/4c3-bn"), CNNArchitecture.parse("2c3-bn/2c3-bn")
    for sharing in SHARINGS:
        supernet = build_supernet(SMALL_CNN, 1, 3, sharing, torch.Generator().manual_seed(0))
        wide, narrow = supernet.extract(arch8)["convs.1.weight"], supernet.extract(arch2)["convs.1.weight"]
        assert torch.equal(wide[:2], narrow) == (sharing == "slice")
        assert torch.equal(supernet.extract(arch8)["convs.0.weight"], supernet.extract(arch2)["convs.0.weight"])


def test_mlp_layout_and_parameter_count():
    """Per position and activation one linear layer from the widest previous layer; one head per depth."""
    space = MLPSpace(units=(2, 4), activations=("relu", "tanh"), max_layers=2)
    counts = {}
    for sharing in SHARINGS:
        supernet = build_supernet(space, 3, 2, sharing)
        counts[sharing] = sum(p.numel() for p in supernet.parameters())
        assert supernet.weights["head2"].shape == (2, 4)
    # slice: per activation 4x3+4 at position 0, 4x4+4 at 1; heads 2x4+2 per depth
    assert counts == {"slice": 2 * 16 + 2 * 20 + 2 * 10, "separate": 2 * 24 + 2 * 30 + 2 * 10}


def test_cnn_layout_and_parameter_count():
    """Input blocks: the image, then (widest filters) per possible source; BN per operation and width."""
    supernet = build_supernet(SMALL_CNN, 3, 10, "slice")
    assert supernet.weights["conv0_k3_s1"].shape == (4, 3, 3, 3)
    assert supernet.weights["conv1_k1_s2"].shape == (4, 4, 1, 1)
    assert supernet.weights["conv3_k3_s2"].shape == (4, 4 * 3, 3, 3)  # previous layer, layers 0 and 1
    assert supernet.weights["head4"].shape == (10, 4 * 16)
    assert len(supernet.norms) == 4 * 2 * 2 * 2 and "conv0_k3_s1_bias" not in supernet.weights
    no_norm = build_supernet(CNNSpace(filters=(2, 4), kernels=(3,), strides=(1,), max_layers=1, batch_norm=False), 1, 2)
    assert sum(p.numel() for p in no_norm.parameters()) == 4 * 9 + 4 + 2 * 64 + 2


@pytest.mark.parametrize("space", [SMALL_CNN, MLPSpace()], ids=["cnn", "mlp"])
def test_initialization_is_a_pure_function_of_the_generator_within_the_documented_range(space):
    nets = [build_supernet(space, 2, 3, "slice", torch.Generator().manual_seed(s)) for s in (5, 5, 6)]
    states = [net.state_dict() for net in nets]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not torch.equal(states[0]["weights.head2"], states[2]["weights.head2"])
    if isinstance(space, CNNSpace):
        bounds = {"conv0_k3_s1": 1 / math.sqrt(2 * 9), "conv3_k3_s1": 1 / math.sqrt(4 * 9), "head2": 1 / 8}
        norm = nets[0].norms["norm1_k3_s2_w4"]
        assert torch.equal(norm.weight, torch.ones(4)) and torch.equal(norm.bias, torch.zeros(4))
    else:
        bounds = {"linear0_relu": 1 / math.sqrt(2), "linear3_tanh": 1 / math.sqrt(32), "head2": 1 / math.sqrt(32)}
    for name, bound in bounds.items():
        largest = nets[0].weights[name].abs().max().item()
        assert 0.8 * bound < largest <= bound, name


def test_state_dict_round_trip_gives_the_same_children():
    arch = CNNArchitecture.parse("4c3-bn/2c1s2-bn-max/4c3-bn+0")
    source = build_supernet(SMALL_CNN, 1, 3, "separate", torch.Generator().manual_seed(0)).train()
    x = torch.randn(4, 1, 9, 9, generator=torch.Generator().manual_seed(2))
    source(x, arch)
    copy = build_supernet(SMALL_CNN, 1, 3, "separate", torch.Generator().manual_seed(1))
    copy.load_state_dict(source.state_dict())
    source.eval(), copy.eval()
    assert torch.equal(source(x, arch), copy(x, arch))


def test_refusals_name_the_field():
    with pytest.raises(ArchsearchError, match="^evaluator: weight sharing supports the mlp and cnn spaces, not code$"):
        build_supernet(CodeSpace("toy", 3, "012"), 2, 2)
    with pytest.raises(ArchsearchError, match="^sharing: must be one of slice, separate, got 'wide'$"):
        build_supernet(MLPSpace(), 2, 2, "wide")
    huge = CNNSpace(filters=(512, 1024), kernels=(15,), max_layers=16)
    refused = f"^space: its supernet would hold [0-9,]+ parameters, more than the {MAX_SUPERNET_PARAMS:,} "
    with pytest.raises(ArchsearchError, match=refused):
        build_supernet(huge, 3, 10)
    supernet = build_supernet(SMALL_CNN, 1, 3)
    with pytest.raises(ArchsearchError, match=r"^3c3-bn: layer 0 \(3c3-bn\) is not in CNNSpace"):
        supernet(torch.randn(1, 1, 8, 8), CNNArchitecture.parse("3c3-bn"))
    with pytest.raises(ArchsearchError, match="expected a cnn architecture"):
        supernet(torch.randn(1, 1, 8, 8), MLPArchitecture.parse("2-relu"))
