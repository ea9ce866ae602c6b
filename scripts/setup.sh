#!/usr/bin/env bash
# The action's first step: azpytest's private virtual environment in $RUNNER_TEMP, made with
# uv from the runner's python3 and installed from hash-locked requirements.
# Inputs arrive through the environment only (AZPYTEST_PYTHON_VERSION, AZPYTEST_REQUIREMENTS).
#
# uv itself is bootstrapped with pip from requirements/uv.txt (hash-locked) once per runner
# and kept in the tool cache ($RUNNER_TOOL_CACHE/azpytest-uv/<version>/<arch>/uv), as the
# setup-* actions keep their tools: a self-hosted runner pays for it once, a hosted one once
# per job. Everything after that is uv: about a second with a warm uv cache.
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
python=$(command -v "$python")

action_path="${GITHUB_ACTION_PATH:?GITHUB_ACTION_PATH is set by the runner}"
runner_temp="${RUNNER_TEMP:?RUNNER_TEMP is set by the runner}"
venv="$runner_temp/azpytest-venv"

# --- uv, from the tool cache or bootstrapped into it -----------------------------------------
uv_version=$(sed -n 's/^uv==\([^ ]*\).*/\1/p' "$action_path/requirements/uv.txt")
tools="${RUNNER_TOOL_CACHE:-}"
if [ -z "$tools" ] || ! mkdir -p "$tools/azpytest-uv" 2>/dev/null || [ ! -w "$tools/azpytest-uv" ]; then
  tools="$runner_temp"
fi
uv_dir="$tools/azpytest-uv/$uv_version/$(uname -m)"
uv="$uv_dir/uv"
case "$("$uv" --version 2>/dev/null || true)" in
  "uv $uv_version" | "uv $uv_version "*) uv_from="tool cache" ;;
  *)
    mkdir -p "$uv_dir"
    # Jobs of a matrix may bootstrap at once on one machine: each in its own folder, and the
    # binary moved into place with one rename.
    bootstrap=$(mktemp -d "$uv_dir/bootstrap.XXXXXX")
    "$python" -m venv "$bootstrap"
    "$bootstrap/bin/python" -m pip install --quiet --disable-pip-version-check \
      --require-hashes --only-binary :all: -r "$action_path/requirements/uv.txt"
    cp "$bootstrap/bin/uv" "$uv.$$"
    mv -f "$uv.$$" "$uv"
    rm -rf "$bootstrap"
    uv_from="pip, kept in $uv_dir"
    ;;
esac

# --- the private environment -----------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
  "$uv" venv --quiet --python "$python" "$venv"
fi
"$uv" pip install --python "$venv/bin/python" --quiet --require-hashes \
  -r "$action_path/requirements/action.txt"
"$uv" pip install --python "$venv/bin/python" --quiet --no-deps "$action_path"

# The job's own packages: what an earlier step installed into the job's python3 (after
# actions/setup-python, `pip install -r requirements-test.txt`; a virtualenv put on PATH;
# `pip install -e .`) is importable by the tests, after azpytest's own locked packages (a
# .pth file: site-packages folders added with their own .pth files, behind the venv's).
site_dir=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$python" - "$site_dir/azpytest-job-site.pth" <<'PY'
import site
import sys

folders = [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))]
with open(sys.argv[1], "w", encoding="utf-8") as pth:
    for folder in dict.fromkeys(folders):
        pth.write(f"import site; site.addsitedir({folder!r})\n")
PY

# The project's own test dependencies: requirement files or package names, one per word,
# resolved together, with azpytest's locked versions as constraints (a requirement that
# would replace one of them is refused rather than installed over it).
extra=()
set -f # words, not globs: `psycopg[binary]` is a package name
for item in ${AZPYTEST_REQUIREMENTS:-}; do
  if [ -f "$item" ]; then
    extra+=(-r "$item")
  else
    extra+=("$item")
  fi
done
set +f
if [ ${#extra[@]} -gt 0 ]; then
  constraints="$runner_temp/azpytest-constraints.txt"
  # The locked lines with their markers (`pycparser==3.12 ; python_full_version >= '3.11'`).
  sed -n 's/^\([A-Za-z0-9_.-]*==[^\\]*[^\\ ]\) *\\$/\1/p' "$action_path/requirements/action.txt" >"$constraints"
  if ! said=$("$uv" pip install --python "$venv/bin/python" --quiet -c "$constraints" "${extra[@]}" 2>&1); then
    cause=$(printf '%s\n' "$said" | grep -o 'Because .*' | head -n 1 || true)
    pinned=""
    while read -r pin; do
      if printf '%s\n' "$cause" | grep -qiF "${pin%%==*}=="; then
        pinned=${pin%% *}
        break
      fi
    done <"$constraints"
    if [ -n "$pinned" ]; then
      echo "::error title=azpytest: requirements conflict::requirements: they need another version of ${pinned%%==*}, which azpytest pins at $pinned (uv: ${cause:-no cause given}). Loosen that requirement, or install the tests' packages in the job's Python before this step (they are importable, behind azpytest's own)."
    else
      first=$(printf '%s\n' "$said" | grep -v '^ *$' | tr '\n' ' ' | cut -c1-600 || true)
      echo "::error title=azpytest: requirements not installed::requirements: uv could not install them: $first Check the package names and files in the requirements input."
    fi
    exit 2
  fi
fi

echo "python=$venv/bin/python" >>"${GITHUB_OUTPUT:-/dev/null}"
echo "azpytest: environment ready in $(($(date +%s) - started)) s ($("$venv/bin/python" --version), $venv; uv $uv_version from $uv_from)"
