"""The LSTM controller of Zoph & Le (2017): a policy over token sequences.

At every slot of the space's schedule the LSTM reads the embedding of the
previous action (a zero vector at the first slot), a softmax head for the
slot's decision type gives the action distribution, and one action is sampled.
Choosing EOS ends the sequence.

Sampling runs without autograd; :meth:`Controller.log_probs` replays the
sampled tokens through the LSTM in one pass *with* autograd, so the REINFORCE
loss has gradients with respect to every controller weight.
"""

from __future__ import annotations

import torch
from torch import nn

from archsearch.space import SearchSpace

PAD = -1  # token value after a sequence has ended
_MASKED = -1e9  # logit of an action that is not allowed: probability exactly 0, log-probability finite


class Controller(nn.Module):
    """An LSTM with one embedding table and one softmax head per decision type."""

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
        sizes = [len(d.choices) + 1 for d in space.decisions]  # every head has an EOS output, masked where not allowed
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        self.embedding = nn.Embedding(sum(sizes), hidden_size)
        self.lstm = nn.LSTM(hidden_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.heads = nn.ModuleList(nn.Linear(hidden_size, size) for size in sizes)
        slots = space.slots
        self.register_buffer("slot_decision", torch.tensor([s.decision for s in slots]), persistent=False)
        self.register_buffer("slot_offset", torch.tensor([offsets[s.decision] for s in slots]), persistent=False)
        self.register_buffer("slot_eos_token", torch.tensor([sizes[s.decision] - 1 for s in slots]), persistent=False)
        self._slot_eos = [s.eos for s in slots]
        self._head_slots = [
            torch.tensor([t for t, s in enumerate(slots) if s.decision == d]) for d in range(len(sizes))
        ]
        eos_mask = torch.zeros(len(slots), max(sizes), dtype=torch.bool)
        for t, s in enumerate(slots):
            if not s.eos:
                eos_mask[t, sizes[s.decision] - 1] = True
        self.register_buffer("eos_mask", eos_mask, persistent=False)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-init_range, init_range, generator=generator)

    def _logits(self, decision: int, hidden: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        logits = self.heads[decision](hidden)
        mask = self.eos_mask[slots, : logits.shape[-1]]
        return logits.masked_fill(mask, _MASKED)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` token sequences, shape ``(n, slots)``, padded with ``PAD`` after EOS.

        ``generator`` must live on the controller's device.
        """
        device = self.slot_offset.device
        n_slots = len(self._slot_eos)
        tokens = torch.full((n, n_slots), PAD, dtype=torch.long, device=device)
        done = torch.zeros(n, dtype=torch.bool, device=device)
        x = torch.zeros(n, 1, self.hidden_size, device=device)
        state = None
        for t in range(n_slots):
            out, state = self.lstm(x, state)
            decision = int(self.slot_decision[t])
            logits = self._logits(decision, out[:, 0], self.slot_decision.new_tensor([t]))
            action = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)[:, 0]
            tokens[:, t] = action.masked_fill(done, PAD)
            if self._slot_eos[t]:
                done = done | (action == self.slot_eos_token[t])
                if bool(done.all()):
                    break
            x = self.embedding(self.slot_offset[t] + action).unsqueeze(1)
        return tokens

    def log_probs(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sequence: sum of log p(a_t | a_<t) and sum of the policy's entropies, with gradients.

        ``tokens`` is ``(n, slots)`` as :meth:`sample` returns it (``PAD`` after EOS).
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
        for decision, slots in enumerate(self._head_slots):
            slots = slots.to(tokens.device)
            if len(slots) == 0:
                continue
            logp = torch.log_softmax(self._logits(decision, hidden[:, slots], slots), dim=-1)
            chosen = logp.gather(-1, safe[:, slots, None])[..., 0]
            step_entropy = -(logp.exp() * logp).sum(-1)
            mask = valid[:, slots]
            log_prob = log_prob + (chosen * mask).sum(1)
            entropy = entropy + (step_entropy * mask).sum(1)
        return log_prob, entropy
