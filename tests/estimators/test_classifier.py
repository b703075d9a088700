"""NASClassifier as scikit-learn expects an estimator to behave."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_wine
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from archsearch import NASClassifier, Study
from archsearch.space import MLPSpace

# small enough to run every check in seconds, large enough to pass the checks that ask for a decent fit
CHECKED = NASClassifier(budget=12, children_per_step=6)


@parametrize_with_checks([CHECKED])
@pytest.mark.slow
def test_scikit_learn_estimator_checks(estimator, check):
    """All of scikit-learn's checks pass. Two skip themselves: array-API input (needs SCIPY_ARRAY_API=1)
    and pandas input (pandas is not a dependency)."""
    check(estimator)


def test_cross_val_score_in_a_pipeline():
    X, y = load_wine(return_X_y=True)
    pipeline = make_pipeline(StandardScaler(), NASClassifier(budget=12, children_per_step=6, max_epochs=30))
    scores = cross_val_score(pipeline, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.75, scores


def test_fitted_attributes_and_probabilities():
    X, y = load_wine(return_X_y=True)
    labels = np.array(["barolo", "grignolino", "barbera"])[y]
    space = MLPSpace(units=(4, 8), max_layers=2)
    model = NASClassifier(budget=20, children_per_step=10, space=space, strategy="evolution", seed=3).fit(X, labels)
    assert list(model.classes_) == ["barbera", "barolo", "grignolino"]
    assert len(model.study_.trials()) == 20 and model.study_.test_score() is None  # no test split inside fit
    assert space.contains(model.best_architecture_)
    proba = model.predict_proba(X[:5])
    assert proba.shape == (5, 3) and np.allclose(proba.sum(1), 1)
    assert list(model.predict(X[:5])) == list(model.classes_[proba.argmax(1)])
    assert model.score(X, labels) > 0.8


def test_a_size_limit_keeps_the_network_within_it():
    X, y = load_wine(return_X_y=True)  # 13 features, 3 classes: one hidden unit already has 20 parameters
    model = NASClassifier(budget=20, children_per_step=10, max_params=100, seed=2).fit(X, y)
    trials = model.study_.trials()
    assert model.best_architecture_.num_params(13, 3) <= 100
    assert any(t.status == "infeasible" for t in trials) and all(t.params <= 100 for t in trials if t.status == "ok")
    assert model.score(X, y) > 0.8


def test_same_seed_same_model_and_clone_is_unfitted():
    X, y = load_wine(return_X_y=True)
    a = NASClassifier(budget=10, children_per_step=5, seed=1).fit(X, y)
    b = NASClassifier(budget=10, children_per_step=5, seed=1).fit(X, y)
    assert a.best_architecture_ == b.best_architecture_
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not hasattr(clone(a), "best_model_")


def test_pickle_keeps_the_model_and_reopens_a_study_file(tmp_path):
    X, y = load_wine(return_X_y=True)
    model = NASClassifier(budget=10, children_per_step=5, study_path=str(tmp_path / "s.db")).fit(X, y)
    model.study_.close()
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))
    assert isinstance(restored.study_, Study) and len(restored.study_.trials()) == 10


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"strategy": "annealing"}, "unknown strategy 'annealing'"),
        ({"validation_fraction": 1.5}, "validation_fraction"),
        ({"max_params": 10}, "max_params: no architecture of the space has at most 10 params"),
    ],
)
def test_bad_settings_are_value_errors(params, message):
    X, y = load_wine(return_X_y=True)
    with pytest.raises(ValueError, match=message):
        NASClassifier(budget=2, children_per_step=2, **params).fit(X, y)


def test_a_failed_fit_leaves_the_estimator_unfitted(tmp_path):
    from sklearn.exceptions import NotFittedError

    X, y = load_wine(return_X_y=True)
    (tmp_path / "taken.db").write_text("someone else's file")
    model = NASClassifier(budget=2, children_per_step=2, study_path=str(tmp_path / "taken.db"))
    with pytest.raises(ValueError, match="already exists"):
        model.fit(X, y)
    with pytest.raises(NotFittedError):
        model.predict(X)
