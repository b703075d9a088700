# The two commands: `make run` (the seed experiment) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install clean

# The seed experiment; if runs/moons.db exists (say, an interrupted run) it is resumed, never overwritten.
run: $(STAMP)
	@mkdir -p runs
	@if [ -f runs/moons.db ]; then \
		$(BIN)/archsearch resume runs/moons.db; \
	else \
		$(BIN)/archsearch search --task moons --strategy reinforce --steps 500 --children-per-step 15 --seed 0 --study runs/moons.db; \
	fi
	$(BIN)/archsearch best runs/moons.db --json

test: $(STAMP)
	$(BIN)/python -m pytest

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev,optuna,onnx]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) runs .pytest_cache
