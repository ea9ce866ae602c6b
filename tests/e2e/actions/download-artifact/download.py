"""The stand-in download: copy artifacts out of the e2e artifact store."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

# minimatch's extglobs: +(a|b) one or more, *(..) any number, ?(..) at most one, @(..) one.
EXTGLOB = {"+": "+", "*": "*", "?": "?", "@": ""}


def minimatch(pattern: str) -> str:
    """The regular expression of a minimatch glob over artifact names (no `/` in them):
    `*`, `?`, `[...]`, and the extglobs download-artifact's minimatch knows by default."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c in EXTGLOB and pattern[i + 1 : i + 2] == "(":
            depth, j = 1, i + 2
            while depth:
                depth += {"(": 1, ")": -1}.get(pattern[j], 0)
                j += 1
            inner = "|".join(minimatch(alt) for alt in pattern[i + 2 : j - 1].split("|"))
            out.append(f"(?:{inner}){EXTGLOB[c]}")
            i = j
        elif c == "*":
            out.append(".*")
            i += 1
        elif c == "?":
            out.append(".")
            i += 1
        elif c == "[":
            j = pattern.index("]", i + 1)
            out.append("[" + pattern[i + 1 : j].replace("!", "^", 1) + "]")
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def main() -> int:
    store = os.environ.get("AZPYTEST_E2E_ARTIFACTS")
    if not store:
        print("::error::the e2e stand-in needs AZPYTEST_E2E_ARTIFACTS (act --env)")
        return 1
    run_id = os.environ["GITHUB_RUN_ID"]
    if os.environ.get("INPUT_GITHUB_TOKEN") and os.environ.get("INPUT_RUN_ID"):
        run_id = os.environ["INPUT_RUN_ID"]
    run = Path(store) / run_id
    dest = Path(os.environ.get("INPUT_PATH") or os.environ["GITHUB_WORKSPACE"]).expanduser()
    name = os.environ.get("INPUT_NAME", "")
    available = sorted(p.name for p in run.iterdir() if p.is_dir()) if run.is_dir() else []
    if name:
        if name not in available:
            print(f"::error::Unable to download artifact(s): Artifact not found for name: {name}")
            return 1
        chosen, single = [name], True
    else:
        pattern = os.environ.get("INPUT_PATTERN") or "*"
        regex = re.compile(minimatch(pattern))
        chosen = [a for a in available if regex.fullmatch(a)]
        # v5 on: a pattern that matches one artifact downloads it straight into `path`.
        single = len(chosen) == 1
        print(f"Found {len(chosen)} artifact(s) of run {run_id} matching {pattern}")
    merge = single or os.environ.get("INPUT_MERGE_MULTIPLE") == "true"
    for artifact in chosen:
        target = dest if merge else dest / artifact
        shutil.copytree(run / artifact, target, dirs_exist_ok=True)
        print(f"Artifact {artifact} downloaded to {target}")
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
        out.write(f"download-path={dest}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
