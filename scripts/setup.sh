#!/usr/bin/env bash
# The action's first step: azpytest's private virtual environment in $RUNNER_TEMP, made with
# uv from the runner's python3 and installed from hash-locked requirements.
# Inputs arrive through the environment only (AZPYTEST_PYTHON_VERSION, AZPYTEST_REQUIREMENTS).
set -euo pipefail
started=$(date +%s)

case "${RUNNER_OS:-Linux}" in
  Linux | macOS) ;;
  *)
    echo "::error title=azpytest: unsupported runner::azpytest runs on Linux and macOS runners; this job runs on ${RUNNER_OS}. Use runs-on: ubuntu-latest (or a Linux self-hosted runner)."
    exit 1
    ;;
esac

python=python3
if [ -n "${AZPYTEST_PYTHON_VERSION:-}" ]; then
  python="python${AZPYTEST_PYTHON_VERSION}"
fi
if ! command -v "$python" >/dev/null 2>&1; then
  echo "::error title=azpytest: no ${python}::${python} is not on the runner's PATH. Install it first (actions/setup-python) or leave python-version empty to use python3."
  exit 1
fi

action_path="${GITHUB_ACTION_PATH:?GITHUB_ACTION_PATH is set by the runner}"
venv="${RUNNER_TEMP:?RUNNER_TEMP is set by the runner}/azpytest-venv"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
# uv installs the locked requirements in about half a second once cached.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
"$venv/bin/python" -m uv pip install --python "$venv/bin/python" --quiet --require-hashes \
  -r "$action_path/requirements/action.txt"
"$venv/bin/python" -m uv pip install --python "$venv/bin/python" --quiet --no-deps "$action_path"

# The project's own test dependencies: requirement files or package names, one per word.
for item in ${AZPYTEST_REQUIREMENTS:-}; do
  if [ -f "$item" ]; then
    "$venv/bin/python" -m uv pip install --python "$venv/bin/python" --quiet -r "$item"
  else
    "$venv/bin/python" -m uv pip install --python "$venv/bin/python" --quiet "$item"
  fi
done

echo "python=$venv/bin/python" >>"${GITHUB_OUTPUT:-/dev/null}"
echo "azpytest: environment ready in $(($(date +%s) - started)) s ($("$venv/bin/python" --version), $venv)"
