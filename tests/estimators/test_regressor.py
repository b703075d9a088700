"""NASRegressor as scikit-learn expects a regressor to behave."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.datasets import make_friedman1
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from archsearch import NASRegressor, Study
from archsearch.space import MLPSpace


@parametrize_with_checks([NASRegressor(budget=12, children_per_step=6)])
@pytest.mark.slow
def test_scikit_learn_estimator_checks(estimator, check):
    """All of scikit-learn's regressor checks pass (array-API and pandas input skip themselves)."""
    check(estimator)


def friedman(rows: int = 300):
    return make_friedman1(n_samples=rows, noise=0.5, random_state=0)


@pytest.mark.slow
def test_cross_val_score_in_a_pipeline():
    X, y = friedman()
    pipeline = make_pipeline(StandardScaler(), NASRegressor(budget=12, children_per_step=6))
    scores = cross_val_score(pipeline, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.6, scores


def test_predictions_are_in_the_targets_units():
    """The network learns the standardised target; predict scales back, so shifting y shifts them."""
    X, y = friedman()
    space = MLPSpace(units=(8, 16), max_layers=2)
    a = NASRegressor(budget=20, children_per_step=10, space=space, seed=2).fit(X, y)
    b = NASRegressor(budget=20, children_per_step=10, space=space, seed=2).fit(X, 10 * y + 1000)
    assert a.best_architecture_ == b.best_architecture_
    np.testing.assert_allclose(b.predict(X), 10 * a.predict(X) + 1000, rtol=1e-4)
    assert a.score(X, y) > 0.7
    assert a.study_.metric == "r2" and a.study_.test_score() is None  # no test split inside fit
    trial = a.study_.best()
    assert trial.val_score > 0.7 and trial.reward == pytest.approx(trial.val_score**3)


def test_pickle_keeps_the_model(tmp_path):
    X, y = friedman(120)
    model = NASRegressor(budget=10, children_per_step=5, study_path=str(tmp_path / "r.db")).fit(X, y)
    model.study_.close()
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))
    assert isinstance(restored.study_, Study) and restored.study_.metric == "r2"


def test_a_text_target_is_a_value_error():
    X, _ = friedman(40)
    with pytest.raises(ValueError):
        NASRegressor(budget=2, children_per_step=2).fit(X, np.array(["a", "b"] * 20))
