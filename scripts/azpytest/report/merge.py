"""One JUnit file from many (`azpytest report --merge`): a second streaming pass over the
files already read, every suite's totals and the whole's recounted."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO
from xml.sax.saxutils import escape, quoteattr

from azpytest.report.junit import local_name, stream
from azpytest.report.model import Shard, SuiteTotals

_TEXT_SPECIAL = re.compile(r"[&<>]")
_ATTRIBUTE_SPECIAL = re.compile(r'[&<>"\n\r\t]')


class XMLWriter:
    """Streams XML to a text file. Every text and attribute value is escaped with
    `xml.sax.saxutils` (`escape`, `quoteattr`); a value with nothing to escape is written as
    is, which is what those would write, only faster. Tag and attribute names come from a
    parsed document, so they are names already."""

    def __init__(self, out: TextIO, scrub: Callable[[str], str] | None = None) -> None:
        self._write = out.write
        self._scrub = scrub

    def declaration(self) -> None:
        self._write('<?xml version="1.0" encoding="utf-8"?>\n')

    def start(self, tag: str, attributes: Mapping[str, str]) -> None:
        self._write(f"<{tag}{self._attributes(attributes)}>\n")

    def end(self, tag: str) -> None:
        self._write(f"</{tag}>\n")

    def element(self, element: ET.Element) -> None:
        """A whole element, its children and text, on one line."""
        parts: list[str] = []
        self._serialize(element, parts)
        parts.append("\n")
        self._write("".join(parts))

    def _serialize(self, element: ET.Element, parts: list[str]) -> None:
        tag = local_name(element.tag)
        attributes = self._attributes(element.attrib)
        if not element.text and not len(element):
            parts.append(f"<{tag}{attributes}/>")
            return
        parts.append(f"<{tag}{attributes}>")
        if element.text:
            parts.append(self._text(element.text))
        for child in element:
            self._serialize(child, parts)
            if child.tail:
                parts.append(self._text(child.tail))
        parts.append(f"</{tag}>")

    def _text(self, value: str) -> str:
        if self._scrub is not None:
            value = self._scrub(value)
        return escape(value) if _TEXT_SPECIAL.search(value) else value

    def _attributes(self, attributes: Mapping[str, str]) -> str:
        scrub, special = self._scrub, _ATTRIBUTE_SPECIAL.search
        parts = []
        for name, value in attributes.items():
            if scrub is not None:
                value = scrub(value)
            quoted = quoteattr(value) if special(value) else f'"{value}"'
            parts.append(f" {local_name(name) if name[:1] == '{' else name}={quoted}")
        return "".join(parts)


def write_merged(
    shards: Sequence[Shard],
    labels: Sequence[str],
    out: Path,
    scrub: Callable[[str], str] | None = None,
) -> None:
    """One JUnit file from many, streamed: `<testsuites>` holding every input's suites, with
    the totals of each suite and of the whole recounted. Written to a temporary file, then
    moved into place."""
    total = SuiteTotals()
    for suite in (s for shard in shards for s in shard.suites if s.depth == 0):
        total.tests += suite.tests
        total.failures += suite.failures
        total.errors += suite.errors
        total.skipped += suite.skipped
        total.seconds += suite.seconds
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("w", encoding="utf-8", newline="") as handle:
            xml = XMLWriter(handle, scrub)
            xml.declaration()
            xml.start("testsuites", {"name": "pytest tests", **_totals(total)})
            for shard, label in zip(shards, labels, strict=True):
                _copy(shard, label, xml)
            xml.end("testsuites")
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)


def _totals(totals: SuiteTotals) -> dict[str, str]:
    return {
        "errors": str(totals.errors),
        "failures": str(totals.failures),
        "skipped": str(totals.skipped),
        "tests": str(totals.tests),
        "time": f"{totals.seconds:.3f}",
    }


def _copy(shard: Shard, label: str, xml: XMLWriter) -> None:
    """A second streaming pass over a file already read: its suites, recounted."""
    suites = iter(shard.suites)
    for kind, element in stream(shard.path, label):
        if kind == "suite":
            counted = _totals(next(suites))
            if "time" in element.attrib:
                del counted["time"]
            xml.start("testsuite", {**element.attrib, **counted})
        elif kind == "end":
            xml.end("testsuite")
        else:
            xml.element(element)
