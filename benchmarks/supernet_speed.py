"""A child's forward and backward pass through the supernet against the stand-alone child.

Architectures are drawn from the default CNN space (up to 4 layers, skips, batch
normalization); each runs forward and backward on a minibatch of 64 28x28 one-channel
images, through the supernet (slice and separate sharing) and as the network
``arch.build`` returns, on one thread. Times are the best of ``--repeats`` runs of
``--steps`` passes each; the ratio is supernet time over stand-alone time.

    python benchmarks/supernet_speed.py [--archs 6] [--steps 10] [--repeats 3]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from _common import best_of, report
from archsearch.evaluation import SHARINGS, build_supernet
from archsearch.space import CNNSpace


def passes(model, x: torch.Tensor, y: torch.Tensor, steps: int, *args) -> None:  # noqa: ANN001
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x, *args), y).backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
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
        child = arch.build(1, 10, generator).train()
        alone = best_of(args.repeats, lambda: passes(child, x, y, args.steps))
        times = {s: best_of(args.repeats, lambda: passes(net, x, y, args.steps, arch)) for s, net in supernets.items()}
        ratios = {s: t / alone for s, t in times.items()}
        rows.append([str(arch), alone / args.steps * 1000, *(ratios[s] for s in SHARINGS)])
        data.append({"arch": str(arch), "standalone_ms": alone / args.steps * 1000, "ratio": ratios})
    means = {s: float(np.mean([d["ratio"][s] for d in data])) for s in SHARINGS}
    rows.append(["mean", "", *(means[s] for s in SHARINGS)])
    columns = ["architecture", "stand-alone ms/step", *(f"{s} ratio" for s in SHARINGS)]
    report("supernet_speed", "forward + backward, batch 64 of 28x28, 1 thread", columns, rows,
           {"steps": args.steps, "archs": data, "mean_ratio": means})  # fmt: skip


if __name__ == "__main__":
    main()
