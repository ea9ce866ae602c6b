"""pytest's JUnit XML as a stream, and pytest's node ids from it.

A JUnit file — one, or a shard of a matrix — is read as a stream (`iterparse`, each element
dropped once used), so a 100 000-test report costs what its failures cost, not what its
passes cost.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from azpytest.inputs import InputError

_SUITE_TAGS = ("testsuites", "testsuite")


def node_id_of(classname: str, name: str, file: str | None, root: Path) -> str:
    """pytest's node id from JUnit's `classname` and `name`.

    `tests.test_x.TestC` + `test_a[p]` -> `tests/test_x.py::TestC::test_a[p]`. The class name
    mixes module and class with dots, so the module is the longest prefix that is a `.py` file
    under `root` (or the JUnit `file` attribute, when pytest wrote one). The name is kept
    whole: parametrized ids may hold `/`, `::`, `.` and escaped unicode.
    """
    module, classes = _split_classname(classname, file, str(root))
    return "::".join(part for part in (module, *classes, name) if part)


@lru_cache(maxsize=4096)
def _split_classname(classname: str, file: str | None, root: str) -> tuple[str, tuple[str, ...]]:
    if not classname:
        return (file or "").replace("\\", "/"), ()
    if file:
        file = file.replace("\\", "/")
        dotted = file.removesuffix(".py").replace("/", ".")
        if classname == dotted:
            return file, ()
        if classname.startswith(dotted + "."):
            return file, tuple(classname[len(dotted) + 1 :].split("."))
    parts = classname.split(".")
    found = _find_module(Path(root), parts)
    if found is not None:
        path, used = found
        return path, tuple(parts[used:])
    # No such file under the root (pytest ran elsewhere): classes are CamelCase by convention.
    used = next((i for i, part in enumerate(parts) if i and part[:1].isupper()), len(parts))
    return "/".join(parts[:used]) + ".py", tuple(parts[used:])


def _find_module(root: Path, parts: list[str]) -> tuple[str, int] | None:
    """The `.py` file under `root` that consumes the most leading `parts` (a folder may itself
    hold dots, `v1.2/`), with the number of parts it used."""
    best: tuple[str, int] | None = None
    # (folder relative to root, parts used so far); folders and files are tried per prefix.
    pending: list[tuple[str, int]] = [("", 0)]
    while pending:
        folder, used = pending.pop()
        for end in range(used + 1, len(parts) + 1):
            name = ".".join(parts[used:end])
            relative = f"{folder}{name}"
            if (root / f"{relative}.py").is_file() and (best is None or end > best[1]):
                best = (f"{relative}.py", end)
            if end < len(parts) and (root / relative).is_dir():
                pending.append((f"{relative}/", end))
    return best


def local_name(tag: str) -> str:
    """A tag without its namespace (pytest writes none)."""
    return tag if tag[:1] != "{" else tag.rsplit("}", 1)[1]


def stream(path: Path, label: str) -> Iterator[tuple[str, ET.Element]]:
    """The JUnit file's `suite` (start), `case`, `other` (a suite's non-test child) and `end`
    (of a suite) events; each element is dropped from the tree once the consumer resumes.
    Test cases outside any `<testsuite>` get one made up for them. Raises InputError(label)."""
    stack: list[ET.Element] = []
    tags: list[str] = []  # the local names of `stack`
    orphan: ET.Element | None = None
    try:
        with path.open("rb") as handle:
            for event, element in ET.iterparse(handle, events=("start", "end")):
                tag = element.tag
                if tag[:1] == "{":
                    tag = local_name(tag)
                if event == "start":
                    if not stack and tag not in _SUITE_TAGS:
                        raise InputError(
                            label,
                            f"the root element is <{tag}>, not <testsuites> or <testsuite>: "
                            "not a JUnit XML file (pytest writes one with --junitxml=PATH)",
                        )
                    stack.append(element)
                    tags.append(tag)
                    if tag == "testsuite":
                        if orphan is not None:
                            yield "end", orphan
                            orphan = None
                        yield "suite", element
                    continue
                stack.pop()
                tags.pop()
                parent_tag = tags[-1] if tags else None
                if tag == "testcase":
                    if parent_tag != "testsuite" and orphan is None:
                        orphan = ET.Element("testsuite", {"name": path.stem})
                        yield "suite", orphan
                    yield "case", element
                elif tag == "testsuite":
                    yield "end", element
                elif parent_tag in _SUITE_TAGS:
                    yield "other", element
                else:
                    continue  # inside a test case: it goes with the test case
                if stack:
                    stack[-1].remove(element)
        if orphan is not None:
            yield "end", orphan
    except ET.ParseError as exc:
        line, column = exc.position[0], exc.position[1] + 1  # expat counts columns from 0
        reason = str(exc).split(": line ", 1)[0]
        if reason == "no element found" and (line, column) == (1, 1):
            problem = "the file is empty: did the test run end before pytest wrote it?"
        else:
            problem = (
                f"not well-formed XML at line {line}, column {column} ({reason}): the file "
                "may be cut short (a cancelled run) or not be JUnit XML"
            )
        raise InputError(label, problem) from None
    except FileNotFoundError:
        raise InputError(
            label,
            "no such file: run pytest with --junitxml=PATH first (azpytest run does), "
            "or pass the JUnit file's path",
        ) from None
    except OSError as exc:
        raise InputError(label, f"cannot read it ({exc.strerror})") from None


def failed_node_ids(junit: Path, root: Path | None = None) -> list[str]:
    """Node ids of the failed and errored tests of a JUnit file, streamed."""
    found: list[str] = []
    try:
        for _event, element in ET.iterparse(junit, events=("end",)):
            if element.tag != "testcase":
                continue
            if element.find("failure") is not None or element.find("error") is not None:
                node = node_id_of(
                    element.get("classname", ""),
                    element.get("name", ""),
                    element.get("file"),
                    root or Path.cwd(),
                )
                if node not in found:
                    found.append(node)
            element.clear()
    except ET.ParseError as exc:
        raise InputError("rerun-failed-from", f"{junit} is not valid JUnit XML: {exc}") from None
    return found
