"""One self-contained HTML file about a study: what the search did and what it found.

Sections (each only when the study has what it needs): the reward of every
step with a moving average of the last 20 (the seed paper's Fig. 5); the
controller's loss and entropy; the best reward so far; the decision boundary
of the best network with the misclassified test points marked, for tasks with
two features (Fig. 6); the histogram of random architectures' validation
scores, for a random-sample study or one given with ``sample`` (Fig. 7);
the top architectures; and the study's config. Figures are PNGs embedded as
data URIs, so the file can be mailed or archived alone; every string that comes
from the study is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archsearch._population_report import lineage_section
from archsearch.errors import ArchsearchError
from archsearch.experiments._plots import _pyplot, plot_histogram

MOVING_AVERAGE = 20


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    _pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(title: str) -> tuple[Any, Any]:
    fig, ax = _pyplot().subplots(figsize=(7, 3.6), dpi=110)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(values) + 1) - counts]) / counts


def reward_figure(step_rewards: np.ndarray) -> str:
    fig, ax = _figure("Mean reward per step")
    steps = np.arange(1, len(step_rewards) + 1)
    ax.plot(steps, step_rewards, color="#9bb7d4", linewidth=1, label="mean reward of the step")
    ax.plot(steps, _moving_average(step_rewards, MOVING_AVERAGE), color="#1f4e79", linewidth=2,
            label=f"moving average of the last {MOVING_AVERAGE}")  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel("reward")
    ax.legend(loc="lower right")
    return _png(fig)


def controller_figure(metrics: list[dict[str, float]]) -> str | None:
    if not metrics or "loss" not in metrics[0]:
        return None
    fig, ax = _figure("Controller loss and entropy")
    steps = np.arange(1, len(metrics) + 1)
    ax.plot(steps, [m.get("loss", np.nan) for m in metrics], color="#c0504d", linewidth=1, label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if "entropy" in metrics[0]:
        other = ax.twinx()
        other.plot(steps, [m.get("entropy", np.nan) for m in metrics], color="#4f81bd", linewidth=1.5, label="entropy")
        other.set_ylabel("entropy (nats per architecture)")
        other.legend(loc="upper right")
    ax.legend(loc="upper left")
    return _png(fig)


def best_so_far_figure(rewards: np.ndarray) -> str:
    fig, ax = _figure("Best reward so far")
    ax.plot(np.arange(1, len(rewards) + 1), np.maximum.accumulate(rewards), color="#1f4e79", linewidth=2)
    ax.set_xlabel("trial")
    ax.set_ylabel("best reward")
    return _png(fig)


def boundary_figure(model: torch.nn.Module, task: Any) -> str:
    """The best network's decision regions over the test points; misclassified ones circled in red."""
    x, y = task.split("test")
    everything = torch.cat([task.x_train, task.x_val, x])
    low, high = everything.min(0).values - 0.5, everything.max(0).values + 0.5
    gx, gy = torch.meshgrid(torch.linspace(low[0], high[0], 300), torch.linspace(low[1], high[1], 300), indexing="xy")
    with torch.no_grad():
        regions = model(torch.stack([gx.ravel(), gy.ravel()], 1)).argmax(1).reshape(gx.shape)
        predicted = model(x).argmax(1)
    fig, ax = _pyplot().subplots(figsize=(6, 4.8), dpi=110)
    ax.contourf(gx, gy, regions, levels=np.arange(task.n_classes + 1) - 0.5, cmap="coolwarm", alpha=0.35)
    ax.scatter(x[:, 0], x[:, 1], c=y, cmap="coolwarm", edgecolors="black", linewidths=0.5, s=28)
    wrong = predicted != y
    ax.scatter(x[wrong, 0], x[wrong, 1], facecolors="none", edgecolors="red", linewidths=2, s=140,
               label=f"misclassified ({int(wrong.sum())} of {len(y)})")  # fmt: skip
    ax.set_title("Decision boundary of the best network, test points")
    ax.legend(loc="upper right")
    return _png(fig)


def fit_figure(model: torch.nn.Module, task: Any) -> str:
    """Regression: the best network's predictions against the true values of the test points."""
    x, y = task.split("test")
    pre = task.preprocessing
    with torch.no_grad():
        predicted = model(x)[:, 0].double() * pre["target_std"] + pre["target_mean"]
    actual = y.double() * pre["target_std"] + pre["target_mean"]
    fig, ax = _pyplot().subplots(figsize=(5.2, 4.8), dpi=110)
    ax.scatter(actual, predicted, color="#1f4e79", edgecolors="black", linewidths=0.4, s=24)
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="#c0504d", linewidth=1, label="perfect prediction")
    ax.set_xlabel("true value")
    ax.set_ylabel("predicted value")
    ax.set_title(f"Best network on the {len(y)} test points")
    ax.legend(loc="upper left")
    return _png(fig)


def histogram_figure(scores: list[float]) -> str:
    from archsearch.experiments import density_peaks

    buffer = io.BytesIO()
    peaks = density_peaks(np.asarray(scores))
    plot_histogram(scores, buffer, f"{len(scores)} random architectures", peaks)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _table(head: list[str], rows: list[list[Any]]) -> str:
    cells = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { padding: 0.25em 0.8em; text-align: right; }
td:nth-child(2), th:nth-child(2) { text-align: left; } tr:nth-child(even) { background: #f4f6f8; }
img { max-width: 100%; } pre { background: #f4f6f8; padding: 1em; overflow-x: auto; font-size: 0.85em; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; } dt { font-weight: bold; }
"""


def ranking_figure(pairs: list[tuple[float, float]]) -> str:
    """Each retrained architecture's score with the shared weights against its score trained from scratch."""
    fig, ax = _figure("Shared weights against training from scratch")
    ax.scatter([p[0] for p in pairs], [p[1] for p in pairs], color="tab:blue")
    ax.set_xlabel("validation score with the shared weights")
    ax.set_ylabel("validation score trained from scratch")
    return _png(fig)


def _sharing(phases: dict[str, Any], score: str) -> str:
    """A weight-sharing study's phases: counts, the best proxy, every final trial beside its proxy score,
    and the Kendall tau between the two (with a scatter plot) once two or more are retrained."""
    counts = (
        f"<p>{phases['search_trials']} children scored with the shared weights during the search, "
        f"{phases['derived']} architectures derived and scored on the whole validation split, "
        f"{phases['retrained']} retrained from scratch (final trials; the pick is the best of them).</p>"
    )
    proxy = phases["best_proxy"]
    if proxy is not None:
        counts += (f"<p>Best by the shared weights: {html.escape(proxy['architecture'])}, validation {score} "
                   f"{proxy['val_score']:.4f} (trial {proxy['trial']}, {proxy['phase']}).</p>")  # fmt: skip
    rows = [
        [f["trial"], f["architecture"], "-" if f["proxy_val_score"] is None else f"{f['proxy_val_score']:.4f}",
         f"{f['val_score']:.4f}", f["params"], f["status"]]
        for f in phases["final"]
    ]  # fmt: skip
    table = _table(["trial", "architecture", f"val {score}, shared weights", f"val {score}, trained", "params",
                    "status"], rows) if rows else "<p>No architecture retrained yet.</p>"  # fmt: skip
    tau = phases["kendall_tau"]
    if tau is None:
        ranking = (f"<p>Kendall tau between the two scores: not measured ({phases['tau_pairs']} retrained; "
                   "retrain two or more with <code>--retrain N</code>).</p>")  # fmt: skip
    else:
        pairs = [(f["proxy_val_score"], f["val_score"]) for f in phases["final"] if f["status"] == "ok"]
        ranking = (f"<p>Kendall tau between the two scores: <strong>{tau:.3f}</strong> over {phases['tau_pairs']} "
                   f'architectures (1: the same order; 0: unrelated).</p><img alt="ranking" src="{ranking_figure(pairs)}">')  # fmt: skip
    return counts + table + ranking


def front_section(study: Any, trials: list[Any], reference: Sequence[float] | None = None) -> str | None:
    """The Pareto front of the study's successful trials in its objectives (by default val_score:max and
    params:min): the trials and their front in the first two objectives, the hypervolume of the front found
    over queries against ``reference`` (by default the front's nadir, see :func:`archsearch._objectives.nadir`),
    and the front's trials. ``None`` with fewer than two trials to draw."""
    from archsearch._objectives import (
        hypervolume_curve,
        minimised,
        nadir,
        pareto_front,
        parse_objectives,
        trial_points,
    )  # fmt: skip

    objectives = list(study.goals.objectives) or parse_objectives("val_score:max,params:min")
    kept = [t for t in trials if t.status == "ok" and t.kind != "proxy"]
    if any(getattr(t, o.metric) is None for t in kept for o in objectives):
        return None  # a study of an older archsearch: no FLOPs recorded
    values = trial_points(kept, objectives)
    if len(set(values)) < 2:
        return None
    points = minimised(values, objectives)
    front = sorted(pareto_front(points), key=lambda i: points[i])
    if reference is None:
        reference = minimised([nadir([points[i] for i in front])], objectives)[0]
    signed = minimised([reference], objectives)[0]
    by_number = {t.number: p for t, p in zip(kept, points, strict=True)}
    curve = hypervolume_curve([by_number.get(t.number) for t in trials], signed)
    fig, (left, right) = _pyplot().subplots(1, 2, figsize=(11, 4.2), dpi=100)
    y = objectives[1].metric
    left.scatter([v[0] for v in values], [v[1] for v in values], s=10, color="#bbbbbb", label="trials")
    ordered = sorted((values[i] for i in front), key=lambda v: v[0])
    left.plot([v[0] for v in ordered], [v[1] for v in ordered], "o--", color="#c0392b", markersize=4, linewidth=0.8,
              label=f"front ({len(front)} trials)")  # fmt: skip
    if y in ("params", "flops"):
        left.set_yscale("log")
    left.set_xlabel(str(objectives[0]))
    left.set_ylabel(str(objectives[1]))
    left.legend()
    right.plot(np.arange(1, len(curve) + 1), curve, color="#2c7fb8")
    right.set_xlabel("queries (trials)")
    right.set_ylabel("hypervolume of the front found")
    right.set_title(f"reference point {[float(f'{v:.4g}') for v in reference]}", fontsize=9)
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    image = _png(fig)
    rows = [[kept[i].number, str(kept[i].architecture), *(f"{v:.4g}" for v in values[i])] for i in front[:20]]
    table = _table(["trial", "architecture", *map(str, objectives)], rows)
    more = f"<p>{len(front) - 20} more: <code>archsearch pareto STUDY</code>.</p>" if len(front) > 20 else ""
    default = "" if study.goals.objectives else " (the study has no objectives: the default ones)"
    named = html.escape(", ".join(map(str, objectives)))
    caption = f"<p>{len(front)} of {len(kept)} successful trials are not dominated in {named}{default}.</p>"
    return f'{caption}<img alt="pareto front" src="{image}">{table}{more}'


def _overview(study: Any, summary: dict[str, Any], steps: int, score: str, trials: int) -> str:
    """The report's first section: what was searched and what it found."""
    facts = {
        "study": study.path or "(in memory)",
        "task": study.task.name if study.task is not None else study.config["trainer"].get("benchmark"),
        "strategy": study.config["strategy"]["name"],
        "steps": f"{steps} of {study.steps} ({study.children_per_step} architectures each)",
        "trials": trials,
        "best architecture": summary.get("architecture"),
        f"validation {score}": summary.get("val_score"),
        f"test {score}": summary.get("test_score"),
        "parameters": summary.get("params"),
    }
    if summary.get("ensemble"):
        ensemble = summary["ensemble"]
        members = ", ".join(str(number) for number in ensemble["members"])
        facts["final model"] = f"the ensemble of {len(ensemble['members'])} best architectures (trials {members})"
        facts[f"ensemble's test {score}"] = ensemble["test_score"]
    return "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in facts.items()) + "</dl>"


def render_report(study: Any, top: int = 10, sample: Any = None, reference: Sequence[float] | None = None) -> str:
    """The report as one HTML string (``reference``: the front's hypervolume reference point, one value per
    objective)."""
    trials = study.trials()
    summary = study.summary()
    per_step = study.children_per_step
    steps = study.completed_steps()
    rewards = np.array([t.reward for t in trials if t.step < steps], dtype=float)
    sections: list[tuple[str, str, str]] = []  # (id, title, html)
    score = {"r2": "R²", "log_likelihood": "log-likelihood per word (minus the log of the perplexity)"}.get(
        study.metric, "accuracy"
    )
    sections.append(("overview", "Overview", _overview(study, summary, steps, score, len(trials))))
    if steps:
        step_rewards = rewards[: steps * per_step].reshape(steps, per_step).mean(1)
        sections.append(
            ("reward", "Reward per step", f'<img alt="reward per step" src="{reward_figure(step_rewards)}">')
        )
        controller = controller_figure([m for _, m in study.step_metrics()])
        if controller:
            sections.append(("controller", "Controller loss and entropy", f'<img alt="controller" src="{controller}">'))
        sections.append(("best-so-far", "Best so far", f'<img alt="best so far" src="{best_so_far_figure(rewards)}">'))
    task = study.task
    if task is not None and task.regression and len(task.y_test) and study.best() is not None:
        image = fit_figure(study.best_model(), task)
        sections.append(("fit", "Predicted against true values", f'<img alt="predicted against true" src="{image}">'))
    elif task is not None and not task.regression and task.in_features == 2 and study.best() is not None:
        image = boundary_figure(study.best_model(), task)
        sections.append(("boundary", "Decision boundary", f'<img alt="decision boundary" src="{image}">'))
    scores = None
    if sample is not None:
        scores = [t.val_score for t in sample.trials() if t.status == "ok"]
    elif study.config["strategy"]["name"] == "random" and task is not None:
        scores = [t.val_score for t in trials if t.status == "ok"]
    if scores:
        image = histogram_figure(scores)
        sections.append(("histogram", "Random architectures", f'<img alt="histogram" src="{image}">'))
    front = front_section(study, trials, reference)
    if front is not None:
        sections.append(("front", "Accuracy and cost: the Pareto front", front))
    lineage = lineage_section(study, trials, _figure, _png)
    if lineage is not None:
        sections.append(("lineage", "Lineage: one network's settings as it trained", lineage))
    phases = study.phases()
    if phases is not None:
        sections.append(("weight-sharing", "Weight sharing: search, derivation, retraining", _sharing(phases, score)))
    rows = [
        [i + 1, str(t.architecture), f"{t.reward:.4f}", f"{t.val_score:.4f}",
         "-" if t.val_loss is None else f"{t.val_loss:.4f}", t.params, t.number, *([t.kind] if phases else [])]
        for i, t in enumerate(study.trials(top=top))
    ]  # fmt: skip
    head = ["rank", "architecture", "reward", f"val {score}", "val loss", "params", "trial", *(["kind"] if phases else [])]
    sections.append(("top", f"Top {top} architectures", _table(head, rows)))
    config = html.escape(json.dumps(study.config, indent=2, sort_keys=True))
    sections.append(("config", "Config", f"<pre>{config}</pre>"))
    title = html.escape(f"archsearch report: {study.path.name if study.path else 'study'}")
    nav = " · ".join(f'<a href="#{sid}">{html.escape(name)}</a>' for sid, name, _ in sections)
    body = "".join(
        f'<section id="{sid}"><h2>{html.escape(name)}</h2>{content}</section>' for sid, name, content in sections
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{title}</h1><nav>{nav}</nav>{body}</body></html>\n"
    )


def write_report(
    study: Any, out: Path, top: int = 10, sample: Any = None, reference: Sequence[float] | None = None
) -> Path:
    """Render the report and write it to ``out`` whole: a temporary file beside it renamed over it, so an
    interrupted write leaves no half report and never writes through a link."""
    html = render_report(study, top=top, sample=sample, reference=reference).encode("utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = None
    try:  # a new file of our own (O_EXCL: never an existing file or a link), then renamed over the report
        handle, partial = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial")
        with os.fdopen(handle, "wb") as file:
            file.write(html)
        os.replace(partial, out)
    except BaseException as exc:
        if partial is not None:
            Path(partial).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ArchsearchError(f"{out}: cannot write the report ({exc.strerror or exc})") from None
        raise
    return out
