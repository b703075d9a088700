"""The report's section for a population study (MIHA, PBT): the final network's lineage, its settings
over the epochs it trained, and the fitness of each cycle (MIHA) or each member per round (PBT)."""

from __future__ import annotations

import html
from typing import Any

import numpy as np


def lineage_section(study: Any, trials: list[Any], figure: Any, png: Any) -> str | None:
    """HTML for a population study's lineage, or ``None`` for any other study (``figure``, ``png``: the
    report's figure helpers)."""
    from archsearch.study._population import lineage_of, settings_of

    if not study.continues or not trials:
        return None
    best = study.best()
    if best is None:
        return None
    by_number = {t.number: t for t in trials}
    chain = [by_number[n] for n in lineage_of(study, best.number) if n in by_number]
    images = [_settings_figure(chain, settings_of, png), _fitness_figure(study, trials, figure, png)]
    steps = " → ".join(f"{t.number} ({t.epochs} ep.)" for t in chain)
    text = (f"<p>The final network, trial {best.number}, trained along the lineage {html.escape(steps)}: "
            f"{sum(t.epochs for t in chain)} epochs from fresh weights. `archsearch export` writes this schedule "
            "(schedule.json), and `archsearch replay` trains it again from scratch.</p>")  # fmt: skip
    return text + "".join(f'<img alt="{alt}" src="{src}">' for alt, src in images if src)


def _settings_figure(chain: list[Any], settings_of: Any, png: Any) -> tuple[str, str]:
    """Learning rate, batch size, optimizer, activations and validation score over the lineage's epochs."""
    from archsearch.experiments._plots import _pyplot

    fig, axes = _pyplot().subplots(5, 1, figsize=(7, 8), dpi=110, sharex=True)
    fig.suptitle("The final network's settings over the epochs it trained")
    edges = np.cumsum([0] + [t.epochs for t in chain])
    settings = [settings_of(t.architecture) for t in chain]
    for ax, key, label in zip(axes[:3], ("lr", "batch_size", "optimizer"), ("learning rate", "batch size", "optimizer")):
        values = [s[key] for s in settings]
        if key == "optimizer":
            names = sorted(set(values))
            values = [names.index(v) for v in values]
            ax.set_yticks(range(len(names)), names)
        elif key == "lr":
            ax.set_yscale("log")
        ax.stairs(values, edges, baseline=None, color="#1f4e79", linewidth=2)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    layers = len(settings[0]["activations"])
    names = sorted({a for s in settings for a in s["activations"]})
    for layer in range(layers):
        values = [names.index(s["activations"][layer]) + 0.08 * layer for s in settings]
        axes[3].stairs(values, edges, baseline=None, linewidth=2, label=f"layer {layer + 1}")
    axes[3].set_yticks(range(len(names)), names)
    axes[3].set_ylabel("activation")
    if layers:
        axes[3].legend(loc="upper left", fontsize="small")
    scores = [v for t in chain for v in t.val_curve]
    axes[4].plot(np.arange(1, len(scores) + 1), scores, color="#1f4e79")
    for edge in edges[1:-1]:
        for ax in axes:
            ax.axvline(edge, color="#999999", linewidth=0.6, linestyle=":")
    axes[4].set_ylabel("validation score")
    axes[4].set_xlabel("epoch of the final network's training")
    axes[4].grid(True, alpha=0.3)
    fig.tight_layout()
    return "settings over epochs", png(fig)


def _fitness_figure(study: Any, trials: list[Any], figure: Any, png: Any) -> tuple[str, str]:
    """MIHA: every alternative's fitness per cycle, the chosen one marked; PBT: each member's validation
    score per round, an exploit (a member that took another's weights) marked."""
    name = study.config["strategy"]["name"]
    if name == "miha":
        fig, ax = figure("Fitness of each cycle's alternatives (the chosen one filled)")
        metrics = dict(study.step_metrics())
        strategy = study.strategy
        chosen = {t.parent for t in trials if strategy.phase(t.step)[0] == "chosen"}
        for t in trials:
            what, cycle, _ = strategy.phase(t.step)
            fitness = metrics.get(t.step, {}).get("fitness")
            if what == "alternative" and fitness is not None:
                ax.scatter(cycle + 1, fitness, s=40, color="#1f4e79",
                           facecolors="#1f4e79" if t.number in chosen else "none")  # fmt: skip
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("cycle")
        ax.set_ylabel(f"fitness ({strategy.fitness})")
        return "fitness per cycle", png(fig)
    fig, ax = figure("Each member's validation score per round (x: it copied another member)")
    width = study.children_per_step
    for slot in range(width):
        members = [t for t in trials if t.slot == slot]
        ax.plot([t.step + 1 for t in members], [t.val_score for t in members], linewidth=1)
        exploited = [t for t in members if t.parent is not None and t.parent != t.number - width]
        ax.scatter([t.step + 1 for t in exploited], [t.val_score for t in exploited], marker="x", color="black")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("round")
    ax.set_ylabel("validation score")
    return "score per round", png(fig)
