"""Failure artifacts: what a failed test leaves behind, scrubbed of every masked value.

Files go to `artifacts/<node id as a path>/` beside the JUnit file. Every byte passes
through the scrubber first, which replaces each value `prepare` masked (found through the
variables listed in prepared.json, never stored) with `***`.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from azpytest.masking import Scrubber

_UNSAFE = re.compile(r"[^\w.\-=\[\]@+,]+", re.UNICODE)
_PART_MAX = 80
_PATH_MAX = 200


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
