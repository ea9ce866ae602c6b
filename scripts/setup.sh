#!/usr/bin/env bash
# The action's first step: azpytest's private virtual environment, made with uv from the
# runner's python3 and installed from hash-locked requirements, compiled to bytecode at
# install (the first azpytest command of a job does not compile).
# Inputs arrive through the environment only (AZPYTEST_PYTHON_VERSION, AZPYTEST_REQUIREMENTS,
# AZPYTEST_CACHE).
#
# The environment is keyed (`environment_key`: runner OS and architecture, the Python's path
# and version, the locks, azpytest's own code and the requirements input) and lives in the
# tool cache, $RUNNER_TOOL_CACHE/azpytest-env/<key>, as the setup-* actions keep their tools
# (RUNNER_TEMP where the tool cache is not writable). An environment that holds its key is
# used as it is (no uv, no install): on a self-hosted runner, one an earlier job built; on a
# hosted runner, one the action restored from the Actions cache (`setup.sh --cache-key`
# prints the key and the folder to GITHUB_OUTPUT for its cache steps). Building takes a lock
# per key: jobs of a matrix on one machine build it once.
#
# uv itself comes from requirements/uv.txt (hash-locked) once per runner: the wheel fetched by
# the runner's pip (`pip download`, no venv; a venv with pip where the Python has none) and
# its binary kept in the tool cache ($RUNNER_TOOL_CACHE/azpytest-uv/<version>/<arch>/uv).
set -euo pipefail
started=$(date +%s.%N 2>/dev/null || date +%s)
mode=${1:-}

case "${RUNNER_OS:-Linux}" in
  Linux | macOS) ;;
  *)
    echo "::error title=azpytest: unsupported runner::azpytest runs on Linux and macOS runners; this job runs on ${RUNNER_OS}. Use runs-on: ubuntu-latest (or a Linux self-hosted runner)."
    exit 1
    ;;
esac

# A value as an error line shows it: one line (control characters as `?`), at most $2 (60)
# characters, `%` escaped (the runner decodes %0A in a workflow command's message).
shown() {
  local value limit=${2:-60}
  value=$(printf '%s' "$1" | LC_ALL=C tr -c '[:print:]' '?' | cut -c1-$((limit + 1)))
  if [ ${#value} -gt "$limit" ]; then value="${value:0:limit}…"; fi
  printf '%s' "${value//%/%25}"
}

# Inputs, without the spaces around them (as the Python steps take theirs).
trimmed() {
  local value=$1
  value="${value#"${value%%[![:space:]]*}"}"
  printf '%s' "${value%"${value##*[![:space:]]}"}"
}

python=python3
python_version=$(trimmed "${AZPYTEST_PYTHON_VERSION:-}")
if [ -n "$python_version" ]; then
  if ! [[ "$python_version" =~ ^3(\.[0-9]{1,3})?$ ]]; then
    echo "::error title=azpytest: bad input::python-version: '$(shown "$AZPYTEST_PYTHON_VERSION")' is not a Python version like 3.12. Write python-version: '3.12' (a python3.12 on PATH, as actions/setup-python puts it) or leave it empty to use python3."
    exit 2
  fi
  python="python${python_version}"
fi
if ! command -v "$python" >/dev/null 2>&1; then
  echo "::error title=azpytest: bad input::python-version: ${python} is not on the runner's PATH. Install it first (actions/setup-python) or leave python-version empty to use python3."
  exit 2
fi
set -f # words, not globs: `psycopg[binary]` is a package name
for item in ${AZPYTEST_REQUIREMENTS:-}; do
  case "$item" in
    -*)
      echo "::error title=azpytest: bad input::requirements: '$(shown "$item")' is an option; the input takes requirement files and package names. Put options (-e ., --index-url) in a requirements file and name the file."
      exit 2
      ;;
  esac
done
set +f
python=$(command -v "$python")
# `setup.sh --python`: only the runner's Python the inputs name, checked (the merge job's
# report runs on it and sets up nothing else).
if [ "$mode" = "--python" ]; then
  printf '%s\n' "$python"
  exit 0
fi

action_path="${GITHUB_ACTION_PATH:?GITHUB_ACTION_PATH is set by the runner}"
runner_temp="${RUNNER_TEMP:?RUNNER_TEMP is set by the runner}"
mkdir -p "$runner_temp"
tools="${RUNNER_TOOL_CACHE:-}"
if [ -z "$tools" ] || ! mkdir -p "$tools/azpytest-env" 2>/dev/null || [ ! -w "$tools/azpytest-env" ]; then
  tools="$runner_temp"
fi
KEY_FILE=.azpytest-environment-key

digest() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum; else shasum -a 256; fi | cut -c1-64
}

# What the environment is made of: an environment built from the same parts is the same.
environment_key() {
  local version parts
  version=$("$python" -c 'import platform; print(platform.python_version())')
  parts=$(
    printf '%s\n' "$python" "$("$python" -VV 2>&1)" "$tools" "${AZPYTEST_REQUIREMENTS:-}"
    cat "$action_path/requirements/action.txt" "$action_path/requirements/uv.txt" \
      "$action_path/pyproject.toml"
    (cd "$action_path" && find scripts/azpytest -name '*.py' -type f | LC_ALL=C sort | xargs cat)
    set -f
    for item in ${AZPYTEST_REQUIREMENTS:-}; do
      if [ -f "$item" ]; then cat "$item"; fi
    done
    set +f
  )
  printf 'azpytest-env-v1-%s-%s-py%s-%s\n' "${RUNNER_OS:-Linux}" "$(uname -m)" "$version" \
    "$(printf '%s' "$parts" | digest | cut -c1-32)"
}

if [ "$mode" = "--build" ] && [ -n "${AZPYTEST_SETUP_KEY:-}" ]; then
  key=$AZPYTEST_SETUP_KEY # the key the step computed: build exactly that
else
  key=$(environment_key)
fi
venv="$tools/azpytest-env/$key"

ready() {
  [ -x "$venv/bin/python" ] && [ "$(cat "$venv/$KEY_FILE" 2>/dev/null || true)" = "$key" ] &&
    "$venv/bin/python" -c '' 2>/dev/null
}

elapsed() {
  local now
  now=$(date +%s.%N 2>/dev/null || date +%s)
  awk -v a="$started" -v b="$now" 'BEGIN { printf "%.1f", b - a }'
}

# --- the key, for the action's cache steps ----------------------------------------------------
if [ "$mode" = "--cache-key" ]; then
  # The action's own inputs that only its YAML reads, refused here, in its first step, rather
  # than found wrong after the tests (an `upload: allways` would upload nothing, silently).
  upload=$(trimmed "${AZPYTEST_UPLOAD:-failure}" | tr '[:upper:]' '[:lower:]')
  case "$upload" in
    always | failure | never) ;;
    *)
      echo "::error title=azpytest: bad input::upload: '$(shown "$AZPYTEST_UPLOAD")' is not always, failure or never. Write upload: failure (the default: the JUnit file, failure artifacts and audit log when the job fails), always or never."
      exit 2
      ;;
  esac
  artifact_name=$(trimmed "${AZPYTEST_ARTIFACT_NAME:-}")
  case "$artifact_name" in
    *[\":\<\>\|\*\?\\/]* | *[[:cntrl:]]*)
      echo "::error title=azpytest: bad input::artifact-name: '$(shown "$AZPYTEST_ARTIFACT_NAME")' holds a character an artifact name cannot (\" : < > | * ? \\ / or a control character). Write a name of letters, digits, - _ and ., or leave it empty for azpytest-<job>-<shard>-<attempt>."
      exit 2
      ;;
  esac
  {
    echo "upload=$upload"
    echo "artifact-name=$artifact_name"
  } >>"${GITHUB_OUTPUT:-/dev/null}"
  cache=$(trimmed "${AZPYTEST_CACHE:-true}" | tr '[:upper:]' '[:lower:]')
  case "$cache" in
    true) ;;
    false)
      echo "azpytest: cache: false; the environment is set up without the Actions cache"
      exit 0
      ;;
    *)
      echo "::error title=azpytest: bad input::cache: '$(shown "$AZPYTEST_CACHE")' is not true or false. Write cache: true (restore azpytest's environment from the Actions cache) or cache: false."
      exit 2
      ;;
  esac
  if ready; then
    echo "azpytest: environment $key is on this runner already: nothing to restore"
    exit 0
  fi
  {
    echo "key=$key"
    echo "path=$venv"
  } >>"${GITHUB_OUTPUT:-/dev/null}"
  echo "azpytest: environment cache key $key"
  exit 0
fi

# --- building it (under the key's lock) ---------------------------------------------------------
build() {
  if ready; then
    return 0 # another job built it while this one waited for the lock
  fi
  rm -rf "$venv"

  # uv, from the tool cache or bootstrapped into it.
  local uv_dir uv uv_from bootstrap
  uv_version=$(sed -n 's/^uv==\([^ ]*\).*/\1/p' "$action_path/requirements/uv.txt")
  mkdir -p "$tools/azpytest-uv"
  uv_dir="$tools/azpytest-uv/$uv_version/$(uname -m)"
  uv="$uv_dir/uv"
  case "$("$uv" --version 2>/dev/null || true)" in
    "uv $uv_version" | "uv $uv_version "*) uv_from="tool cache" ;;
    *)
      mkdir -p "$uv_dir"
      # Jobs of a matrix may bootstrap at once on one machine: each in its own folder, and
      # the binary moved into place with one rename.
      bootstrap=$(mktemp -d "$uv_dir/bootstrap.XXXXXX")
      # The locked wheel, fetched by the runner's own pip (its index, proxy and CA settings)
      # and checked against the lock's hashes; uv's binary is taken out of it. No venv: that
      # was 5-8 s of a cold setup. A Python without pip makes a venv to get one.
      if said=$("$python" -m pip download --quiet --disable-pip-version-check --no-deps \
        --require-hashes --only-binary :all: -r "$action_path/requirements/uv.txt" \
        -d "$bootstrap/wheel" 2>&1) &&
        "$python" - "$bootstrap/wheel" "$bootstrap/uv" <<'PY'; then
import pathlib
import shutil
import sys
import zipfile

[wheel] = pathlib.Path(sys.argv[1]).glob("uv-*.whl")
with zipfile.ZipFile(wheel) as archive:
    [name] = [n for n in archive.namelist() if n.endswith(".data/scripts/uv")]
    with archive.open(name) as binary, open(sys.argv[2], "wb") as out:
        shutil.copyfileobj(binary, out)
pathlib.Path(sys.argv[2]).chmod(0o755)
PY
        uv_from="the locked wheel (pip download, no venv), kept in $uv_dir"
      else
        if "$python" -m pip --version >/dev/null 2>&1; then
          echo "azpytest: pip download of the locked uv wheel failed ($(printf '%s\n' "$said" | grep -v '^ *$' | tail -n 1 | cut -c1-300)); installing it in a venv instead"
        fi
        "$python" -m venv "$bootstrap/venv"
        "$bootstrap/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
          --require-hashes --only-binary :all: -r "$action_path/requirements/uv.txt"
        cp "$bootstrap/venv/bin/uv" "$bootstrap/uv"
        uv_from="pip in a venv, kept in $uv_dir"
      fi
      mv -f "$bootstrap/uv" "$uv"
      rm -rf "$bootstrap"
      ;;
  esac

  "$uv" venv --quiet --python "$python" "$venv"
  "$uv" pip install --python "$venv/bin/python" --quiet --compile-bytecode --require-hashes \
    -r "$action_path/requirements/action.txt"
  "$uv" pip install --python "$venv/bin/python" --quiet --compile-bytecode --no-deps "$action_path"

  # The project's own test dependencies: requirement files or package names, one per word,
  # resolved together, with azpytest's locked versions as constraints (a requirement that
  # would replace one of them is refused rather than installed over it).
  local extra=() item constraints said cause pinned first pin
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
    if ! said=$("$uv" pip install --python "$venv/bin/python" --quiet --compile-bytecode -c "$constraints" "${extra[@]}" 2>&1); then
      cause=$(printf '%s\n' "$said" | grep -o 'Because .*' | head -n 1 || true)
      pinned=""
      while read -r pin; do
        if printf '%s\n' "$cause" | grep -qiF "${pin%%==*}=="; then
          pinned=${pin%% *}
          break
        fi
      done <"$constraints"
      if [ -n "$pinned" ]; then
        echo "::error title=azpytest: requirements conflict::requirements: they need another version of ${pinned%%==*}, which azpytest pins at $pinned (uv: $(shown "${cause:-no cause given}" 600)). Loosen that requirement, or install the tests' packages in the job's Python before this step (they are importable, behind azpytest's own)."
      else
        first=$(shown "$(printf '%s\n' "$said" | grep -v '^ *$' | tr '\n' ' ' || true)" 600)
        echo "::error title=azpytest: requirements not installed::requirements: uv could not install them: $first Check the package names and files in the requirements input."
      fi
      rm -rf "$venv"
      exit 2
    fi
  fi
  printf '%s\n' "$key" >"$venv/$KEY_FILE" # last: the environment is whole
  echo "uv $uv_version from $uv_from" >"${AZPYTEST_SETUP_BUILT:-/dev/null}"
}

if [ "$mode" = "--build" ]; then
  build
  exit 0
fi

if ready; then
  how="as it was: $key"
else
  # One build per key at a time on this machine (a bounded wait for another job's build).
  built="$runner_temp/azpytest-setup-built.$$"
  rm -f "$built"
  AZPYTEST_SETUP_KEY="$key" AZPYTEST_SETUP_BUILT="$built" \
    "$python" - "$tools/azpytest-env/$key.lock" bash "$0" --build <<'PY'
import fcntl
import os
import subprocess
import sys
import time

lock = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
deadline = time.monotonic() + 900
while True:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        break
    except BlockingIOError:
        if time.monotonic() > deadline:
            print(
                "::error title=azpytest: setup::another job has been building azpytest's "
                f"environment for 15 minutes (lock {sys.argv[1]}); rerun this job."
            )
            sys.exit(1)
        time.sleep(0.5)
sys.exit(subprocess.call(sys.argv[2:]))
PY
  if [ -f "$built" ]; then
    how=$(cat "$built")
    rm -f "$built"
  else
    how="as it was: $key (another job built it while this one waited)"
  fi
fi
touch "$venv/$KEY_FILE" # in use (an environment unused for a week is removed below)

# The job's own packages: what an earlier step installed into the job's python3 (after
# actions/setup-python, `pip install -r requirements-test.txt`; a virtualenv put on PATH;
# `pip install -e .`) is importable by the tests, after azpytest's own locked packages (a
# .pth file: site-packages folders added with their own .pth files, behind the venv's).
site_dir=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$python" - "$site_dir/azpytest-job-site.pth" <<'PY'
import os
import site
import sys

folders = [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))]
partial = f"{sys.argv[1]}.{os.getpid()}"
with open(partial, "w", encoding="utf-8") as pth:
    for folder in dict.fromkeys(folders):
        pth.write(f"import site; site.addsitedir({folder!r})\n")
os.replace(partial, sys.argv[1])  # another job may read it now: one rename
PY

# Environments of other keys that no job used for a week (a self-hosted runner's tool cache).
find "$tools/azpytest-env" -mindepth 1 -maxdepth 1 -type d -name 'azpytest-env-*' \
  ! -name "$key" 2>/dev/null | while read -r old; do
  # Only whole ones (a folder without its key may be another job's build under way).
  if [ -f "$old/$KEY_FILE" ] && [ -z "$(find "$old/$KEY_FILE" -mtime -7 2>/dev/null)" ]; then
    rm -rf "$old" "$old.lock"
  fi
done

{
  echo "python=$venv/bin/python"
  if [ "${how#as it was}" != "$how" ]; then echo "cached=true"; fi
} >>"${GITHUB_OUTPUT:-/dev/null}"
echo "azpytest: environment ready in $(elapsed) s ($("$venv/bin/python" --version), $venv; $how)"
