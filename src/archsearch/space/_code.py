"""Fixed-length codes: the spaces of tabular benchmarks.

A tabular benchmark names each architecture by a short code, one symbol per
searchable layer (NAS-Bench-Macro: eight layers, each '0' identity, '1' or '2'
a MobileNetV2 block). Such architectures are looked up in the benchmark's table,
not built. A benchmark may declare which codes describe the same network; the
canonical form then maps them to one code, so they hash equal.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from torch import nn

from archsearch._limits import CODE_MAX_LENGTH, integer
from archsearch._limits import choices as bounded_choices
from archsearch.errors import ArchsearchError
from archsearch.space._architecture import Architecture
from archsearch.space._base import Decision, SearchSpace, Slot

#: benchmark name -> function from a code to its canonical code (default: every code is its own)
CANONICAL_FORMS: dict[str, Callable[[str], str]] = {}


@dataclass(frozen=True)
class CodeArchitecture(Architecture):
    """An architecture of a tabular benchmark, named by its code (e.g. ``"22212220"``)."""

    kind: ClassVar[str] = "code"
    benchmark: str
    code: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "benchmark": self.benchmark, "code": self.code}

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> CodeArchitecture:
        try:
            return cls(str(data["benchmark"]), str(data["code"]))
        except KeyError as exc:
            raise ArchsearchError(f"architecture: code architecture lacks {exc}") from None

    def __str__(self) -> str:
        return self.code

    def canonical(self) -> CodeArchitecture:
        form = CANONICAL_FORMS.get(self.benchmark)
        return self if form is None else CodeArchitecture(self.benchmark, form(self.code))

    def build(self, in_features: int, out_features: int, generator: Any = None) -> nn.Module:
        raise ArchsearchError(f"{self.benchmark} architecture {self.code}: looked up in its table, not built")

    def num_params(self, in_features: int, out_features: int) -> int:
        raise ArchsearchError(f"{self.benchmark} architecture {self.code}: its table holds its size, not the code")


class CodeSpace(SearchSpace):
    """All codes of ``length`` symbols drawn from ``choices``, for the benchmark ``benchmark``.

    At most ``CODE_MAX_LENGTH`` (64) symbols from at most ``MAX_CHOICES`` (64) choices.
    """

    kind = "code"

    def __init__(self, benchmark: str, length: int, choices: Sequence[str]) -> None:
        self.benchmark = str(benchmark)
        self.length = integer("space.length", length, 1, CODE_MAX_LENGTH)
        listed = list(choices) if isinstance(choices, str) else choices  # "012" lists three symbols
        self.choices = tuple(str(c) for c in bounded_choices("space.choices", listed, "single characters"))
        if (
            len(self.choices) < 2
            or len(set(self.choices)) != len(self.choices)
            or any(len(c) != 1 for c in self.choices)
        ):
            raise ArchsearchError(f"space.choices: need two or more distinct single characters, got {list(choices)}")
        self._decisions = (Decision("op", self.choices),)
        self._slots = tuple(Slot(0, eos=False) for _ in range(self.length))

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "benchmark": self.benchmark, "length": self.length, "choices": list(self.choices)}

    def decode(self, tokens: Sequence[int]) -> CodeArchitecture:
        symbols = self.check_tokens(tokens)
        if len(symbols) != self.length:
            raise ArchsearchError(f"{self}: {len(symbols)} tokens, need {self.length}")
        return CodeArchitecture(self.benchmark, "".join(self.choices[t] for t in symbols))

    def encode(self, arch: Architecture) -> list[int]:
        if not isinstance(arch, CodeArchitecture) or arch.benchmark != self.benchmark:
            raise ArchsearchError(f"{self}: expected a {self.benchmark} code, got {arch}")
        if len(arch.code) != self.length or any(c not in self.choices for c in arch.code):
            raise ArchsearchError(f"{arch}: not a code of {self.length} symbols from {''.join(self.choices)}")
        return [self.choices.index(c) for c in arch.code]

    def size(self) -> int:
        return len(self.choices) ** self.length

    def enumerate(self) -> Iterator[CodeArchitecture]:
        for symbols in itertools.product(self.choices, repeat=self.length):
            yield CodeArchitecture(self.benchmark, "".join(symbols))

    def sample(self, rng: np.random.Generator) -> CodeArchitecture:
        picks = rng.integers(len(self.choices), size=self.length)
        return CodeArchitecture(self.benchmark, "".join(self.choices[i] for i in picks))

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> CodeArchitecture:
        """The same code with one position changed to another symbol."""
        code = list(self.decode(self.encode(arch)).code)
        position = int(rng.integers(self.length))
        others = [c for c in self.choices if c != code[position]]
        code[position] = others[int(rng.integers(len(others)))]
        return CodeArchitecture(self.benchmark, "".join(code))
