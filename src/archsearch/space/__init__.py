"""Search spaces and the architectures they contain."""

from archsearch.space._architecture import Architecture, MLPArchitecture, MLPLayer
from archsearch.space._base import SPACES, Decision, SearchSpace, Slot
from archsearch.space._cells import (
    CellArchitecture,
    DagCell,
    DagCellSpace,
    StandardCell,
    TreeCell,
    TreeCellSpace,
    nas_cell,
)
from archsearch.space._cnn import BaselineCNN, CNNArchitecture, CNNLayer, CNNSpace
from archsearch.space._code import CodeArchitecture, CodeSpace, canonical_form
from archsearch.space._components import (
    ActivationArchitecture,
    ActivationSpace,
    ComponentArchitecture,
    FormulaActivation,
    FormulaOptimizer,
    UpdateRuleArchitecture,
    UpdateRuleSpace,
)
from archsearch.space._mlp import MLPSpace
from archsearch.space._settings import OPTIMIZERS, SettingsArchitecture, SettingsSpace

for _space in (MLPSpace, CNNSpace, CodeSpace, TreeCellSpace, DagCellSpace, ActivationSpace, UpdateRuleSpace,
               SettingsSpace):
    SPACES.register(_space.kind, _space)

__all__ = [
    "SPACES",
    "ActivationArchitecture",
    "ActivationSpace",
    "ComponentArchitecture",
    "FormulaActivation",
    "FormulaOptimizer",
    "UpdateRuleArchitecture",
    "UpdateRuleSpace",
    "Architecture",
    "BaselineCNN",
    "CellArchitecture",
    "DagCell",
    "DagCellSpace",
    "StandardCell",
    "TreeCell",
    "TreeCellSpace",
    "nas_cell",
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
    "SettingsArchitecture",
    "SettingsSpace",
    "OPTIMIZERS",
    "Slot",
    "canonical_form",
]
