"""The stand-in upload: copy the matched files into the e2e artifact store."""

from __future__ import annotations

import glob
import os
import shutil
import sys
from pathlib import Path

MAGIC = "*?["


def search_root(pattern: str) -> Path:
    """The literal part of a pattern before its first glob segment (@actions/glob's search path)."""
    parts = Path(pattern).parts
    literal = []
    for part in parts:
        if any(c in part for c in MAGIC):
            break
        literal.append(part)
    return Path(*literal) if literal else Path(".")


def matches(pattern: str, hidden: bool) -> list[Path]:
    found = []
    for hit in glob.glob(pattern.rstrip("/"), recursive=True, include_hidden=hidden):
        path = Path(hit)
        if path.is_dir():
            for sub in sorted(path.rglob("*")):
                rel = sub.relative_to(path).parts
                if sub.is_file() and (hidden or not any(p.startswith(".") for p in rel)):
                    found.append(sub)
        elif path.is_file():
            found.append(path)
    return found


def main() -> int:
    store = os.environ.get("AZPYTEST_E2E_ARTIFACTS")
    if not store:
        print("::error::the e2e stand-in needs AZPYTEST_E2E_ARTIFACTS (act --env)")
        return 1
    name = os.environ["INPUT_NAME"] or "artifact"
    if os.environ.get("INPUT_ARCHIVE", "true") != "true":
        print("::error::the e2e stand-in uploads archives only (archive: true)")
        return 1
    hidden = os.environ.get("INPUT_INCLUDE_HIDDEN_FILES") == "true"
    lines = [line.strip() for line in os.environ["INPUT_PATH"].splitlines() if line.strip()]
    include = [line for line in lines if not line.startswith("!")]
    exclude = {
        p.resolve() for line in lines if line.startswith("!") for p in matches(line[1:], True)
    }
    files: dict[Path, None] = {}
    for pattern in include:
        for path in matches(os.path.expanduser(pattern), hidden):
            if path.resolve() not in exclude:
                files[path.resolve()] = None
    if not files:
        mode = os.environ.get("INPUT_IF_NO_FILES_FOUND", "warn")
        message = f"No files were found with the provided path: {' '.join(lines)}. No artifacts will be uploaded."
        if mode == "error":
            print(f"::error::{message}")
            return 1
        if mode == "warn":
            print(f"::warning::{message}")
        else:
            print(message)
        return 0
    roots = [search_root(os.path.expanduser(p)).resolve() for p in include]
    if len(files) == 1 and len(include) == 1:
        root = next(iter(files)).parent
    else:
        root = Path(os.path.commonpath([str(r) for r in roots]))
        if root.is_file():
            root = root.parent
    target = Path(store) / os.environ["GITHUB_RUN_ID"] / name
    if target.exists():
        if os.environ.get("INPUT_OVERWRITE") != "true":
            print(
                "::error::Failed to CreateArtifact: Received non-retryable error: Failed request: "
                "(409) Conflict: an artifact with this name already exists on the workflow run"
            )
            return 1
        shutil.rmtree(target)
    for path in files:
        dest = target / path.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    print(f"Artifact {name} has been successfully uploaded! ({len(files)} files)")
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
        out.write(f"artifact-id={abs(hash(str(target))) % 10**9}\n")
        out.write(f"artifact-url=file://{target}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
