"""The settings space from the command line: a search, its export with the training settings, and the
refusals (one line, exit code 2, nothing written)."""

from __future__ import annotations

import json

import pytest

from .conftest import one_line_error


def test_a_settings_search_and_its_export(tmp_path, run):
    run("search", "--task", "moons", "--space", "settings", "--strategy", "tpe", "--steps", "2",
        "--children-per-step", "3", "--max-epochs", "3", "--max-layers", "2", "--study", "s.db", "--quiet",
        cwd=tmp_path, check=True)  # fmt: skip
    best = json.loads(run("best", "s.db", "--json", cwd=tmp_path, check=True).stdout)
    stored = best["architecture_json"]
    assert stored["kind"] == "settings" and len(stored["layers"]) <= 2
    run("export", "s.db", "--out", "out", "--no-onnx", cwd=tmp_path, check=True)
    described = json.loads((tmp_path / "out" / "architecture.json").read_text())
    assert described["training"] == {"optimizer": stored["optimizer"], "lr": stored["lr"],
                                     "batch_size": stored["batch_size"]}  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (("--task", "moons", "--units", "4,0"), ("--units: must be at least 1",)),
        (("--task", "moons", "--units", "4,4"), ("--units: need distinct positive integers, got [4, 4]",)),
        (("--task", "moons", "--trainer", "batched"), ("--trainer batched", "serial")),
        (("--task", "moons", "--weight-sharing"), ("--weight-sharing", "its own settings")),
        (("--task", "moons", "--curriculum", "1,1"), ("--curriculum",)),
    ],
)
def test_bad_settings_searches_are_one_line(tmp_path, run, argv, needles):
    one_line_error(run("search", "--space", "settings", *argv, "--quiet", cwd=tmp_path), *needles)
    assert list(tmp_path.iterdir()) == []


def test_an_image_task_searched_with_a_feed_forward_space_is_read_as_rows_of_pixels(tmp_path, run):
    run("search", "--task", "digits", "--space", "settings", "--units", "16,32", "--max-layers", "1", "--strategy",
        "random", "--steps", "1", "--children-per-step", "2", "--max-epochs", "2", "--study", "d.db", "--quiet",
        cwd=tmp_path, check=True)  # fmt: skip
    best = json.loads(run("best", "d.db", "--json", cwd=tmp_path, check=True).stdout)
    assert best["architecture_json"]["layers"][0]["units"] in (16, 32) and best["params"] > 64 * 16
    run("export", "d.db", "--out", "out", "--no-onnx", cwd=tmp_path, check=True)
    described = json.loads((tmp_path / "out" / "architecture.json").read_text())
    assert len(described["preprocessing"]["features"]) == 64 and described["preprocessing"]["std"][0] == 16.0
