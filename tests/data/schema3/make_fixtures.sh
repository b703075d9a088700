#!/bin/sh
# Writes the schema-3 study fixtures of this folder; run from the repository root at commit 8545ab7
# (the last code that wrote schema 3). Later code cannot write them again: they are kept as they were.
set -e
cd tests/data/schema3
rm -rf moons.db moons.db.children regression.db
python -m archsearch search --task moons --strategy reinforce --steps 3 --children-per-step 4 --seed 3 \
    --max-epochs 20 --refit --save-children --reuse-evaluations --study moons.db --quiet
python - <<'PY'
import torch
from archsearch.evaluation import SerialTrainer, TrainConfig
from archsearch.space import MLPSpace
from archsearch.strategies import TPE
from archsearch.study import Study
from archsearch.tasks import Task

g = torch.Generator().manual_seed(0)
x = torch.randn(120, 3, generator=g)
y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(120, generator=g)
task = Task("plane", x[:80], y[:80], x[80:100], y[80:100], x[100:], y[100:], 0,
            config={"name": "plane"}, problem="regression")
space = MLPSpace(max_layers=2, units=(2, 4, 8))
study = Study.create("regression.db", task, steps=3, children_per_step=3, seed=5, space=space,
                     strategy=TPE(space, seed=5, n_startup_trials=3),
                     evaluator=SerialTrainer(task, TrainConfig(max_epochs=15, patience=5)), refit=True)
study.run(progress=False)
study.close()
PY
