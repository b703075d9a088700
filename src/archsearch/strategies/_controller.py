"""The LSTM controller of Zoph & Le (2017): a policy over token sequences.

At every slot of the space's schedule the LSTM reads the embedding of the
previous action (a zero vector at the first slot), a softmax head for the
slot's decision type gives the action distribution, and one action is sampled.
Choosing EOS ends the sequence.

A slot with anchors (a set selection, such as a CNN layer's skip connections)
has no softmax head: each candidate ``j`` is an independent Bernoulli with Zoph
& Le's anchor-point attention, P(j) = sigmoid(v^T tanh(W_prev h_j + W_curr h_t)),
where ``h_j`` is the controller's hidden state at candidate ``j``'s anchor slot
and ``h_t`` its hidden state now. The chosen set, as a bit mask, is the token;
its embedding is the next input, as for any token.

Sampling runs without autograd; :meth:`Controller.log_probs` replays the
sampled tokens through the LSTM in one pass *with* autograd, so the REINFORCE
loss has gradients with respect to every controller weight (the seed paper's
published code computed its log-probabilities under ``no_grad``, and its
controller never learned).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archsearch.space import SearchSpace

PAD = -1  # token value after a sequence has ended
_MASKED = -1e9  # logit of an action that is not allowed: probability exactly 0, log-probability finite


class Controller(nn.Module):
    """An LSTM with one embedding table and one softmax head per decision type.

    A decision type that may end the sequence somewhere has one extra output, EOS,
    masked at the slots where ending is not allowed.
    """

    def __init__(
        self,
        space: SearchSpace,
        hidden_size: int = 35,
        num_layers: int = 2,
        init_range: float = 0.08,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        slots = space.slots
        has_eos = [any(s.eos for s in slots if s.decision == d) for d in range(len(space.decisions))]
        sizes = [len(d.choices) + int(eos) for d, eos in zip(space.decisions, has_eos)]
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        self.embedding = nn.Embedding(sum(sizes), hidden_size)
        self.lstm = nn.LSTM(hidden_size, hidden_size, num_layers=num_layers, batch_first=True)
        anchored = {s.decision for s in slots if s.anchors}
        self.heads = nn.ModuleList(
            nn.Identity() if d in anchored else nn.Linear(hidden_size, size) for d, size in enumerate(sizes)
        )
        self._anchored = anchored
        self._anchors = [s.anchors for s in slots]
        if anchored:  # registered after the heads: spaces without anchors keep their initial weights
            self.attend_prev = nn.Linear(hidden_size, hidden_size, bias=False)
            self.attend_curr = nn.Linear(hidden_size, hidden_size, bias=False)
            self.attend_v = nn.Linear(hidden_size, 1, bias=False)
        self._sizes, self._offsets = sizes, offsets
        self._decision = [s.decision for s in slots]
        self._eos = [s.eos for s in slots]
        self._mask_eos = [has_eos[s.decision] and not s.eos for s in slots]
        self._eos_token = [sizes[s.decision] - 1 if has_eos[s.decision] else -2 for s in slots]
        self.register_buffer("slot_offset", torch.tensor([offsets[s.decision] for s in slots]), persistent=False)
        for d in range(len(sizes)):
            positions = [t for t, s in enumerate(slots) if s.decision == d]
            mask = torch.zeros(len(positions), sizes[d], dtype=torch.bool)
            for row, t in enumerate(positions):
                mask[row, -1] = self._mask_eos[t]
            self.register_buffer(f"positions{d}", torch.tensor(positions, dtype=torch.long), persistent=False)
            self.register_buffer(f"mask{d}", mask, persistent=False)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-init_range, init_range, generator=generator)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, eos_at: int | None = None) -> torch.Tensor:
        """``n`` token sequences, shape ``(n, slots)``, padded with ``PAD`` after EOS.

        ``generator`` must live on the controller's device. ``eos_at`` (a slot that allows EOS)
        forces EOS there: a depth cap, as a depth curriculum sets it.
        """
        device = self.slot_offset.device
        n_slots = len(self._decision)
        tokens = torch.full((n, n_slots), PAD, dtype=torch.long, device=device)
        done = torch.zeros(n, dtype=torch.bool, device=device)
        any_done = False
        zeros = torch.zeros(n, self.hidden_size, device=device)
        states = [(zeros, zeros)] * self.lstm.num_layers
        weights = [self.lstm.all_weights[layer] for layer in range(self.lstm.num_layers)]
        x = zeros
        hiddens = []  # per slot, for anchor points
        for t in range(n_slots):
            # one step of the same LSTM, cell by cell: far cheaper than a call of nn.LSTM per step
            h = x
            for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(weights):
                states[layer] = torch.lstm_cell(h, states[layer], w_ih, w_hh, b_ih, b_hh)
                h = states[layer][0]
            decision = self._decision[t]
            if self._anchored:
                hiddens.append(h)
            if self._anchors[t]:
                p = torch.sigmoid(self._attention(torch.stack([hiddens[a] for a in self._anchors[t]], 1), h))
                bits = torch.bernoulli(p, generator=generator).long()
                action = (bits << torch.arange(bits.shape[1], device=device)).sum(1)
            else:
                head = self.heads[decision]
                logits = F.linear(h, head.weight, head.bias)
                if self._mask_eos[t]:
                    logits[:, -1] = _MASKED
                if t == eos_at:
                    logits[:, :-1] = _MASKED
                action = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)[:, 0]
            tokens[:, t] = action.masked_fill(done, PAD) if any_done else action
            if self._eos[t]:
                done |= action == self._eos_token[t]
                any_done = bool(done.any())
                if any_done and bool(done.all()):
                    break
            start = self._offsets[decision]
            x = F.embedding(action, self.embedding.weight[start : start + self._sizes[decision]])
        return tokens

    def _attention(self, anchors: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """Logits of the anchor-point attention: ``anchors`` (n, k, hidden), ``current`` (n, hidden) -> (n, k)."""
        mixed = torch.tanh(self.attend_prev(anchors) + self.attend_curr(current)[:, None])
        return self.attend_v(mixed)[..., 0]

    def log_probs(self, tokens: torch.Tensor, eos_at: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sequence: sum of log p(a_t | a_<t) and sum of the policy's entropies, with gradients.

        ``tokens`` is ``(n, slots)`` as :meth:`sample` returns it (``PAD`` after EOS), and
        ``eos_at`` the depth cap they were sampled under (a forced EOS has probability 1).
        """
        n, n_slots = tokens.shape
        valid = tokens != PAD
        safe = tokens.clamp(min=0)
        previous = self.embedding(self.slot_offset[: n_slots - 1] + safe[:, :-1])
        previous = previous * valid[:, :-1, None]
        inputs = torch.cat([previous.new_zeros(n, 1, self.hidden_size), previous], dim=1)
        hidden, _ = self.lstm(inputs)
        log_prob = hidden.new_zeros(n)
        entropy = hidden.new_zeros(n)
        for t, anchors in enumerate(self._anchors[:n_slots]):
            if not anchors:
                continue
            logits = self._attention(hidden[:, list(anchors)], hidden[:, t])
            bits = ((safe[:, t, None] >> torch.arange(len(anchors), device=tokens.device)) & 1).float()
            chosen = (bits * F.logsigmoid(logits) + (1 - bits) * F.logsigmoid(-logits)).sum(1)
            p = torch.sigmoid(logits)
            step_entropy = -(p * F.logsigmoid(logits) + (1 - p) * F.logsigmoid(-logits)).sum(1)
            log_prob = log_prob + chosen * valid[:, t]
            entropy = entropy + step_entropy * valid[:, t]
        for decision, head in enumerate(self.heads):
            positions = getattr(self, f"positions{decision}")
            if len(positions) == 0 or decision in self._anchored:
                continue
            mask = getattr(self, f"mask{decision}")
            if eos_at is not None and self._decision[eos_at] == decision:
                mask = mask.clone()
                mask[(positions == eos_at).nonzero()[0, 0], :-1] = True
            logits = head(hidden[:, positions]).masked_fill(mask, _MASKED)
            logp = torch.log_softmax(logits, dim=-1)
            chosen = logp.gather(-1, safe[:, positions, None])[..., 0]
            step_entropy = -(logp.exp() * logp).sum(-1)
            mask = valid[:, positions]
            log_prob = log_prob + (chosen * mask).sum(1)
            entropy = entropy + (step_entropy * mask).sum(1)
        return log_prob, entropy
