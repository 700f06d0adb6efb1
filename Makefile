# The two commands of the README. Each one sets up .venv first (CPU PyTorch included).
.PHONY: quickstart test figures lint setup docs

setup:
	@bash scripts/setup.sh

quickstart: setup
	.venv/bin/anglesim quickstart

test: setup
	.venv/bin/python -m pytest -m "not slow" -q

figures: setup
	.venv/bin/anglesim figures --results figures/data --out figures

lint: setup
	.venv/bin/ruff check .

# The documentation site (docs/): API pages and the example gallery are generated afresh on
# every build (nothing cached across builds); warnings are errors.
docs: setup
	rm -rf docs/_build docs/api/generated docs/auto_examples docs/sg_execution_times.rst
	OMP_NUM_THREADS=1 .venv/bin/sphinx-build -W --keep-going -b html docs docs/_build/html
