"""Controller overhead per step: sampling 15 architectures and one REINFORCE update.

python benchmarks/controller.py [--steps 300] [--children 15]
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import report
from archsearch.space import MLPSpace
from archsearch.strategies import Reinforce, outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--children", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (a study runs its controller on 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    strategy = Reinforce(MLPSpace(), seed=0)

    def reward(arch) -> float:  # noqa: ANN001
        return sum(layer.units == 32 for layer in arch.layers) / len(arch.layers)

    sample, update = [], []
    for step in range(args.steps + 20):
        start = time.perf_counter()
        archs = strategy.ask(args.children)
        middle = time.perf_counter()
        strategy.tell(outcomes(archs, [reward(a) for a in archs]))
        end = time.perf_counter()
        if step >= 20:  # warm-up excluded
            sample.append(middle - start)
            update.append(end - middle)
    median = lambda xs: sorted(xs)[len(xs) // 2] * 1e3  # noqa: E731
    total = [a + b for a, b in zip(sample, update)]
    rows = [["sample", median(sample)], ["update", median(update)], ["step (sample + update)", median(total)]]
    report(
        "controller",
        f"REINFORCE controller, {args.children} architectures per step, median over {args.steps} steps (ms)",
        ["part", "ms"],
        rows,
        {"children": args.children, "sample_ms": median(sample), "update_ms": median(update), "step_ms": median(total)},
    )


if __name__ == "__main__":
    main()
