# Entry points; each delegates to a script under deploy/local/ that explains itself (--help).
.PHONY: help run test setup

help:
	@echo "make run    install what is missing, then serve vLLM (CPU) + the Nescio proxy on :8080"
	@echo "make test   install what is missing, then ruff, mypy and the full pytest suite (= CI)"
	@echo "make setup  install the project venv, the vLLM CPU venv and the converted model"

run:
	deploy/local/run.sh

test:
	deploy/local/test.sh $(PYTEST_ARGS)

setup:
	deploy/local/setup.sh all
