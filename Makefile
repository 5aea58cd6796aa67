# Set-up and entry points. `make train` and `make test` create the virtual
# environment on first use, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BACKENDS ?= tensorflow jax torch
ARGS ?=
PYTEST_ARGS ?= -q

.PHONY: install train test

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -e ".[jax,torch,onnx,test]"
	touch $@

# Trains a CIFAR ResNet-20 on the CIFAR-10 sample shipped in the package;
# pass options through ARGS, e.g. make train ARGS="--backend jax --epochs 30".
train: install
	$(VENV)/bin/keras-resnet train $(ARGS)

# Runs the test suite once per Keras backend, each in its own process.
test: install
	@status=0; for backend in $(BACKENDS); do \
		echo "=== tests under KERAS_BACKEND=$$backend"; \
		KERAS_BACKEND=$$backend $(VENV)/bin/python -m pytest $(PYTEST_ARGS) || status=1; \
	done; exit $$status
