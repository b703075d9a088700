"""Bounds on every size, count and rate archsearch accepts, and the checks that enforce them.

A setting comes from the command line, from Python or from a study file (untrusted input); the
constructors of spaces, strategies, ``TrainConfig`` and executors check it against these bounds
before anything is started or written, so that no setting can make archsearch spawn processes
or threads without limit, hang while building a controller, or overflow while counting a space.
The command line checks its flags against the same numbers (and against this machine's cores)
so that its messages name the flag. docs/limits.md lists them.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
import re
from typing import Any

from archsearch.errors import ArchsearchError, short

#: seeds are non-negative and fit a signed 64-bit integer (SQLite's, and numpy's SeedSequence takes them)
MAX_SEED = 2**63 - 1
#: worker processes at once: this many per core available to this process, and never more than MAX_WORKERS
WORKERS_PER_CORE = 4
MAX_WORKERS = 256
#: threads (or batched-trainer worker processes) one trainer uses; the command line also keeps them within the cores
MAX_THREADS = 256
MAX_RETRIES = 100
MAX_STEPS = 10**7
MAX_CHILDREN_PER_STEP = 10**5
MAX_EPOCHS = 10**5
MAX_FOLDS = 100  # cross-validation folds per child
MAX_ENSEMBLE = 100  # networks in a study's final ensemble
MAX_BATCH_SIZE = 2**20
MAX_TIME_LIMIT = 10**6  # seconds of training per child, about 11.6 days
MAX_RATE = 10.0  # learning rates, weight decay, entropy weight
MAX_COUNT = 10**6  # patience, rank window, evolution population, TPE start-up trials, --top
MAX_CURRICULUM = 10**9  # a depth curriculum's EVERY and BY
MAX_SEEDS = 10**4  # compare: seeds per strategy
MAX_BUDGET = 10**7  # compare: queries per run; sample: architectures
#: search spaces: the longest schedule a controller is built for, and the choices one decision offers
MLP_MAX_LAYERS = 64
CNN_MAX_LAYERS = 16  # with skips, layer i has an anchor decision of 2 ** (i - 1) sets
CODE_MAX_LENGTH = 64
MAX_CHOICES = 64
MAX_UNITS = 4096
MAX_FILTERS = 1024
MAX_KERNEL = 15
MAX_STRIDE = 8
#: controller size
MAX_SUPERNET_PARAMS = 50_000_000  # weight sharing: the trainable parameters of one supernet
MAX_HIDDEN_SIZE = 1024
MAX_CONTROLLER_LAYERS = 8

#: the form of a device name: cpu, mps, cuda or cuda:N
DEVICE_FORM = re.compile(r"cpu|mps|cuda(?::(\d{1,4}))?")


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover -- not Linux
        return os.cpu_count() or 1


def max_workers() -> int:
    """The most worker processes this machine is given: ``WORKERS_PER_CORE`` per core, at most ``MAX_WORKERS``."""
    return min(MAX_WORKERS, WORKERS_PER_CORE * available_cores())


def integer(field: str, value: Any, minimum: int, maximum: int) -> int:
    """``value`` as an int within ``minimum..maximum``; a bool, float or text is refused, not rounded."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ArchsearchError(f"{field}: must be an integer, got {short(repr(value))}") from None
    if number < minimum:
        raise ArchsearchError(f"{field}: must be at least {minimum}, got {number}")
    if number > maximum:
        raise ArchsearchError(f"{field}: must be at most {maximum}, got {number}")
    return number


def real(field: str, value: Any, minimum: float, maximum: float, *, above: bool = False) -> float:
    """``value`` as a finite float within ``[minimum, maximum]`` (``(minimum, maximum]`` with ``above``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArchsearchError(f"{field}: must be a number, got {short(repr(value))}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        number = math.inf
    if not math.isfinite(number):
        raise ArchsearchError(f"{field}: must be a finite number, got {short(repr(value))}")
    if number < minimum or (above and number == minimum):
        raise ArchsearchError(f"{field}: must be {'>' if above else '>='} {plain(minimum)}, got {short(repr(value))}")
    if number > maximum:
        raise ArchsearchError(f"{field}: must be at most {plain(maximum)}, got {short(repr(value))}")
    return number


def plain(bound: float) -> str:
    """A bound as people write it: 10 and 1000000, not 10.0 and 1e+06."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def known_names(field: str, values: Any, known: Any) -> tuple[str, ...]:
    """``values`` as distinct names, each one of ``known`` (a space's optimizers, a formula's operations),
    or one line naming ``field``."""
    names = tuple(str(n) for n in choices(field, values, "distinct names"))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ArchsearchError(f"{field}: unknown {unknown[0]!r:.40} (known: {', '.join(known)})")
    if not names or len(set(names)) != len(names):
        raise ArchsearchError(f"{field}: need distinct names, got {list(names)}")
    return names


def choices(field: str, values: Any, what: str) -> list[Any]:
    """``values`` as a list of at most ``MAX_CHOICES`` items (``what`` says what they must be)."""
    try:
        if isinstance(values, str | bytes):
            raise TypeError
        items = list(values)
    except TypeError:
        raise ArchsearchError(f"{field}: need a list of {what}, got {short(repr(values))}") from None
    if len(items) > MAX_CHOICES:
        raise ArchsearchError(f"{field}: at most {MAX_CHOICES} choices, got {len(items)}")
    return items


def seed(field: str, value: Any) -> int:
    """A seed: an integer in ``0..MAX_SEED``."""
    return integer(field, value, 0, MAX_SEED)


def device(field: str, value: Any) -> str:
    """``value`` if it names a device of this machine: ``cpu``, ``cuda``, ``cuda:N`` (or ``mps``)."""
    match = DEVICE_FORM.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ArchsearchError(f"{field}: must be cpu, cuda or cuda:N, got {short(repr(value))}")
    if value == "cpu":
        return value
    import torch

    if value == "mps":
        if not torch.backends.mps.is_available():
            raise ArchsearchError(f"{field}: 'mps' is not available on this machine")
        return value
    if not torch.cuda.is_available():
        raise ArchsearchError(f"{field}: {short(repr(value))} is not available on this machine (it has no CUDA device)")
    count = torch.cuda.device_count()
    if match.group(1) is not None and int(match.group(1)) >= count:
        shown = short(repr(value))
        raise ArchsearchError(f"{field}: {shown} is not available on this machine (it has {count} CUDA devices)")
    return value
