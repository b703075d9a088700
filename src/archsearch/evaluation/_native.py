"""The batched trainer's compiled epoch: ``_kernel.cpp``, built on first use and loaded with ctypes.

A group of small MLPs spends most of a PyTorch epoch on the price of launching about fifty small
operations, not on arithmetic; one compiled function per epoch removes that price and computes
each child at its own widths. The source is plain C++ with no headers beyond the standard
library's, so it builds in a second or two with the system's compiler (``$CXX``, else ``c++``,
``g++`` or ``clang++``), for this machine's processor (``-march=native``). The library is cached
under ``$ARCHSEARCH_CACHE`` (default: the user's cache directory, ``~/.cache/archsearch``), named by
a hash of the source, the flags, the compiler and the processor, so a changed kernel or another
machine sharing the directory builds its own; it is written under a temporary name and renamed,
so processes building at once never read a half-written file, and a damaged one is built again.

Nothing depends on it: without a compiler, or when the build fails, the batched trainer keeps its
PyTorch epoch, after one warning line. ``ARCHSEARCH_KERNEL=0`` turns the compiled epoch off
without a warning (the benchmarks use it to time both side by side).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from functools import cache
from pathlib import Path

SOURCE = Path(__file__).with_name("_kernel.cpp")
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-std=c++17", "-shared", "-fPIC")
SWITCH = "ARCHSEARCH_KERNEL"
_ABI = 3  # archsearch_kernel_abi() of the source this module speaks to
_BUILD_TIMEOUT = 300.0  # seconds: a busy machine may be slow, a hung compiler must not hang a search


class Unavailable(Exception):
    """The compiled epoch cannot be built or loaded here (the message says why)."""


def enabled() -> bool:
    """Whether the compiled epoch is wanted (``ARCHSEARCH_KERNEL`` is not ``0``)."""
    return os.environ.get(SWITCH, "1").strip() != "0"


def cache_dir() -> Path:
    """Where built libraries are kept."""
    root = os.environ.get("ARCHSEARCH_CACHE")
    if root:
        return Path(root) / "kernels"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "archsearch" / "kernels"


def _processor() -> str:
    """What ``-march=native`` depends on: the processor's feature flags where the system lists them."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def compiler() -> str:
    """The C++ compiler to build with; :class:`Unavailable` when there is none."""
    chosen = os.environ.get("CXX") or next(
        (found for name in ("c++", "g++", "clang++") if (found := shutil.which(name))), None
    )
    if not chosen:
        raise Unavailable("no C++ compiler found (install one, or name it in CXX)")
    return chosen


def build(cxx: str) -> Path:
    """The library built from :data:`SOURCE` with ``cxx``: from the cache, or compiled into it."""
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS).encode(), cxx.encode(), _processor().encode()]))
    target = cache_dir() / f"kernel-{key.hexdigest()[:20]}.so"
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(handle)
    except OSError as exc:
        raise Unavailable(f"cannot write the compiled epoch to {target.parent}: {exc.strerror or exc}") from None
    try:
        done = subprocess.run([cxx, *FLAGS, str(SOURCE), "-o", partial], capture_output=True, text=True,
                              timeout=_BUILD_TIMEOUT, check=False)  # fmt: skip
        if done.returncode != 0:
            first = next((line for line in done.stderr.splitlines() if line.strip()), f"exit code {done.returncode}")
            raise Unavailable(f"{cxx} could not build the compiled epoch: {first.strip()}")
        os.replace(partial, target)
    except (OSError, subprocess.SubprocessError) as exc:
        raise Unavailable(f"{cxx} could not build the compiled epoch: {exc}") from None
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


@cache
def library() -> ctypes.CDLL | None:
    """The compiled epoch, or None (with one warning, once per process) when it cannot be had here."""
    try:
        try:
            cxx = compiler()
            path = build(cxx)
            try:
                lib = _load(path)
            except Unavailable:  # a damaged file in the cache: built again, once
                path.unlink(missing_ok=True)
                lib = _load(build(cxx))
        except (OSError, RuntimeError) as exc:  # the source unreadable, no home directory for the cache
            raise Unavailable(f"cannot build the compiled epoch: {exc}") from None
    except Unavailable as exc:
        warnings.warn(f"batched trainer: {exc}; training with its slower PyTorch epoch", stacklevel=2)
        return None
    lib.archsearch_train.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.archsearch_train.restype = ctypes.c_int64
    return lib


def _load(path: Path) -> ctypes.CDLL:
    """The library at ``path``, if it is the compiled epoch this module speaks to."""
    try:
        lib = ctypes.CDLL(str(path))
        abi = lib.archsearch_kernel_abi()
    except (OSError, AttributeError) as exc:
        raise Unavailable(f"cannot load the compiled epoch {path}: {exc}") from None
    if abi != _ABI:
        raise Unavailable(f"{path} is another version of the compiled epoch")
    return lib


class Group(ctypes.Structure):
    """The C ``Group``: every field 8 bytes wide, in the order ``_kernel.cpp`` declares them."""

    _fields_ = [
        *((name, ctypes.c_int64) for name in ("depth", "outputs", "regression", "n_train", "n_val", "cols", "slots",
                                              "total")),
        *((name, ctypes.c_void_p) for name in ("sizes", "widths", "acts", "offsets", "params", "first", "second",
                                               "x", "y", "work")),
        ("work_stride", ctypes.c_int64),
        ("scratch", ctypes.c_void_p),
        ("stats", ctypes.c_void_p),
        *((name, ctypes.c_double) for name in ("lr", "beta1", "beta2", "eps", "weight_decay")),
        *((name, ctypes.c_int64) for name in ("max_epochs", "patience", "window", "monitor_loss")),
        ("min_gain", ctypes.c_double),
        ("sst", ctypes.c_double),
        *((name, ctypes.c_void_p) for name in ("ring", "curves", "best", "waited", "event", "event_epoch")),
        *((name, ctypes.c_int64) for name in ("epoch", "validated", "stop")),
    ]  # fmt: skip
