"""The HTML report: its sections, its escaping, and how it looks in a real browser."""

from __future__ import annotations

import base64
import csv
import re
import shutil
import subprocess

import numpy as np
import pytest

from archsearch.evaluation import BatchedTrainer, TrainConfig
from archsearch.experiments import sample
from archsearch.report import render_report, write_report
from archsearch.study import Study
from archsearch.tasks import from_file, get_task

SECTIONS = ["overview", "reward", "controller", "best-so-far", "boundary", "histogram", "front", "top", "config"]


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    task = get_task("moons")
    study = Study.create(
        folder / "moons.db",
        task,
        steps=6,
        children_per_step=5,
        evaluator=BatchedTrainer(task, TrainConfig(max_epochs=10)),
    )
    study.run(progress=False)
    random_sample = sample("moons", 40, folder / "sample.db", trainer={"max_epochs": 10}, progress=False)
    with Study.open(random_sample.study, readonly=True) as sampled:
        path = write_report(study, folder / "report.html", sample=sampled)
    return folder, study, path


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_every_section_with_embedded_figures(studies):
    _, _, path = studies
    page = path.read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in page, section
    images = _images(page)
    assert len(images) == 6 and all(image.startswith(b"\x89PNG") and len(image) > 5_000 for image in images)
    assert "http://" not in page and "https://" not in page  # self-contained: nothing to fetch
    top = re.search(r'<section id="top">.*?</section>', page).group(0)
    assert top.count("<tr>") == 1 + 10  # header and the top 10
    front = re.search(r'<section id="front">.*?</section>', page).group(0)
    listed = int(re.search(r"<p>(\d+) of \d+ successful trials are not dominated in val_score:max, params:min", front)[1])
    assert front.count("<tr>") == 1 + min(listed, 20)


def test_sections_follow_what_the_study_has(tmp_path):
    """A random search on a table: no controller, no boundary; its own trials make the histogram."""
    from archsearch.evaluation import LookupEvaluator, get_benchmark
    from archsearch.strategies import RandomSearch

    bench = get_benchmark("nas-bench-macro")
    study = Study.create(None, None, steps=3, children_per_step=4, space=bench.space,
                         strategy=RandomSearch(bench.space), evaluator=LookupEvaluator(bench))  # fmt: skip
    study.run(progress=False)
    page = render_report(study)
    assert '<section id="controller">' not in page and '<section id="boundary">' not in page
    assert '<section id="histogram">' not in page  # a benchmark's lookups are not trained random networks
    assert '<section id="reward">' in page and '<section id="top">' in page


def test_a_regression_study_plots_predictions_against_true_values(friedman):
    study = Study.create(None, friedman, steps=2, children_per_step=4,
                         evaluator=BatchedTrainer(friedman, TrainConfig(max_epochs=10)))  # fmt: skip
    study.run(progress=False)
    page = render_report(study)
    assert '<section id="fit">' in page and '<section id="boundary">' not in page
    assert "<dt>validation R²</dt>" in page and "<dt>test R²</dt>" in page and "<th>val R²</th>" in page
    assert "accuracy" not in page.split('<section id="config">')[0]


def test_a_regression_study_without_test_rows_has_no_boundary():
    """NASRegressor keeps no test split; two features must not make it a decision boundary."""
    from archsearch import NASRegressor

    X = np.random.default_rng(0).normal(size=(80, 2))
    model = NASRegressor(budget=4, children_per_step=4, max_epochs=5).fit(X, X[:, 0] - 2 * X[:, 1])
    page = render_report(model.study_)
    assert '<section id="boundary">' not in page and '<section id="fit">' not in page


def test_strings_from_the_study_are_escaped(tmp_path):
    hostile = "wine<script>alert(1)<"
    rows = [[i * 0.1, (i * 7) % 3 * 0.5, "abc"[i % 3]] for i in range(30)]
    with open(tmp_path / f"{hostile}.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["x", "<b>bold</b>", "label"], *rows])
    task = from_file(str(tmp_path / f"{hostile}.csv"), "label")
    study = Study.create(tmp_path / f"{hostile}.db", task, steps=1, children_per_step=2,
                         evaluator=BatchedTrainer(task, TrainConfig(max_epochs=3)))  # fmt: skip
    study.run(progress=False)
    page = render_report(study)
    assert "<script>" not in page and "<b>" not in page
    assert "wine&lt;script&gt;alert(1)&lt;" in page


def _chromium() -> str | None:
    return next(
        (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None
    )


@pytest.mark.slow
def test_the_report_renders_in_headless_chromium(studies):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium: make test installs Debian's chromium package; it could not be installed here")
    from matplotlib.image import imread

    folder, _, path = studies
    shot = folder / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,4000"]
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", path.as_uri()], capture_output=True, timeout=120, check=True
    )
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (4000, 1200)
    not_white = (pixels < 0.95).any(axis=2).mean()
    assert 0.05 < not_white < 0.9, not_white  # text and figures, not a blank or an error page
    assert len(np.unique(pixels.reshape(-1, 3).round(2), axis=0)) > 50  # the figures' colours are there
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout  # fmt: skip
    for section in SECTIONS:
        assert f'id="{section}"' in dom, section
    assert dom.count("<img") == 6
