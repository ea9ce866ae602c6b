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

# Why a JUnit file holds no test, as a suite property `run` writes (the report reads it).
NOTHING_TO_RERUN = "azpytest.nothing-to-rerun"  # value: the earlier JUnit files' names
EMPTY_SHARD = "azpytest.empty-shard"  # value: "<shard number>/<shard count>"
MARKERS = (NOTHING_TO_RERUN, EMPTY_SHARD)
# Set by the plugin on a failed test's JUnit entry: where it failed and how to rerun it.
LOCATION = "azpytest.location"  # "<path from the repository root>:<line>"
RERUN_ID = "azpytest.rerun-id"  # the node id relative to the folder pytest ran in


def write_empty(path: Path, marker: str, value: str) -> None:
    """A JUnit file of no tests that says why (`marker`, one of MARKERS): the report and the
    merge read it as an explained empty run, not as a run that never wrote its results."""
    from xml.sax.saxutils import quoteattr

    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<testsuites>\n'
        '<testsuite name="pytest" errors="0" failures="0" skipped="0" tests="0" time="0">\n'
        f"<properties><property name={quoteattr(marker)} value={quoteattr(value)}/></properties>\n"
        "</testsuite>\n</testsuites>\n",
        encoding="utf-8",
    )


def node_id_of(classname: str, name: str, file: str | None, root: Path) -> str:
    """pytest's node id from JUnit's `classname` and `name`.

    `tests.test_x.TestC` + `test_a[p]` -> `tests/test_x.py::TestC::test_a[p]`. The class name
    mixes module and class with dots, so the module is the longest prefix that is a `.py` file
    under `root` (or the JUnit `file` attribute, when pytest wrote one). The name is kept
    whole: parametrized ids may hold `/`, `::`, `.` and escaped unicode.
    """
    if not classname and not file and "::" not in name:
        return _collected_path(name, str(root))
    module, classes = _split_classname(classname, file, str(root))
    return "::".join(part for part in (module, *classes, name) if part)


@lru_cache(maxsize=1024)
def _collected_path(name: str, root: str) -> str:
    """A collection error's JUnit name is its file or folder as a dotted name
    (`tests.test_kube`): the path a rerun takes (`tests/test_kube.py`)."""
    parts = name.split(".")
    found = _find_module(Path(root), parts)
    if found is not None and found[1] == len(parts):
        return found[0]
    folder = "/".join(parts)
    if (Path(root) / folder).is_dir():
        return folder
    return f"{folder}.py"


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
    """Node ids of the failed and errored tests of a JUnit file, streamed: the plugin's
    rerun id where it recorded one, else the id worked out from `classname` and `name`.
    Raises InputError("rerun-failed-from") for a file that is not JUnit XML."""
    found: dict[str, None] = {}
    for kind, element in stream(junit, "rerun-failed-from"):
        if kind != "case":
            continue
        if element.find("failure") is None and element.find("error") is None:
            continue
        node = properties_of(element).get(RERUN_ID) or node_id_of(
            element.get("classname", ""),
            element.get("name", ""),
            element.get("file"),
            root or Path.cwd(),
        )
        found[node] = None
    return list(found)


def properties_of(element: ET.Element) -> dict[str, str]:
    """The `<properties>` of a test case or suite, as name -> value."""
    found: dict[str, str] = {}
    for child in element:
        if local_name(child.tag) == "properties":
            for prop in child:
                name = prop.get("name")
                if name is not None:
                    found[name] = prop.get("value", "")
    return found
