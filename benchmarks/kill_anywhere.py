"""Kill a search anywhere, resume it, and get the uninterrupted study: SIGKILL at random instants.

python benchmarks/kill_anywhere.py [--kills 20] [--seed 0]

A search runs as a user runs it (the ``archsearch`` command in its own process, children in two
worker processes). It runs once without interruption; then the same search is killed with SIGKILL
at ``--kills`` random instants, each time resumed with ``archsearch resume``, and finally resumed
to the end. The script checks that both studies hold exactly the same trials (architecture,
seed, status, reward, curves), the same strategy updates and the same best architecture, prints a
table of the kills and writes results/kill_anywhere.json. Exit status 1 when they differ.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from _common import report

from archsearch import Study

SCRIPT = shutil.which("archsearch", path=os.path.dirname(sys.executable))
COMMAND = [SCRIPT] if SCRIPT else [sys.executable, "-m", "archsearch"]


def _trials(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT number, step, slot, arch_hash, status, reward, seed, val_curve, train_loss, val_loss "
            "FROM trials ORDER BY number"
        ).fetchall()


def _steps(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT step, metrics FROM steps ORDER BY step").fetchall()


def _count(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    except sqlite3.Error:
        return 0


def _best(path: Path) -> str:
    with Study.open(path, readonly=True) as study:
        return str(study.best().architecture)


def _uninterrupted(search: list[str], path: Path, env: dict) -> tuple[float, float]:
    """Run the search once without a kill; returns (seconds until its first trial, total seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [*COMMAND, "search", *search, "--study", str(path), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    startup = None
    while proc.poll() is None:
        if startup is None and _count(path) > 0:
            startup = time.perf_counter() - start
        time.sleep(0.01)
    if proc.returncode != 0:
        raise RuntimeError(f"archsearch search failed: {proc.stderr.read().decode()}")
    total = time.perf_counter() - start
    return startup or total, total


def _kill_when(proc: subprocess.Popen, due: Callable[[], bool]) -> bool:
    """SIGKILL ``proc`` as soon as ``due()``; False when it ended by itself first."""
    while proc.poll() is None:
        if due():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.01)
    return False


def run(
    kills: int = 20,
    seed: int = 0,
    search: list[str] | None = None,
    workdir: Path | None = None,
    at_trials: Sequence[int] | None = None,
    reference: Path | None = None,
) -> dict:
    """Kill, resume, compare; returns what happened (``same`` says whether the studies agree).

    The uninterrupted run goes first and times the search: kill instants are drawn uniformly
    from half the start-up (launch to first trial) to start-up + 1.5 x the work / kills after
    each launch, so kills land while the study opens and its workers start, in training, in
    recording and in strategy updates, and spread over the whole search. With ``at_trials``
    the k-th launch is killed instead as soon as the study holds ``at_trials[k]`` trials: one
    kill each, whatever the machine's speed (the test suite's mode). ``reference``, with
    ``at_trials`` only, is a finished study of the same search made beforehand (the test suite
    makes it in its own process): it stands for the uninterrupted run, which is then not timed.
    """
    if reference is not None and at_trials is None:
        raise ValueError("reference: only with at_trials (random kill instants need the uninterrupted run's times)")
    search = search or [
        *("--task", "moons", "--trainer", "serial", "--steps", "60", "--children-per-step", "12"),
        *("--max-epochs", "50", "--seed", str(seed), "--executor", "process", "--workers", "2"),
    ]
    workdir = Path(workdir or tempfile.mkdtemp(prefix="kill-anywhere-"))
    killed, straight = workdir / "killed.db", Path(reference or workdir / "straight.db")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    startup, total = (None, None) if reference is not None else _uninterrupted(search, straight, env)
    window = None if startup is None else (0.5 * startup, startup + 1.5 * max(total - startup, 0.1) / kills)
    rng = np.random.default_rng(seed)
    events = []
    started = time.perf_counter()
    for kill in range(len(at_trials) if at_trials is not None else kills):
        argv = ["resume", str(killed)] if killed.exists() else ["search", *search, "--study", str(killed)]
        before = _count(killed)
        launched = time.perf_counter()
        proc = subprocess.Popen(
            [*COMMAND, *argv, "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        if at_trials is not None:
            due = functools.partial(lambda target: _count(killed) >= target, at_trials[kill])
        else:
            deadline = launched + float(rng.uniform(*window))
            due = functools.partial(lambda at: time.perf_counter() >= at, deadline)
        if _kill_when(proc, due):
            events.append(
                {
                    "kill": kill + 1,
                    "after_s": time.perf_counter() - launched,
                    "trials_before": before,
                    "trials_at_kill": _count(killed),
                }
            )
            continue
        if proc.returncode != 0:
            raise RuntimeError(f"archsearch {argv[0]} failed: {proc.stderr.read().decode()}")
        events.append(
            {"kill": kill + 1, "after_s": time.perf_counter() - launched, "trials_before": before, "finished": True}
        )
        break  # the search ended before this kill: the remaining instants would find nothing to kill
    argv = ["resume", str(killed)] if killed.exists() else ["search", *search, "--study", str(killed)]
    subprocess.run([*COMMAND, *argv, "--quiet"], check=True, capture_output=True, env=env)
    interrupted_s = time.perf_counter() - started
    a, b = _trials(killed), _trials(straight)
    same_trials = a == b
    same_steps = _steps(killed) == _steps(straight)
    best_killed, best_straight = _best(killed), _best(straight)
    return {
        "kills": sum("trials_at_kill" in e for e in events),
        "events": events,
        "trials": len(a),
        "trials_uninterrupted": len(b),
        "same_trials": same_trials,
        "same_steps": same_steps,
        "best": best_killed,
        "best_uninterrupted": best_straight,
        "same": same_trials and same_steps and best_killed == best_straight,
        "startup_s": startup,
        "uninterrupted_wall_s": total,
        "kill_window_s": None if window is None else list(window),
        "interrupted_wall_s": interrupted_s,
        "search": search,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = run(args.kills, args.seed)
    rows = [
        [e["kill"], e["after_s"], e["trials_before"], e.get("trials_at_kill", "finished")] for e in result["events"]
    ]
    report(
        "kill_anywhere",
        f"{result['kills']} SIGKILLs, resumed each time: same study as uninterrupted = {result['same']}",
        ["kill", "after (s)", "trials before", "trials at kill"],
        rows,
        result,
    )
    print(
        f"trials {result['trials']} vs {result['trials_uninterrupted']} uninterrupted; same trials "
        f"{result['same_trials']}, same strategy updates {result['same_steps']}; best {result['best']} vs "
        f"{result['best_uninterrupted']}"
    )
    sys.exit(0 if result["same"] else 1)


if __name__ == "__main__":
    main()
