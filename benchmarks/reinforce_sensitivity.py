"""How REINFORCE's settings change its search: NAS-Bench-Macro, 30 seeds each.

Each row is one setting of the controller's update (advantage, learning rate,
entropy weight, children per step) run through ``archsearch.experiments.compare``
exactly as ``archsearch compare`` runs it. Figures: the median number of
queries until the best architecture is found (failures count as later than the
budget), the share of seeds that find it within the budget, and the mean best
accuracy after 100 queries.

    .venv/bin/python benchmarks/reinforce_sensitivity.py [--seeds 30] [--budget 2000]
"""

from __future__ import annotations

import argparse
import time

from _common import report

from archsearch.experiments import compare

DEFAULT = {"advantage": "rank", "lr": 0.03, "entropy_weight": 0.1}
SETTINGS: list[tuple[str, dict, int]] = [
    ("default: rank, lr 0.03, entropy 0.1", {}, 5),
    ("rank, entropy 0.05", {"entropy_weight": 0.05}, 5),
    ("rank, entropy 0.2", {"entropy_weight": 0.2}, 5),
    ("rank, lr 0.01", {"lr": 0.01}, 5),
    ("rank, lr 0.1", {"lr": 0.1}, 5),
    ("rank, window 50", {"rank_window": 50}, 5),
    ("rank, 2 children per step", {}, 2),
    ("rank, 15 children per step", {}, 15),
    (
        "baseline, lr 0.01, entropy 0.001 (Zoph & Le's form)",
        {"advantage": "baseline", "lr": 0.01, "entropy_weight": 1e-3},
        5,
    ),
    ("baseline, lr 0.05, entropy 0.01", {"advantage": "baseline", "lr": 0.05, "entropy_weight": 0.01}, 5),
    ("baseline, lr 0.1, entropy 0.01", {"advantage": "baseline", "lr": 0.1, "entropy_weight": 0.01}, 5),
    ("baseline, lr 0.1, entropy 0.01, 15 per step", {"advantage": "baseline", "lr": 0.1, "entropy_weight": 0.01}, 15),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--budget", type=int, default=2000)
    args = parser.parse_args()
    rows, data = [], []
    for label, options, per_step in SETTINGS:
        started = time.perf_counter()
        result = compare(
            ["reinforce"],
            args.seeds,
            args.budget,
            benchmark="nas-bench-macro",
            children_per_step=per_step,
            strategy_options={"reinforce": {**DEFAULT, **options}},
        )
        entry = result.summary()["strategies"]["reinforce"]
        median = entry["median_queries_to_best"]
        rows.append(
            [label, per_step, "-" if median is None else median, f"{entry['success_rate']:.0%}",
             entry["mean_best_at"]["100"], time.perf_counter() - started]
        )  # fmt: skip
        data.append({"setting": label, "options": {**DEFAULT, **options}, "children_per_step": per_step, **entry})
        print(rows[-1], flush=True)
    report(
        "reinforce_sensitivity",
        f"REINFORCE on NAS-Bench-Macro: {args.seeds} seeds, budget {args.budget} queries",
        ["setting", "children/step", "median queries to best", "found", "mean best@100", "seconds"],
        rows,
        {"seeds": args.seeds, "budget": args.budget, "settings": data},
    )


if __name__ == "__main__":
    main()
