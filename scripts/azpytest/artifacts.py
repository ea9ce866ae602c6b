"""Failure artifacts: what a failed test leaves behind, scrubbed of every masked value.

Files go to `artifacts/<node id as a path>/` beside the JUnit file. Every byte passes
through the scrubber first, which replaces each value `prepare` masked (found through the
variables listed in prepared.json, never stored) with `***`.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from azpytest.masking import MASK, Scrubber

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


# ------------------------------------------------------------------ the folder before upload

# A file larger than this is withheld unread when there are values to scrub: the scrubber
# searches whole texts, and the step must not need gigabytes for a test's dump.
SCRUB_LIMIT = 64 * 1024 * 1024
WITHHELD_SUFFIX = ".withheld.txt"
# A masked value in a name becomes this: `*` is a character upload-artifact refuses in paths.
NAME_MASK = "[masked]"
# Forms of a text the scrubber does not search in bytes (`Scrubber.data` searches UTF-8): a
# fragment found in one of them, at any alignment, withholds the file.
_WIDE = (("utf-16-le", 2), ("utf-16-be", 2), ("utf-32-le", 4), ("utf-32-be", 4))
_ARCHIVES = (  # compressed containers: what they hold cannot be searched
    (b"PK\x03\x04", "a zip archive"),
    (b"\x1f\x8b", "a gzip file"),
    (b"BZh", "a bzip2 file"),
    (b"\xfd7zXZ\x00", "an xz file"),
    (b"\x28\xb5\x2f\xfd", "a zstd file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
)


@dataclass
class Withheld:
    """What `scrub_folder` kept from the upload: files replaced by a `.withheld.txt` note
    (their paths, scrubbed, relative to the folder) and the links and special files removed."""

    files: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.files or self.removed)

    def notice(self) -> str:
        """One line for the notice annotation: the counts and the paths, never a value."""
        parts: list[str] = []
        if self.files:
            parts.append(
                f"withheld {_count(self.files, 'file', 'files')} that may hold a masked value, "
                f"each replaced by <name>{WITHHELD_SUFFIX} saying why: {', '.join(self.files)}"
            )
        if self.removed:
            kinds = ("symbolic link or special file", "symbolic links or special files")
            parts.append(
                f"removed {_count(self.removed, *kinds)} "
                f"(never followed out of the folder): {', '.join(self.removed)}"
            )
        return "Failure artifacts: " + "; ".join(parts) + "."


def _count(items: list[str], one: str, many: str) -> str:
    return f"{len(items)} {one if len(items) == 1 else many}"


def scrub_folder(root: Path, scrubber: Scrubber) -> Withheld:
    """Make `root` safe to upload, in place: every file's contents scrubbed (UTF-8 text as
    text, other bytes as bytes), every file and folder name holding a fragment renamed to its
    scrubbed form, and withheld (replaced by a note saying why) every file that still holds a
    fragment in a form that cannot be scrubbed (UTF-16 or UTF-32 text at any alignment), that
    is a compressed archive (zip, gzip, bzip2, xz, zstd, 7z), or that is over SCRUB_LIMIT.
    Symbolic links (the folder's own among them) and special files are removed, never
    followed. Without masked values only the links and special files change."""
    withheld = Withheld()
    if root.is_symlink():
        root.unlink()
        withheld.removed.append(root.name)
    if not root.is_dir():
        return withheld
    # Bottom-up: a folder is renamed after everything in it.
    for folder, dirs, files in os.walk(root, topdown=False, followlinks=False):
        here = Path(folder)
        for name in sorted(files):
            _scrub_file(root, here / name, scrubber, withheld)
        for name in sorted(dirs):
            path = here / name
            if path.is_symlink():
                path.unlink()
                withheld.removed.append(_relative(root, path, scrubber))
            else:
                _rename(path, scrubber)
    return withheld


def _scrub_file(root: Path, path: Path, scrubber: Scrubber, withheld: Withheld) -> None:
    shown = _relative(root, path, scrubber)
    if path.is_symlink() or not stat.S_ISREG(path.lstat().st_mode):
        path.unlink()
        withheld.removed.append(shown)
        return
    if not scrubber:
        return
    reason = _reason_to_withhold(path, scrubber)
    if reason is not None:
        name = _clean_name(path.name, scrubber)
        path.unlink()
        path.with_name(name + WITHHELD_SUFFIX).write_text(
            f"azpytest withheld {name} from the upload: {reason}.\n", encoding="utf-8"
        )
        withheld.files.append(shown)
        return
    _rename(path, scrubber)


def _reason_to_withhold(path: Path, scrubber: Scrubber) -> str | None:
    """Scrubs the file in place; why it must be withheld instead, if it must."""
    size = path.stat().st_size
    if size > SCRUB_LIMIT:
        return f"it is {size} bytes, over the {SCRUB_LIMIT}-byte limit of what is searched"
    data = path.read_bytes()
    for magic, kind in _ARCHIVES:
        if data.startswith(magic):
            return f"it is {kind}, whose contents cannot be searched for masked values"
    clean = scrubber.data(data)
    for encoding, width in _WIDE:
        for start in range(width):
            body = clean[start : len(clean) - (len(clean) - start) % width]
            text = body.decode(encoding, "replace")
            if scrubber.text(text) != text:
                form = encoding.upper()[:6]  # UTF-16 BE is UTF-16 LE a byte further on
                return f"it holds a masked value as {form} text, which is not scrubbed"
    if clean != data:
        path.write_bytes(clean)
    return None


def _clean_name(name: str, scrubber: Scrubber) -> str:
    return scrubber.text(name).replace(MASK, NAME_MASK) if scrubber else name


def _rename(path: Path, scrubber: Scrubber) -> None:
    clean = _clean_name(path.name, scrubber)
    if clean == path.name:
        return
    target = path.with_name(clean)
    n = 1
    while target.exists() or target.is_symlink():
        n += 1
        target = path.with_name(f"{clean}-{n}")
    path.rename(target)


def _relative(root: Path, path: Path, scrubber: Scrubber) -> str:
    """`path` as the notice names it: relative to `root`, each part scrubbed."""
    parts = path.relative_to(root).parts
    return "/".join(_clean_name(part, scrubber) for part in parts)
