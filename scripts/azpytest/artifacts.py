"""Failure artifacts: what a failed test leaves behind, scrubbed of every masked value.

Files go to `artifacts/<node id as a path>/` beside the JUnit file. Every byte passes
through the scrubber first, which replaces each value `prepare` masked (found through the
variables listed in prepared.json, never stored) with `***`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from azpytest.github import mask_forms

MASK = "***"
MIN_SCRUBBED = 4
_UNSAFE = re.compile(r"[^\w.\-=\[\]@+,]+", re.UNICODE)
_PART_MAX = 80
_PATH_MAX = 200


class Scrubber:
    """Replaces every masked value (and each line of a multi-line one) with ***."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._set: set[str] = set()
        self._forms: list[str] = []
        for value in values:
            self.add(value)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def add(self, value: str) -> None:
        if value:
            # A value of a few characters ("app", a port) would blank parts of every word and
            # path that contains it; the runner still masks it in the log.
            self._set.update(f for f in mask_forms(value, encoded=True) if len(f) >= MIN_SCRUBBED)
            # Longest first, so a value is replaced before any line of it.
            self._forms = sorted(self._set, key=len, reverse=True)

    def text(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def data(self, data: bytes) -> bytes:
        for form in self._forms:
            encoded = form.encode("utf-8")
            if encoded in data:
                data = data.replace(encoded, MASK.encode())
        return data

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Scrubber:
        env = os.environ if environ is None else environ
        run_dir = env.get("AZPYTEST_RUN_DIR")
        names: list[str] = []
        if run_dir:
            try:
                record = json.loads((Path(run_dir) / "prepared.json").read_text("utf-8"))
                names = [str(n) for n in record.get("masked_env", [])]
            except (OSError, ValueError, AttributeError):
                names = []
        # The broker's header is masked in the log; keep it out of every file too.
        names.append("IDENTITY_HEADER")
        return cls(env[name] for name in names if env.get(name))


def node_path(nodeid: str) -> Path:
    """A safe relative folder for a node id: no `..`, nothing absolute, length-limited."""
    parts: list[str] = []
    # The file part's folders stay folders; a "/" in a class, test or parameter id does not.
    file_part, *names = nodeid.split("::")
    for raw in [*file_part.split("/"), *(name.replace("/", "_") for name in names)]:
        part = _UNSAFE.sub("_", raw).strip("._") or "_"
        if len(part) > _PART_MAX:
            digest = hashlib.sha256(part.encode()).hexdigest()[:10]
            part = f"{part[: _PART_MAX - 11]}-{digest}"
        parts.append(part)
    path = "/".join(parts)
    if len(path) > _PATH_MAX:
        digest = hashlib.sha256(nodeid.encode()).hexdigest()[:12]
        path = f"{path[: _PATH_MAX - 13].rstrip('/')}-{digest}"
    return Path(path)


class ArtifactWriter:
    """Writes a failed test's files under `root`, scrubbed."""

    def __init__(self, root: Path, scrubber: Scrubber) -> None:
        self.root = root
        self.scrub = scrubber

    def folder(self, nodeid: str) -> Path:
        return self.root / node_path(nodeid)

    def write(self, nodeid: str, name: str, content: str | bytes) -> Path:
        folder = self.folder(nodeid)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / (_UNSAFE.sub("_", name).strip("._")[:_PART_MAX] or "artifact")
        data = content.encode("utf-8") if isinstance(content, str) else content
        target.write_bytes(self.scrub.data(data))
        return target

    def copy(self, nodeid: str, name: str, source: Path) -> Path:
        return self.write(nodeid, name, source.read_bytes())
