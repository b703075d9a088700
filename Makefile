# The two commands: `make run` (the seed experiment) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install clean chromium

# The seed experiment; if runs/moons.db exists (say, an interrupted run) it is resumed, never overwritten.
run: $(STAMP)
	@mkdir -p runs
	@if [ -f runs/moons.db ]; then \
		$(BIN)/archsearch resume runs/moons.db; \
	else \
		$(BIN)/archsearch search --task moons --strategy reinforce --steps 500 --children-per-step 15 --seed 0 --study runs/moons.db; \
	fi
	$(BIN)/archsearch best runs/moons.db --json

# Chromium is installed while the virtual environment is (both wait mostly on downloads).
test:
	@( command -v chromium >/dev/null 2>&1 || $(MAKE) --no-print-directory chromium ) & chromium=$$!; \
	$(MAKE) --no-print-directory install; installed=$$?; wait $$chromium; \
	[ $$installed -eq 0 ] || exit $$installed; \
	$(BIN)/python -m pytest -n 2 --dist worksteal

# Debian's Chromium, for the test that renders a report in a browser; if it cannot be installed
# that one test is skipped and says why.
chromium:
	-@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	( DEBIAN_FRONTEND=noninteractive $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium ) >/dev/null 2>&1 \
	|| echo "chromium could not be installed: the report's browser test will be skipped"

install: $(STAMP)

# pip byte-compiles what it installs on one core; compileall does it on all of them (a file it cannot
# compile is skipped, as pip skips it). Without the .pyc files every process would compile what it imports.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-compile torch==2.13.0
	$(BIN)/python -m pip install --quiet --no-compile -e ".[dev,optuna,onnx,images,ray]"
	-@$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib >/dev/null
	touch $(STAMP)

clean:
	rm -rf $(VENV) runs .pytest_cache
