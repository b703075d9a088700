"""What a child costs to run: floating-point operations and measured CPU latency.

FLOPs count the multiplications and additions of one forward pass on one example (a row, an image,
or one token of a language model), as ``torch.utils.flop_counter`` counts them: two per multiply-add of
the matrix products and convolutions, which dominate; activations, pooling and normalisation are left
out, as in the papers that report FLOPs (MnasNet, NAS-Bench-Macro). An MLP's count has a closed form,
tested equal to the counter's.

Latency is the median wall time of a forward pass on one example (batch 1), in milliseconds, under
``torch.inference_mode`` on one thread (a second thread made the same network's timings spread
further apart on a shared 2-core machine): where the study runs, on its CPU. Each of ``runs`` timed
runs repeats the pass enough times to last about half a millisecond (tiny networks take microseconds,
below what a single reading resolves), after passes for about 20 ms to warm up (caches, the
allocator, the kernels' first calls). The spread recorded with it is the interquartile range of the
runs. It does not depend on the weights' values,
so it is measured on the untrained network, before training: a latency limit costs no training.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn

from archsearch.space import Architecture, MLPArchitecture

#: timed runs per latency measurement, and the time each run aims for
LATENCY_RUNS = 15
_RUN_SECONDS = 5e-4
#: the warm-up before timing: passes for about this long, at least and at most so many
_WARM_UP_SECONDS, _WARM_UP_PASSES = 0.02, (3, 1000)


def example(task: Any) -> tuple[Any, ...]:
    """The arguments of one forward pass on one example of ``task``."""
    if getattr(task, "problem", None) == "language-model":
        return (torch.zeros(1, 1, dtype=torch.long),)
    return (task.x_train[:1],)


def _module(arch: Architecture, task: Any, initialise: bool = True) -> tuple[nn.Module, tuple[Any, ...]]:
    generator = torch.Generator().manual_seed(0) if initialise else None
    model = arch.build(task.in_features, task.out_features, generator=generator)
    model.eval()
    inputs = example(task)
    if getattr(task, "problem", None) == "language-model":
        inputs = (*inputs, model.initial_state(1))
    return model, inputs


def flops(arch: Architecture, task: Any) -> int:
    """Floating-point operations of ``arch``'s forward pass on one example of ``task`` (see the module)."""
    if isinstance(arch, MLPArchitecture):
        sizes = (task.in_features, *arch.widths, task.out_features)
        return 2 * sum(a * b for a, b in zip(sizes, sizes[1:]))
    return counted_flops(arch, task)


def counted_flops(arch: Architecture, task: Any) -> int:
    """FLOPs as ``torch.utils.flop_counter`` counts them on the built network: the reference. The network is
    built on PyTorch's ``meta`` device (shapes only: nothing is allocated or initialised, so counting costs a
    fraction of a real pass), and for real where an operation has no meta version."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.device("meta"):
            model, inputs = _module(arch, task, initialise=False)
            inputs = tuple(_on_meta(x) for x in inputs)
    except (NotImplementedError, RuntimeError):
        model, inputs = _module(arch, task)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
    except (NotImplementedError, RuntimeError):
        model, inputs = _module(arch, task)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
    return int(counter.get_total_flops())


def _on_meta(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return torch.empty(value.shape, dtype=value.dtype, device="meta")
    if isinstance(value, tuple):
        return tuple(_on_meta(v) for v in value)
    return value


def latency(arch: Architecture, task: Any, runs: int = LATENCY_RUNS) -> tuple[float, float]:
    """The median milliseconds of a batch-1 forward pass of ``arch`` on ``task``, and the interquartile
    range of the ``runs`` timed runs (see the module docstring)."""
    model, inputs = _module(arch, task)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            start, passes = time.perf_counter(), 0
            while passes < _WARM_UP_PASSES[0] or (
                time.perf_counter() - start < _WARM_UP_SECONDS and passes < _WARM_UP_PASSES[1]
            ):
                model(*inputs)
                passes += 1
            once = max((time.perf_counter() - start) / passes, 1e-7)
            repeats = max(1, min(1000, int(_RUN_SECONDS / once)))
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                for _ in range(repeats):
                    model(*inputs)
                times.append((time.perf_counter() - start) / repeats * 1e3)
    finally:
        torch.set_num_threads(threads)
    quartiles = statistics.quantiles(times, n=4)
    return statistics.median(times), quartiles[2] - quartiles[0]
