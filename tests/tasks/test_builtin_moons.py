import sys

import numpy as np
from sklearn.datasets import make_moons

from archsearch.tasks import moons
from archsearch.tasks._builtin import MOONS_EMBEDDED, _moons_points


def test_the_embedded_points_are_make_moons():
    n_samples, noise, seed = MOONS_EMBEDDED
    x, y = _moons_points(n_samples, noise, seed)
    want_x, want_y = make_moons(n_samples=n_samples, noise=noise, shuffle=True, random_state=seed)
    assert x.dtype == np.float64 and np.array_equal(x, want_x)
    assert np.array_equal(y, want_y)


def test_the_default_task_needs_no_sklearn_import_and_other_settings_generate(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # importing it now raises ImportError
    task = moons()
    assert (len(task.x_train), len(task.x_val), len(task.x_test)) == (700, 200, 100)
    monkeypatch.undo()
    other = moons(n_samples=1000, noise=0.2, data_seed=1)
    assert not np.array_equal(other.x_train.numpy(), task.x_train.numpy())
    x, _ = make_moons(n_samples=1000, noise=0.2, shuffle=True, random_state=1)
    assert np.array_equal(other.x_train.numpy(), x[:700].astype(np.float32))
