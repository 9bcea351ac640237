#!/usr/bin/env bash
# Run a command inside the project's virtual environment, creating it first if needed.
#
#   scripts/env.sh python -m compiler fixtures/cnn_nhwc cnn_nhwc.engine
#   scripts/env.sh python -m pytest
#
# The first run creates .venv/ and installs the project with its tested
# dependency ranges from pyproject.toml (TensorFlow is the large one: about a
# minute on a fast mirror; the coverage extra, keras-hub and tensorflow-text, adds about 20 s and 210 MB
# so the suite's keras-hub subset runs). Later runs reuse it; editing pyproject.toml
# triggers a reinstall.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
py="${PYTHON:-python3}"

if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
  echo "error: setup: $py is missing or older than Python 3.10; fix: install Python 3.10+ or set PYTHON=/path/to/python3.11" >&2
  exit 2
fi

stamp="$venv/.installed-$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setting up $venv (first run installs TensorFlow, tf2onnx, onnxruntime, Polygraphy) ..." >&2
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root[test,bench,ray,coverage]" >&2
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi

export PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv"
cd "$root"
exec "$@"
