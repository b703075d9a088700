"""An ensemble: networks of one task that predict together, as AutoGluon and auto-sklearn ship theirs.

A classifier's members average their class probabilities; its output is the log of that mean, so
that it reads as logits do (its softmax is the mean probability, its argmax the ensemble's class)
and exports to ONNX as one graph. A regressor's members average their outputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from archsearch.errors import ArchsearchError


class Ensemble(nn.Module):
    """``members`` (in eval mode) predicting together; ``regression`` says how they combine."""

    def __init__(self, members: Sequence[nn.Module], regression: bool) -> None:
        super().__init__()
        if not members:
            raise ArchsearchError("ensemble: it needs at least one network")
        self.members = nn.ModuleList(members)
        self.regression = regression

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = torch.stack([member(x) for member in self.members])
        if self.regression:
            return outputs.mean(dim=0)
        return torch.logsumexp(torch.log_softmax(outputs, dim=-1), dim=0) - math.log(len(self.members))
