# The two commands of the README. Each one sets up .venv first (CPU PyTorch included).
.PHONY: quickstart test figures lint setup

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
