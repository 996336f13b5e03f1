# rtfd — real-time fraud detection appliance. `just` lists the recipes.

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
bin := venv / "bin"

# List the recipes
default:
    @just --list --unsorted

# Create .venv if missing and install rtfd with its dev tools (re-runs only when pyproject changes)
install:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ ! -x {{bin}}/python ]; then
        py=$(command -v python3.11 || command -v python3)
        "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            || { echo "rtfd needs Python 3.11+ (found $("$py" --version))" >&2; exit 1; }
        echo "creating {{venv}} with $("$py" --version)"
        "$py" -m venv {{venv}}
    fi
    stamp={{venv}}/.rtfd-installed
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "installing rtfd and its dependencies into {{venv}} (first time: a few minutes)"
        {{bin}}/python -m pip install -q --upgrade pip
        {{bin}}/python -m pip install -q -e '.[dev]'
        echo "$want" > "$stamp"
    fi

# Run the appliance: the TUI starts broker, model, stream and generator; q stops them all
up: install
    {{bin}}/rtfd tui

# Start only the broker and topics in the background (for rtfd generate/stream by hand)
broker: install
    {{bin}}/rtfd broker up

# Stop a broker left running in the background (`just broker`, `rtfd broker up`)
down:
    {{bin}}/rtfd broker down

# Build dist/rtfd-<version>-py3-none-any.whl: `pip install` it on every Spark worker (docs/scaling.md)
dist: install
    rm -rf dist
    {{bin}}/python -m pip wheel -q --no-deps -w dist .
    ls dist/*.whl

# Run the whole test suite (unit, real Kafka, Spark, TUI, end to end)
test: install
    {{bin}}/pytest

# Only the fast tests without a JVM
test-unit: install
    {{bin}}/pytest -m unit

# Lint, format check and type check
lint: install
    {{bin}}/ruff check rtfd tests scripts
    {{bin}}/ruff format --check rtfd tests scripts
    {{bin}}/mypy rtfd
    {{bin}}/lint-imports

# Format the code
fmt: install
    {{bin}}/ruff format rtfd tests scripts
    {{bin}}/ruff check --fix rtfd tests scripts

# Run the benchmarks and rewrite docs/benchmarks.md
bench *args: install
    {{bin}}/python scripts/bench.py {{args}}

# Check the machine (Python, Java, Docker, ports, dirs, cached jars)
doctor: install
    {{bin}}/rtfd doctor

# Chaos campaign: kill -9 the stream and the broker under load, audit, rewrite docs/reliability.md
chaos: install
    {{bin}}/python scripts/chaos.py

# Run every test that proves a guarantee (tests/guarantees.py); rewrite docs/reliability.md's table
guarantees: install
    #!/usr/bin/env bash
    set -uo pipefail
    cd "{{justfile_directory()}}"
    results="$(mktemp -t rtfd-guarantees.XXXXXX.json)"
    {{bin}}/pytest tests -m guarantee -q --guarantees-json="$results"; rc=$?
    {{bin}}/python scripts/reliability.py "$results" || rc=1
    rm -f "$results"
    exit $rc

# Capture docs/img/tui_*.svg/.png from the real appliance (broker, Spark, generator; ~4 min)
screenshots: install
    {{bin}}/python scripts/screenshots.py

# Backtest each algorithm on 60 simulated days; rewrite docs/backtest.json, plots, README/ml tables
report *args: install
    {{bin}}/python scripts/report.py {{args}}
