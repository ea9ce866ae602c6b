"""`scrub_folder`: an artifacts folder made safe to upload, in place."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from azpytest import artifacts
from azpytest.artifacts import scrub_folder
from azpytest.masking import Scrubber

SECRET = "pg-Pa55word-xyz"
NOISE = bytes(range(128, 256)) * 8  # not UTF-8


def _tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


def test_a_secret_in_utf32_or_an_archive_withholds_the_file(tmp_path: Path) -> None:
    (tmp_path / "wide.bin").write_bytes(NOISE + SECRET.encode("utf-32-be") + NOISE)
    (tmp_path / "logs.gz").write_bytes(gzip.compress(SECRET.encode()))
    withheld = scrub_folder(tmp_path, Scrubber([SECRET]))
    assert _tree(tmp_path) == {
        "logs.gz.withheld.txt": b"azpytest withheld logs.gz from the upload: it is a gzip file, "
        b"whose contents cannot be searched for masked values.\n",
        "wide.bin.withheld.txt": b"azpytest withheld wide.bin from the upload: it holds a "
        b"masked value as UTF-32 text, which is not scrubbed.\n",
    }
    assert withheld.files == ["logs.gz", "wide.bin"]
    assert withheld.notice().startswith("Failure artifacts: withheld 2 files ")


def test_a_file_over_the_limit_is_withheld_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifacts, "SCRUB_LIMIT", 100)
    (tmp_path / "small.txt").write_bytes(b"x" * 100)
    (tmp_path / f"dump-{SECRET}.log").write_bytes(b"x" * 101)
    withheld = scrub_folder(tmp_path, Scrubber([SECRET]))
    assert _tree(tmp_path) == {
        "dump-[masked].log.withheld.txt": b"azpytest withheld dump-[masked].log from the "
        b"upload: it is 101 bytes, over the 100-byte limit of what is searched.\n",
        "small.txt": b"x" * 100,
    }
    assert withheld.files == ["dump-[masked].log"]


def test_a_scrubbed_name_never_replaces_another_file(tmp_path: Path) -> None:
    (tmp_path / "a-[masked]").write_text("kept\n")
    (tmp_path / f"a-{SECRET}").write_text("renamed\n")
    scrub_folder(tmp_path, Scrubber([SECRET]))
    assert _tree(tmp_path) == {"a-[masked]": b"kept\n", "a-[masked]-2": b"renamed\n"}


def test_links_and_special_files_are_removed_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text(SECRET)
    folder = tmp_path / "artifacts"
    folder.mkdir()
    (folder / "to-outside").symlink_to(outside)
    (folder / "to-file").symlink_to(outside / "keep.txt")
    os.mkfifo(folder / "pipe")
    withheld = scrub_folder(folder, Scrubber([SECRET]))
    assert _tree(folder) == {}
    assert sorted(withheld.removed) == ["pipe", "to-file", "to-outside"]
    assert (outside / "keep.txt").read_text() == SECRET
    # The folder itself a link: removed, so the upload finds nothing.
    linked = tmp_path / "linked"
    linked.symlink_to(outside)
    assert scrub_folder(linked, Scrubber([SECRET])).removed == ["linked"]
    assert not linked.exists()
    assert (outside / "keep.txt").read_text() == SECRET


def test_nothing_to_scrub_leaves_files_and_names_alone(tmp_path: Path) -> None:
    (tmp_path / f"n-{SECRET}").write_bytes(NOISE + SECRET.encode("utf-16-le"))
    before = _tree(tmp_path)
    assert not scrub_folder(tmp_path, Scrubber())
    assert _tree(tmp_path) == before
    assert not scrub_folder(tmp_path / "missing", Scrubber([SECRET]))
