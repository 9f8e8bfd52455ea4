#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install unike-interp into it.
#
# - No environment yet: create $VENV (default .venv). If the base Python already has a suitable
#   torch (>= 2.4), the venv sees it through --system-site-packages and torch is not reinstalled.
# - No torch in the environment: install the CPU build torch==$TORCH_VERSION first, so that the
#   permissive `torch>=2.4` requirement never pulls a multi-GB CUDA build. Set TORCH_INDEX_URL
#   (e.g. PyTorch's CPU wheel index) where the plain package index would give a CUDA build.
# - Then install the package in editable mode with its dev extra, and the ray extra (`unike bench
#   --workers`; where no Ray wheel exists for this platform, a warning, and the Ray tests skip).
#   Re-running is cheap: pip skips what is installed, and the Makefile only calls this when
#   pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

has_torch() {
  "$1" - <<'PY' 2>/dev/null
import sys
import torch
major, minor = (int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
sys.exit(0 if (major, minor) >= (2, 4) else 1)
PY
}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "setup: '$PYTHON' not found; set PYTHON=/path/to/python3 (3.10 or newer)" >&2
  exit 2
fi
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || {
  echo "setup: unike-interp needs Python >= 3.10; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
  exit 2
}

if [ ! -x "$VENV/bin/python" ]; then
  if has_torch "$PYTHON"; then
    echo "setup: creating $VENV, reusing the torch already installed for $PYTHON"
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    echo "setup: creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"

if has_torch "$PY"; then
  echo "setup: torch $("$PY" -c 'import torch; print(torch.__version__)') present; not reinstalling it"
else
  echo "setup: installing torch==$TORCH_VERSION (CPU build)"
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "$PY" -m pip install "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"
  else
    "$PY" -m pip install "torch==$TORCH_VERSION"
  fi
fi

"$PY" -m pip install -e ".[dev]"
"$PY" -m pip install -e ".[ray]" || echo "setup: warning: Ray could not be installed here; \`unike bench --workers\` and its tests are unavailable" >&2
echo "setup: done ($("$PY" -c 'import torch, unike_interp; print("unike-interp", unike_interp.__version__, "torch", torch.__version__)'))"
