import math
import re

import numpy as np
import pytest
import torch

from archsearch.errors import ArchsearchError
from archsearch.space import MLPArchitecture, MLPSpace
from archsearch.strategies import Reinforce, outcomes
from archsearch.strategies._controller import PAD

from ..conftest import fraction_of_wide_layers


def test_probabilities_of_all_members_sum_to_one(tiny_space):
    """log_probs is a proper distribution over the space: EOS masking and ends are right."""
    strategy = Reinforce(tiny_space, seed=3)
    members = list(tiny_space.enumerate())
    with torch.no_grad():
        log_prob, _ = strategy.controller.log_probs(strategy._tokens(members))
    assert math.isclose(float(log_prob.exp().sum()), 1.0, rel_tol=1e-5)


def test_sampling_frequencies_match_log_probs(tiny_space):
    strategy = Reinforce(tiny_space, seed=4, init_range=1.0)  # a far-from-uniform policy
    members = list(tiny_space.enumerate())
    with torch.no_grad():
        expected = strategy.controller.log_probs(strategy._tokens(members))[0].exp().numpy()
    archs = strategy.ask(20_000)
    observed = np.array([sum(a == m for a in archs) for m in members]) / len(archs)
    assert np.abs(observed - expected).max() < 0.015, (observed, expected)


def test_samples_are_members_with_pad_after_eos(space):
    strategy = Reinforce(space, seed=0)
    tokens = strategy.controller.sample(200, strategy.generator)
    for row in tokens.tolist():
        real = [t for t in row if t != PAD]
        assert row[: len(real)] == real  # padding only at the end
        assert space.contains(space.decode(real))


def test_gradients_are_nonzero_after_one_update(space):
    """The seed code computed log-probabilities under no_grad; ours must carry gradients."""
    strategy = Reinforce(space, seed=0, entropy_weight=0.0)
    before = {k: v.clone() for k, v in strategy.controller.state_dict().items()}
    archs = strategy.ask(15)
    rewards = [fraction_of_wide_layers(a) for a in archs]
    strategy.tell(outcomes(archs, rewards))
    grads = {name: p.grad for name, p in strategy.controller.named_parameters()}
    for name, grad in grads.items():
        assert grad is not None and grad.abs().sum() > 0, name
    changed = [k for k, v in strategy.controller.state_dict().items() if not torch.equal(v, before[k])]
    assert set(changed) == set(before)


def test_controller_learns_a_synthetic_reward(space):
    """Reward = fraction of layers with 32 units; a uniform policy earns 1/6."""
    strategy = Reinforce(space, seed=0)
    means = []
    for _ in range(150):
        archs = strategy.ask(15)
        rewards = [fraction_of_wide_layers(a) for a in archs]
        strategy.tell(outcomes(archs, rewards))
        means.append(np.mean(rewards))
    assert np.mean(means[:5]) < 0.3
    assert np.mean(means[-20:]) > 0.9


def test_entropy_bonus_only_keeps_the_policy_uniform(tiny_space):
    strategy = Reinforce(tiny_space, seed=0, entropy_weight=1.0)
    for _ in range(50):
        archs = strategy.ask(10)
        strategy.tell(outcomes(archs, [1.0] * len(archs)))  # zero advantage after the first step
    members = list(tiny_space.enumerate())
    with torch.no_grad():
        _, entropy = strategy.controller.log_probs(strategy._tokens(members))
    # max entropy per slot: log 3 (units), log 4 (units or EOS); activations have one choice
    assert float(entropy.max()) > 0.97 * (math.log(3) + math.log(4))


def test_same_seed_same_proposals_and_different_seed_differs(space):
    a, b, c = Reinforce(space, seed=5), Reinforce(space, seed=5), Reinforce(space, seed=6)
    assert a.ask(15) == b.ask(15)
    assert a.ask(15) != c.ask(15)


def test_state_dict_resume_continues_exactly(space):
    def run(strategy, steps):
        history = []
        for _ in range(steps):
            archs = strategy.ask(8)
            strategy.tell(outcomes(archs, [fraction_of_wide_layers(a) for a in archs]))
            history.append([str(a) for a in archs])
        return history

    straight = Reinforce(space, seed=1)
    expected = run(straight, 6)
    first = Reinforce(space, seed=1)
    head = run(first, 3)
    state = first.state_dict()
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    resumed = Reinforce(space, seed=1)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert head + run(resumed, 3) == expected
    for p, q in zip(straight.controller.parameters(), resumed.controller.parameters()):
        assert torch.equal(p, q)


def test_baseline_is_an_exponential_moving_average(space):
    strategy = Reinforce(space, seed=0)
    archs = strategy.ask(4)
    strategy.tell(outcomes(archs, [0.2, 0.4, 0.6, 0.8]))
    assert strategy.baseline == pytest.approx(0.5)
    strategy.tell(outcomes(archs, [1.0] * 4))
    assert strategy.baseline == pytest.approx(0.9 * 0.5 + 0.1 * 1.0)


def _grads(strategy):
    return [p.grad.clone() for p in strategy.controller.parameters()]


def test_rank_advantage_depends_on_the_order_of_rewards_only(space):
    """Ranks make the update independent of the reward's scale; raw advantages do not."""
    rewards = [0.1, 0.2, 0.3, 0.4, 0.5, 0.7]
    stretched = [100 * r - 3 for r in rewards]
    grads = {}
    for advantage in ("rank", "baseline"):
        for name, values in (("plain", rewards), ("stretched", stretched)):
            strategy = Reinforce(space, seed=0, entropy_weight=0.0, advantage=advantage)
            strategy.tell(outcomes(strategy.ask(6), values))
            grads[advantage, name] = _grads(strategy)
    for p, q in zip(grads["rank", "plain"], grads["rank", "stretched"]):
        torch.testing.assert_close(p, q)
    # a raw advantage grows with the reward's scale (here by 100)
    for p, q in zip(grads["baseline", "plain"], grads["baseline", "stretched"]):
        torch.testing.assert_close(q, 100 * p, rtol=1e-4, atol=1e-6)


def test_rank_advantage_equals_the_baseline_update_on_centred_ranks(space):
    """Rank advantages of [0.1, 0.2, 0.2, 0.9] in a fresh window: (below + not above) / 8 - 1/2."""
    ranked = Reinforce(space, seed=0, entropy_weight=0.0)
    raw = Reinforce(space, seed=0, entropy_weight=0.0, advantage="baseline")
    archs = ranked.ask(4)
    ranked.tell(outcomes(archs, [0.1, 0.2, 0.2, 0.9]))
    expected = [(0 + 1) / 8 - 0.5, (1 + 3) / 8 - 0.5, (1 + 3) / 8 - 0.5, (3 + 4) / 8 - 0.5]  # ties count half
    raw.tell(outcomes(archs, expected))  # first step: the baseline is the mean, which is 0 here
    for p, q in zip(_grads(ranked), _grads(raw)):
        torch.testing.assert_close(p, q)


def test_rank_window_keeps_only_recent_rewards(space):
    strategy = Reinforce(space, seed=0, rank_window=5)
    archs = strategy.ask(3)
    strategy.tell(outcomes(archs, [0.1, 0.2, 0.3]))
    strategy.tell(outcomes(archs, [0.4, 0.5, 0.6]))
    assert list(strategy.recent) == [0.2, 0.3, 0.4, 0.5, 0.6]
    resumed = Reinforce(space, seed=0, rank_window=5)
    resumed.load_state_dict(strategy.state_dict())
    assert list(resumed.recent) == list(strategy.recent)


@pytest.mark.parametrize(
    ("options", "field"), [({"advantage": "zscore"}, "advantage"), ({"rank_window": 0}, "rank_window")]
)
def test_bad_advantage_settings_name_the_field(space, options, field):
    with pytest.raises(ArchsearchError, match=f"strategy.{field}"):
        Reinforce(space, **options)


def test_tell_requires_one_reward_per_architecture(space):
    strategy = Reinforce(space)
    with pytest.raises(ValueError, match="3 architectures but 1 rewards"):
        strategy.tell(outcomes(strategy.ask(3), [1.0]))
    with pytest.raises(ValueError, match="needs the outcomes of a step"):
        strategy.tell([])


def test_decisions_of_a_custom_space_drive_the_controller():
    space = MLPSpace(units=(3, 5), activations=("relu",), max_layers=3, min_layers=2)
    archs = Reinforce(space, seed=0).ask(100)
    assert all(2 <= len(a.layers) <= 3 and set(a.widths) <= {3, 5} for a in archs)
    assert {len(a.layers) for a in archs} == {2, 3}
    assert MLPArchitecture.parse("3-relu") not in archs


def test_depth_curriculum_caps_depth_and_grows_it():
    space = MLPSpace(max_layers=5)
    strategy = Reinforce(space, seed=0, curriculum=(2, 40, 1))
    depths = []
    for _ in range(12):
        archs = strategy.ask(10)
        strategy.tell(outcomes(archs, [len(a.layers) / 5 for a in archs]))  # pays for depth: the cap binds
        depths.append(max(len(a.layers) for a in archs))
    # 2 layers for the first 40 children, 3 for the next 40, then 4; never more than the cap
    assert depths == [2] * 4 + [3] * 4 + [4] * 4
    assert strategy.depth_cap(sampled=0) == 2 and strategy.depth_cap(sampled=10_000) is None


def test_capped_probabilities_sum_to_one_and_match_sampling():
    """Under a cap the forced EOS has probability 1: the members within the cap carry all the mass."""
    space = MLPSpace(units=(2, 4), activations=("tanh",), max_layers=3)
    strategy = Reinforce(space, seed=2, init_range=1.0, curriculum=(2, 1_000_000))
    archs = strategy.ask(20_000)
    within = [m for m in space.enumerate() if len(m.layers) <= 2]
    with torch.no_grad():
        log_prob, entropy = strategy.controller.log_probs(strategy._tokens(within), eos_at=strategy._asked_eos)
    assert math.isclose(float(log_prob.exp().sum()), 1.0, rel_tol=1e-5)
    observed = np.array([sum(a == m for a in archs) for m in within]) / len(archs)
    assert np.abs(observed - log_prob.exp().numpy()).max() < 0.015
    assert all(len(a.layers) <= 2 for a in archs)


def test_curriculum_resumes_exactly_and_is_checked():
    space = MLPSpace(max_layers=4)

    def run(strategy, steps):
        out = []
        for _ in range(steps):
            archs = strategy.ask(5)
            strategy.tell(outcomes(archs, [0.5] * 5))
            out.append([str(a) for a in archs])
        return out

    expected = run(Reinforce(space, seed=1, curriculum=(1, 7)), 6)
    first = Reinforce(space, seed=1, curriculum=(1, 7))
    head = run(first, 3)
    resumed = Reinforce(space, seed=1, curriculum=(1, 7))
    resumed.load_state_dict(first.state_dict())
    assert head + run(resumed, 3) == expected
    assert Reinforce(space, curriculum=[1, 7]).to_config()["curriculum"] == [1, 7, 1]
    assert "curriculum" not in Reinforce(space).to_config()
    for bad, needle in [((0, 5), "start must be within"), ((2, 0), "every and by"), ((2,), "must be (start, every)")]:
        with pytest.raises(ArchsearchError, match=r"strategy\.curriculum: " + re.escape(needle)):
            Reinforce(space, curriculum=bad)
