"""Search spaces and the architectures they contain."""

from archsearch.space._architecture import Architecture, MLPArchitecture, MLPLayer
from archsearch.space._base import Decision, SearchSpace, Slot
from archsearch.space._cnn import BaselineCNN, CNNArchitecture, CNNLayer, CNNSpace
from archsearch.space._code import CodeArchitecture, CodeSpace, canonical_form
from archsearch.space._mlp import MLPSpace

__all__ = [
    "Architecture",
    "BaselineCNN",
    "CNNArchitecture",
    "CNNLayer",
    "CNNSpace",
    "CodeArchitecture",
    "CodeSpace",
    "Decision",
    "MLPArchitecture",
    "MLPLayer",
    "MLPSpace",
    "SearchSpace",
    "Slot",
    "canonical_form",
]
