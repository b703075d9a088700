"""A child's forward and backward pass through the supernet against the stand-alone child.

Architectures are drawn from the default CNN space (up to 4 layers, skips, batch
normalization); each runs forward and backward on a minibatch of 64 28x28 one-channel
images, through the supernet (slice and separate sharing) and as the network
``arch.build`` returns, on one thread, in both memory layouts (images, child and supernet
alike). The three take turns, one pass each, ``--repeats``
times (so that a busy moment of a shared machine hits them alike); each keeps its best
pass, and the ratio is the supernet's best over the stand-alone child's best.

    python benchmarks/supernet_speed.py [--archs 8] [--repeats 20]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from _common import best_of, report
from archsearch.evaluation import SHARINGS, build_supernet
from archsearch.space import CNNSpace

#: memory layouts of images and weights: PyTorch's default, and the one the serial trainer uses for images
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def step(model, x: torch.Tensor, y: torch.Tensor, *args) -> None:  # noqa: ANN001
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x, *args), y).backward()


def best_turns(runs: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Best time of each run, the runs taking turns ``repeats`` times (after one unmeasured turn)."""
    best = {name: math.inf for name in runs}
    for turn in range(repeats + 1):
        for name, run in runs.items():
            seconds = best_of(1, run)
            best[name] = min(best[name], seconds) if turn else best[name]
    return best


def measure(arch, supernets: dict, x: torch.Tensor, y: torch.Tensor, generator, repeats: int) -> dict:  # noqa: ANN001
    """Stand-alone ms per pass and each sharing's ratio, in both memory layouts."""
    result = {}
    for layout, fmt in LAYOUTS.items():
        child = arch.build(1, 10, generator).train().to(memory_format=fmt)
        images = x.contiguous(memory_format=fmt)
        runs = {"alone": lambda: step(child, images, y)}
        for sharing, net in supernets.items():
            net.to(memory_format=fmt)
            runs[sharing] = lambda net=net: step(net, images, y, arch)
        best = best_turns(runs, repeats)
        result[layout] = {"standalone_ms": best["alone"] * 1000, **{s: best[s] / best["alone"] for s in SHARINGS}}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = CNNSpace()
    rng = np.random.default_rng(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    x, y = torch.randn(64, 1, 28, 28, generator=generator), torch.randint(10, (64,), generator=generator)
    supernets = {sharing: build_supernet(space, 1, 10, sharing, generator).train() for sharing in SHARINGS}
    rows, data = [], []
    for _ in range(args.archs):
        arch = space.sample(rng)
        result = measure(arch, supernets, x, y, generator, args.repeats)
        rows.append([str(arch), *(v for layout in LAYOUTS for v in result[layout].values())])
        data.append({"arch": str(arch), **result})
    means = {f"{layout} {s}": float(np.mean([d[layout][s] for d in data])) for layout in LAYOUTS for s in SHARINGS}
    rows.append(["mean ratio", *(v for layout in LAYOUTS for v in ("", *(means[f"{layout} {s}"] for s in SHARINGS)))])
    columns = ["architecture"] + [f"{layout} {c}" for layout in LAYOUTS for c in ("ms/pass alone", *SHARINGS)]
    report("supernet_speed", "forward + backward, batch 64 of 28x28, 1 thread: supernet / stand-alone", columns, rows,
           {"repeats": args.repeats, "archs": data, "mean_ratio": means})  # fmt: skip

if __name__ == "__main__":
    main()
