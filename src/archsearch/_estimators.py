"""scikit-learn estimators around a search: ``fit`` searches, ``predict`` uses the best network.

``NASClassifier`` and ``NASRegressor`` follow scikit-learn's conventions:
constructor arguments are stored unchanged (no work in ``__init__``),
``get_params``/``set_params`` and ``clone`` work, and fitted attributes end with
an underscore. ``fit`` holds out ``validation_fraction`` of the rows (stratified
by class for the classifier) as the search's validation split, which drives the
reward; there is no test split inside ``fit``: score the estimator on data it
has not seen (``score``, ``cross_val_score``). Features are standardised with
the training rows' statistics; so is the regressor's target, and its
predictions are scaled back.

With ``study_path`` the search is kept in a study file that holds the data too:
the split, standardised rows and their preprocessing (task kind ``"arrays"``),
so ``archsearch best``, ``trials``, ``report``, ``export`` and ``resume`` work on
it like on any study, from the file alone.

With ``max_params`` the search trains no network of more parameters (such an architecture is recorded as
infeasible, see :class:`~archsearch._objectives.Goals`), so the network ``predict`` uses is within the limit.

With ``weight_sharing=True`` the search scores its ``budget`` children with one supernet's shared
weights (see :mod:`archsearch.evaluation._shared`), and the network ``predict`` uses is the best
derived architecture retrained from scratch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from archsearch.errors import ArchsearchError


def _stored_label(label: Any) -> str | int | float | bool:
    """A class label as the study stores it (JSON): a string or a finite number as it is, anything else
    as its ``str``."""
    if isinstance(label, str | bool):
        return label
    try:
        if isinstance(label, int | float) and math.isfinite(label):
            return label
    except OverflowError:  # an integer beyond a float's range
        pass
    return str(label)


class _NASEstimator(BaseEstimator):
    """What the classifier and the regressor share: the parameters, the search and the network."""

    _problem = "classification"

    def __init__(
        self,
        strategy: str = "reinforce",
        budget: int = 300,
        children_per_step: int = 15,
        space: Any = None,
        trainer: str = "batched",
        max_epochs: int = 50,
        patience: int = 10,
        lr: float = 0.01,
        weight_decay: float = 0.0,
        validation_fraction: float = 0.2,
        seed: int = 0,
        study_path: str | None = None,
        verbose: bool = False,
        weight_sharing: bool = False,
        max_params: int | None = None,
    ) -> None:
        self.strategy = strategy
        self.budget = budget
        self.children_per_step = children_per_step
        self.space = space
        self.trainer = trainer
        self.max_epochs = max_epochs
        self.patience = patience
        self.lr = lr
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.study_path = study_path
        self.verbose = verbose
        self.weight_sharing = weight_sharing
        self.max_params = max_params

    def _search(self, X: np.ndarray, targets: np.ndarray, stratify: np.ndarray | None, extra: Any) -> None:
        """Split, standardise, search; sets the fitted attributes only once the search has succeeded."""
        from archsearch.config import SearchConfig
        from archsearch.study import Study
        from archsearch.tasks import Task
        from archsearch.tasks._files import scale_of

        name = type(self).__name__
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction: must be in (0, 1), got {self.validation_fraction}")
        train, val = train_test_split(
            np.arange(len(X)), test_size=self.validation_fraction, random_state=self.seed, stratify=stratify
        )
        mean, scale = scale_of(X[train])
        x = torch.as_tensor((X - mean) / scale, dtype=torch.float32)
        regression = self._problem == "regression"
        preprocessing: dict[str, Any] = {
            "features": [f"x{i}" for i in range(X.shape[1])],
            "mean": mean.tolist(),
            "std": scale.tolist(),
        }
        if regression:
            y_mean, y_scale = (float(v) for v in scale_of(targets[train]))
            y = torch.as_tensor((targets - y_mean) / y_scale, dtype=torch.float32)
            preprocessing.update(target_mean=y_mean, target_std=y_scale)
            n_classes = 0
        else:
            y = torch.as_tensor(targets, dtype=torch.int64)
            preprocessing["classes"] = [_stored_label(label) for label in extra.tolist()]
            n_classes = len(extra)
        task = Task(
            "arrays",
            x[train],
            y[train],
            x[val],
            y[val],
            x[:0],
            y[:0],
            n_classes,
            config={"name": "arrays", "problem": self._problem},
            preprocessing=preprocessing,
            problem=self._problem,
        )
        training = {"max_epochs": self.max_epochs, "patience": self.patience, "lr": self.lr,
                    "weight_decay": self.weight_decay}  # fmt: skip
        study = None
        try:
            config = SearchConfig(
                task=task,
                space=self.space,
                strategy=self.strategy,
                evaluator=self.trainer,
                training=training,
                steps=math.ceil(self.budget / self.children_per_step),
                children_per_step=self.children_per_step,
                seed=self.seed,
                weight_sharing=self.weight_sharing,
                max_params=self.max_params,
            )
            study = Study.create(self.study_path, config)
            study.run(progress=self.verbose)
            best = study.best()
            if best is None:
                raise ArchsearchError("no network trained successfully")
            model = study.best_model()
        except ArchsearchError as exc:
            if study is not None:
                study.close()
            raise ValueError(f"{name}: {exc}") from None
        self.mean_, self.scale_ = mean, scale
        if regression:
            self.target_mean_, self.target_scale_ = preprocessing["target_mean"], preprocessing["target_std"]
        else:
            self.classes_ = extra
        self.study_, self.best_architecture_, self.best_model_ = study, best.architecture, model

    def _outputs(self, X: Any) -> torch.Tensor:
        """The network's outputs, computed in float64 so that a row's prediction never depends on
        which other rows share its call (float32 matrix products round differently by batch size)."""
        check_is_fitted(self, "best_model_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        weights = {name: value.double() for name, value in self.best_model_.state_dict().items()}
        with torch.no_grad():
            return torch.func.functional_call(
                self.best_model_, weights, (torch.as_tensor((X - self.mean_) / self.scale_),)
            )

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the open study: ``study_`` comes back reopened (read-only) from
        ``study_path``, or ``None`` for a search kept in memory."""
        state = self.__dict__.copy()
        state.pop("study_", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "best_model_" in state:
            from archsearch.study import Study

            self.study_ = Study.open(self.study_path, readonly=True) if self.study_path else None


_PARAMETERS = """
    Args:
        strategy: ``"reinforce"``, ``"evolution"``, ``"random"`` or ``"tpe"``.
        budget: number of networks trained (rounded up to whole steps).
        children_per_step: networks per strategy step.
        space: an ``MLPSpace`` (default: the seed space, up to 5 layers of 1-32 units).
        trainer: ``"batched"`` or ``"serial"``.
        max_epochs, patience, lr, weight_decay: child training (see ``TrainConfig``).
        validation_fraction: share of the rows held out for the reward.
        seed: seeds the split, the strategy and every child.
        study_path: a study file to keep the search and its data in (default: in memory).
        verbose: show the search's progress bar.
"""


class NASClassifier(ClassifierMixin, _NASEstimator):
    """Searches an MLP for ``(X, y)`` and predicts with the best one found (reward: validation accuracy)."""

    def fit(self, X: Any, y: Any) -> NASClassifier:  # noqa: N803 -- scikit-learn's names
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"NASClassifier: y has one class only ({classes[0]!r}); nothing to classify")
        stratify = codes if np.bincount(codes).min() >= 2 else None
        self._search(X, codes, stratify, classes)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        """Class probabilities, columns in the order of ``classes_``."""
        return torch.softmax(self._outputs(X), dim=1).numpy()

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        predicted = self._outputs(X).argmax(dim=1).numpy()
        return self.classes_[predicted]


class NASRegressor(RegressorMixin, _NASEstimator):
    """Searches an MLP for ``(X, y)`` with a numeric ``y`` and predicts with the best one found.

    The network is trained on the standardised target with mean squared error; its reward is
    the validation R^2 clipped at 0 (see ``archsearch.evaluation._scoring``).
    """

    _problem = "regression"

    def fit(self, X: Any, y: Any) -> NASRegressor:  # noqa: N803 -- scikit-learn's names
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        self._search(X, y.astype(np.float64), None, None)
        return self

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        return self._outputs(X)[:, 0].numpy() * self.target_scale_ + self.target_mean_


NASClassifier.__doc__ = f"{NASClassifier.__doc__}\n{_PARAMETERS}"
NASRegressor.__doc__ = f"{NASRegressor.__doc__}\n{_PARAMETERS}"
