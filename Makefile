# Set-up and entry points. `make train` and `make test` create the virtual
# environment on first use, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BACKENDS ?= tensorflow jax torch
ARGS ?=
PYTEST_ARGS ?= -q -m "not slow"
TORCHVISION_VENV ?= .venv-torchvision
TORCHVISION_REFERENCE ?= build/torchvision-reference

.PHONY: install train benchmark test torchvision-reference

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

# Measures keras_resnet against plain Keras, keras.applications and pure
# PyTorch (about 40 minutes on 2 cores); e.g. make benchmark ARGS=--quick.
benchmark: install
	$(VENV)/bin/keras-resnet benchmark $(ARGS)

# Runs the test suite once per Keras backend, each in its own process, one
# after another. PARALLEL=1 runs the three at the same time and prints each
# log when all have finished; on 2 cores that was slower (their threads
# compete), so it is off by default.
# The default PYTEST_ARGS leave out the tests marked slow (every registry
# entry built and trained, the deepest converters); PYTEST_ARGS=-q runs them.
PARALLEL ?= 0
test: install
	@mkdir -p build
	@if [ "$(PARALLEL)" = 1 ]; then \
		for backend in $(BACKENDS); do \
			( KERAS_BACKEND=$$backend $(VENV)/bin/python -m pytest $(PYTEST_ARGS) > build/test-$$backend.log 2>&1; \
			  echo $$? > build/test-$$backend.status ) & \
		done; wait; \
	fi; \
	status=0; for backend in $(BACKENDS); do \
		echo "=== tests under KERAS_BACKEND=$$backend"; \
		if [ "$(PARALLEL)" = 1 ]; then \
			cat build/test-$$backend.log; [ "$$(cat build/test-$$backend.status)" = 0 ] || status=1; \
		else \
			KERAS_BACKEND=$$backend $(VENV)/bin/python -m pytest $(PYTEST_ARGS) || status=1; \
		fi; \
	done; exit $$status

# Writes torchvision ResNets with random weights and their outputs into
# build/torchvision-reference, which tests/test_convert.py compares the
# converter against. torchvision gets its own environment (about 5.5 GB)
# because it needs torch 2.14.1 and the main environment pins torch 2.13.0.
torchvision-reference: $(TORCHVISION_VENV)/.installed
	$(TORCHVISION_VENV)/bin/python tests/reference/torchvision_reference.py $(TORCHVISION_REFERENCE)

$(TORCHVISION_VENV)/.installed: constraints-torchvision.txt
	$(PYTHON) -m venv $(TORCHVISION_VENV)
	$(TORCHVISION_VENV)/bin/python -m pip install --quiet -r constraints-torchvision.txt
	touch $@
