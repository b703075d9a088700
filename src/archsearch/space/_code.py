"""Fixed-length codes: the spaces of tabular benchmarks.

A tabular benchmark names each architecture by a code, one choice per position.
Each position is a named decision with its own choices, strings or integers
(``("op1", ["conv3", "conv5", "skip"])``). A code's text joins its choices with a
separator (``"1-conv3-0-skip"``), or with none when every choice is one character
(NAS-Bench-Macro: ``"22212220"``); that text is how the architecture reads and its
key in the benchmark's table. Such architectures are looked up, not built.

Codes that describe the same network may share a canonical form, so that they hash
equal: a function from a code's text to its representative's, given to the space.
A study stores it as a ``"module:function"`` reference. Reopening a study calls it
only if it is marked with :func:`canonical_form` and its module is part of archsearch
or already imported by the process that opens the study (a study file is input: it
cannot make archsearch import or call anything else); otherwise the study is refused
in one line that says so.
"""

from __future__ import annotations

import importlib
import itertools
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np
from torch import nn

from archsearch._limits import CODE_MAX_LENGTH, integer
from archsearch._limits import choices as bounded_choices
from archsearch.errors import ArchsearchError, short
from archsearch.space._architecture import Architecture
from archsearch.space._base import Decision, SearchSpace, Slot

Canonical = Callable[[str], str]
F = TypeVar("F", bound=Canonical)

#: the longest name of a position or text of a choice
_MAX_TEXT = 64
#: the canonical forms that studies written before a space stored its own were hashed with
_LEGACY_CANONICAL = {"nas-bench-macro": "archsearch.evaluation._lookup:nas_bench_macro_canonical"}


def canonical_form(function: F) -> F:
    """Mark ``function`` (code text -> canonical code text) as one a stored study may name."""
    function.__archsearch_canonical__ = True  # type: ignore[attr-defined]
    return function


def _reference(function: Canonical) -> str:
    return f"{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', '?')}"


def _resolve(reference: str) -> Canonical:
    """The function a stored ``"module:function"`` reference names, under the rules of the module docstring."""
    module_name, _, name = reference.partition(":")
    allowed = module_name in sys.modules or module_name.split(".")[0] == "archsearch"
    try:
        function = getattr(importlib.import_module(module_name), name) if allowed else None
    except (ImportError, AttributeError, ValueError):
        function = None
    if function is None or not getattr(function, "__archsearch_canonical__", False):
        raise ArchsearchError(
            f"space.canonical: {short(reference)} is not a canonical form this process can use (it must be a "
            "module-level function marked with @archsearch.space.canonical_form, in a module imported before "
            "the study is opened)"
        )
    return function


@dataclass(frozen=True)
class CodeArchitecture(Architecture):
    """An architecture of a tabular benchmark, named by its code (e.g. ``"22212220"``).

    ``form`` is its space's canonical form; it is not part of the value (not compared, not
    written), and architectures made or validated by a :class:`CodeSpace` carry it.
    """

    kind: ClassVar[str] = "code"
    benchmark: str
    code: str
    form: Canonical | None = field(default=None, compare=False, repr=False)

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
        if self.form is None:
            return self
        code = self.form(self.code)
        if not isinstance(code, str):
            raise ArchsearchError(f"space.canonical: gave {short(repr(code))} for code {self.code!r}, not a code")
        return CodeArchitecture(self.benchmark, code)

    def build(self, in_features: int, out_features: int, generator: Any = None) -> nn.Module:
        raise ArchsearchError(f"{self.benchmark} architecture {self.code}: looked up in its table, not built")

    def num_params(self, in_features: int, out_features: int) -> int:
        raise ArchsearchError(f"{self.benchmark} architecture {self.code}: its table holds its size, not the code")


class CodeSpace(SearchSpace):
    """All codes of a tabular benchmark: one choice per position.

    ``CodeSpace(benchmark, length, choices)`` gives every one of ``length`` positions the same
    single-character choices (one controller head for all); :meth:`from_decisions` gives each
    position its own name and choices. ``canonical`` maps a code's text to its canonical text.
    At most ``CODE_MAX_LENGTH`` (64) positions of at most 64 choices each.
    """

    kind = "code"

    def __init__(
        self,
        benchmark: str,
        length: int | None = None,
        choices: Sequence[str] | None = None,
        *,
        decisions: Sequence[tuple[str, Sequence[str | int]]] | None = None,
        separator: str = "",
        canonical: Canonical | str | None = None,
    ) -> None:
        self.benchmark = str(benchmark)
        if not isinstance(separator, str) or len(separator) > 8:
            raise ArchsearchError(f"space.separator: need text of at most 8 characters, got {short(repr(separator))}")
        self.separator = separator
        self._shared = decisions is None
        if self._shared:
            if length is None or choices is None:
                raise ArchsearchError("space: a code space needs a length and choices, or decisions")
            if separator:
                raise ArchsearchError("space.separator: codes of one shared choice set have no separator")
            self.length = integer("space.length", length, 1, CODE_MAX_LENGTH)
            listed = list(choices) if isinstance(choices, str) else choices  # "012" lists three symbols
            self._decisions = (Decision("op", self._checked_choices("space.choices", listed)),)
            self._slots = tuple(Slot(0, eos=False) for _ in range(self.length))
            canonical = _LEGACY_CANONICAL.get(self.benchmark) if canonical is None else canonical
        else:
            if length is not None or choices is not None:
                raise ArchsearchError("space: give a code space's decisions, or its length and choices, not both")
            self._decisions = self._checked_decisions(decisions)
            self.length = len(self._decisions)
            self._slots = tuple(Slot(position, eos=False) for position in range(self.length))
        self._texts = [tuple(str(c) for c in self.decisions[slot.decision].choices) for slot in self.slots]
        self._tokens = [{text: token for token, text in enumerate(texts)} for texts in self._texts]
        self.canonical: Canonical | None = _resolve(canonical) if isinstance(canonical, str) else canonical
        if self.canonical is not None and not callable(self.canonical):
            raise ArchsearchError(f"space.canonical: need a function of a code's text, got {short(repr(canonical))}")

    @classmethod
    def from_decisions(
        cls,
        decisions: Sequence[tuple[str, Sequence[str | int]]],
        *,
        benchmark: str = "code",
        separator: str = "-",
        canonical: Canonical | None = None,
    ) -> CodeSpace:
        """A space of one named decision per position: ``[("input1", [0, 1]), ("op1", ["conv3", "skip"])]``.

        Codes read ``"0-conv3"``: the choices joined by ``separator``, which no choice may contain
        (with ``separator=""`` every choice must be one character).
        """
        return cls(benchmark, decisions=decisions, separator=separator, canonical=canonical)

    def _checked_decisions(self, decisions: Any) -> tuple[Decision, ...]:
        pairs = bounded_choices("space.decisions", decisions, "(name, choices) pairs")
        if not 1 <= len(pairs) <= CODE_MAX_LENGTH:
            raise ArchsearchError(f"space.decisions: need 1 to {CODE_MAX_LENGTH} positions, got {len(pairs)}")
        checked = []
        for position, pair in enumerate(pairs):
            where = f"space.decisions[{position}]"
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ArchsearchError(f"{where}: need a (name, choices) pair, got {short(repr(pair))}")
            name, choices = pair
            if not isinstance(name, str) or not 0 < len(name) <= _MAX_TEXT:
                raise ArchsearchError(f"{where}: need a name of 1 to {_MAX_TEXT} characters")
            checked.append(Decision(name, self._checked_choices(f"{where} ({name})", choices)))
        names = [d.name for d in checked]
        if len(set(names)) != len(names):
            raise ArchsearchError(f"space.decisions: names must differ, got {short(repr(names))}")
        return tuple(checked)

    def _checked_choices(self, where: str, choices: Any) -> tuple[str | int, ...]:
        """Two or more distinct choices, each a string or integer whose text can be told apart in a code."""
        what = "single characters" if self.separator == "" else "strings or integers"
        listed = tuple(bounded_choices(where, choices, what))
        texts = [str(c) for c in listed]
        kinds_ok = all(isinstance(c, str) or (isinstance(c, int) and not isinstance(c, bool)) for c in listed)
        if not kinds_ok or len(texts) < 2 or len(set(texts)) != len(texts):
            raise ArchsearchError(f"{where}: need two or more distinct strings or integers, got {short(repr(listed))}")
        if self.separator == "" and any(len(t) != 1 for t in texts):
            raise ArchsearchError(f"{where}: choices of codes without a separator must be single characters")
        if any(not 0 < len(t) <= _MAX_TEXT or (self.separator and self.separator in t) for t in texts):
            raise ArchsearchError(
                f"{where}: each choice needs 1 to {_MAX_TEXT} characters and no separator {self.separator!r}"
            )
        return listed

    def to_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"kind": self.kind, "benchmark": self.benchmark}
        if self._shared:
            config.update(length=self.length, choices=list(self.decisions[0].choices))
        else:
            config.update(decisions=[[d.name, list(d.choices)] for d in self.decisions], separator=self.separator)
        if self.canonical is not None:
            config["canonical"] = _reference(self.canonical)
        return config

    def _member(self, choices: Sequence[str]) -> CodeArchitecture:
        return CodeArchitecture(self.benchmark, self.separator.join(choices), self.canonical)

    def parse(self, code: str) -> CodeArchitecture:
        """The member whose code reads ``code``."""
        return self.decode(self.encode(CodeArchitecture(self.benchmark, code)))

    def decode(self, tokens: Sequence[int]) -> CodeArchitecture:
        chosen = self.check_tokens(tokens)
        if len(chosen) != self.length:
            raise ArchsearchError(f"{self}: {len(chosen)} tokens, need {self.length}")
        return self._member([texts[t] for texts, t in zip(self._texts, chosen)])

    def encode(self, arch: Architecture) -> list[int]:
        if not isinstance(arch, CodeArchitecture) or arch.benchmark != self.benchmark:
            raise ArchsearchError(f"{self}: expected a {self.benchmark} code, got {short(str(arch))}")
        parts = arch.code.split(self.separator) if self.separator else list(arch.code)
        if len(parts) != self.length or any(p not in known for p, known in zip(parts, self._tokens)):
            raise ArchsearchError(f"code {short(arch.code)!r}: not a code of the {self.benchmark} space")
        return [known[p] for p, known in zip(parts, self._tokens)]

    def size(self) -> int:
        size = 1
        for texts in self._texts:
            size *= len(texts)
        return size

    def enumerate(self) -> Iterator[CodeArchitecture]:
        for chosen in itertools.product(*self._texts):
            yield self._member(chosen)

    def sample(self, rng: np.random.Generator) -> CodeArchitecture:
        if len(self.decisions) == 1:  # one draw for all positions: the numbers of studies written so far
            picks = rng.integers(len(self._texts[0]), size=self.length)
        else:
            picks = [int(rng.integers(len(texts))) for texts in self._texts]
        return self._member([texts[i] for texts, i in zip(self._texts, picks)])

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> CodeArchitecture:
        """The same code with one position changed to another choice."""
        tokens = self.encode(arch)
        position = int(rng.integers(self.length))
        others = [t for t in range(len(self._texts[position])) if t != tokens[position]]
        tokens[position] = others[int(rng.integers(len(others)))]
        return self.decode(tokens)
