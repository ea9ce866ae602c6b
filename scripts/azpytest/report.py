"""`azpytest report`: the job summary, failure annotations and step outputs from JUnit files.

Reads pytest's JUnit XML — one file, or the shards of a matrix — as a stream (`iterparse`,
each element dropped once used), so a 100 000-test report costs what its failures cost, not
what its passes cost. A second streaming pass writes the merged file for `--merge`.

What it writes, every value `prepare` masked replaced by `***`:

- the job summary: a one-line verdict, totals, the failures (capped, each traceback folded
  in `<details>`), the slowest tests and one row per shard, kept under GitHub's 1 MiB cap;
- `::error` annotations at the test file and line of the failing assertion (or of the
  test's call into the helper that failed), failures before errors, at most
  `--max-annotations` (GitHub shows 10 per step), then one notice of how many more;
- step outputs: total, passed, failed, errors, skipped, junit-path (the merged file, or the
  inputs one a line), artifacts-path (`artifacts/` beside the first JUnit file, if there is
  one) and failed-tests: the node ids of the failed and errored tests separated by single
  spaces and not quoted, for a rerun: `pytest $FAILED_TESTS` with the output passed in through
  `env:` (an id that holds a space splits in two; one that held a masked value reads `***`).
"""

from __future__ import annotations

import argparse
import glob
import heapq
import html
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TextIO
from xml.sax.saxutils import escape, quoteattr

from azpytest import errors
from azpytest.github import Workflow
from azpytest.inputs import InputError, non_negative_int
from azpytest.masking import Scrubber
from azpytest.rundir import ARTIFACTS, JUNIT, RunDir

SUMMARY_LIMIT = 1024 * 1024  # GitHub refuses a step summary over 1 MiB
SUMMARY_MARGIN = 16 * 1024
TABLE_ROWS = 50  # failures listed in the summary
SLOWEST = 10
SHARD_ROWS = 100
DEFAULT_ANNOTATIONS = 10  # GitHub shows at most 10 error annotations per step
FAILED_TESTS_LIMIT = 256 * 1024  # bytes of the failed-tests output; GitHub caps outputs at 1 MB
CELL = 300  # characters of a table cell
DETAIL_LINES = (15, 25)  # head and tail lines of a traceback shown in <details>
DETAIL_CHARS = 6000
MESSAGE_LINES = 8  # lines of an annotation's message

_SUITE_TAGS = ("testsuites", "testsuite")
# A traceback entry: `path.py:12: ...` (pytest's long, short and line styles; the path starts
# the line) or `  File "path.py", line 12, in f` (native).
_FRAME = re.compile(
    r'^(?:(?P<path>(?:[A-Za-z]:)?[^\s:"<>|]+\.py):(?P<line>\d+):'
    r'|\s+File "(?P<npath>[^"\n]+\.py)", line (?P<nline>\d+))',
    re.M,
)
_EXPLANATION = re.compile(r"^E([ \t].*)?$", re.M)  # pytest's `E   ` lines
_NATURAL = re.compile(r"(\d+)")
_TEXT_SPECIAL = re.compile(r"[&<>]")
_ATTRIBUTE_SPECIAL = re.compile(r'[&<>"\n\r\t]')


# ---------------------------------------------------------------------------- node ids


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


# ---------------------------------------------------------------------------- results


@dataclass
class Counts:
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    xfailed: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors + self.skipped + self.xfailed

    def add(self, other: Counts) -> None:
        self.passed += other.passed
        self.failed += other.failed
        self.errors += other.errors
        self.skipped += other.skipped
        self.xfailed += other.xfailed
        self.seconds += other.seconds


@dataclass
class SuiteTotals:
    """One `<testsuite>` as JUnit readers count it: per `<testcase>` element."""

    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    depth: int = 0  # 0 for a top-level suite; a nested one is counted in its parents too


@dataclass
class Failure:
    """A failed or errored test, kept with what the summary and annotations show."""

    node_id: str
    kind: str  # "failed" or "error"
    file: str | None  # relative to the repository root, forward slashes
    line: int | None  # 1-based
    message: str  # the first line of the failure message
    explanation: list[str]  # the `E` lines of pytest's traceback
    text: str  # the traceback, trimmed
    seconds: float
    notes: list[str] = field(default_factory=list)  # e.g. an error on teardown as well

    @property
    def location(self) -> str:
        if self.file and self.line:
            return f"{self.file}:{self.line}"
        return self.file or ""


@dataclass
class Shard:
    """One JUnit file read."""

    path: Path
    label: str  # as the user named it
    counts: Counts = field(default_factory=Counts)
    suites: list[SuiteTotals] = field(default_factory=list)


@dataclass
class Report:
    shards: list[Shard]
    counts: Counts
    failures: list[Failure]  # the first `keep`, in file order
    errors: list[Failure]  # the first `keep`, in file order
    failed_ids: list[str]  # every failed and errored test, in file order
    slowest: list[tuple[float, str, str]]  # (seconds, node id, outcome), slowest first

    @property
    def shown(self) -> list[Failure]:
        """The most useful first: failures before errors, each in file order."""
        return self.failures + self.errors


# ---------------------------------------------------------------------------- reading


def _local(tag: str) -> str:
    """A tag without its namespace (pytest writes none)."""
    return tag if tag[:1] != "{" else tag.rsplit("}", 1)[1]


def _seconds(text: str | None) -> float:
    try:
        return float(text or 0)
    except ValueError:
        return 0.0


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
                    tag = _local(tag)
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


class Reader:
    """Reads shards one after another into one Report."""

    def __init__(self, root: Path, keep: int, scrub: Callable[[str], str]) -> None:
        self.root = root
        self.keep = keep
        self.scrub = scrub
        self.counts = Counts()
        self.failures: list[Failure] = []
        self.errors: list[Failure] = []
        self.failed_ids: list[str] = []
        self.slowest: list[tuple[float, int, str, str]] = []  # a min-heap
        self.order = 0
        self.shards: list[Shard] = []

    def read(self, path: Path, label: str) -> Shard:
        shard = Shard(path, label)
        # Per file: pytest writes a call failure and a teardown error of one test as two
        # <testcase> elements with the same name, not always next to each other (xdist).
        failed_here: dict[str, Failure | None] = {}
        open_suites: list[tuple[SuiteTotals, bool]] = []  # (totals, has its own time)
        for kind, element in stream(path, label):
            if kind == "suite":
                timed = element.get("time") is not None
                totals = SuiteTotals(seconds=_seconds(element.get("time")), depth=len(open_suites))
                shard.suites.append(totals)
                open_suites.append((totals, timed))
            elif kind == "end":
                totals, timed = open_suites.pop()
                if not open_suites:  # nested suites: the outermost holds the time
                    shard.counts.seconds += totals.seconds
            elif kind == "case":
                outcome, seconds = self._case(element, shard, failed_here)
                for totals, timed in open_suites:
                    totals.tests += 1
                    totals.failures += outcome == "failed"
                    totals.errors += outcome in ("error", "teardown-error")
                    totals.skipped += outcome in ("skipped", "xfailed")
                    if not timed:
                        totals.seconds += seconds
        self.counts.add(shard.counts)
        self.shards.append(shard)
        return shard

    def _case(
        self, element: ET.Element, shard: Shard, failed_here: dict[str, Failure | None]
    ) -> tuple[str, float]:
        failure: ET.Element | None = None
        error: ET.Element | None = None
        skipped: ET.Element | None = None
        for child in element:
            tag = _local(child.tag)
            if tag == "failure" and failure is None:
                failure = child
            elif tag == "error" and error is None:
                error = child
            elif tag == "skipped" and skipped is None:
                skipped = child
        seconds = _seconds(element.get("time"))
        counts = shard.counts
        if failure is None and error is None:
            if skipped is None:
                outcome = "passed"
                counts.passed += 1
            elif skipped.get("type") == "pytest.xfail":
                outcome = "xfailed"
                counts.xfailed += 1
            else:
                outcome = "skipped"
                counts.skipped += 1
            self._time(seconds, element, outcome)
            return outcome, seconds
        node_id = self._node_id(element)
        if failure is None and error is not None and node_id in failed_here:
            # The teardown error of a test whose call failed: one test, failed; note it.
            kept = failed_here[node_id]
            if kept is not None:
                kept.notes.append(_first_line(error.get("message") or error.text or "error"))
            return "teardown-error", seconds
        self.failed_ids.append(self.scrub(node_id))
        outcome = "failed" if failure is not None else "error"
        if failure is not None:
            counts.failed += 1
        else:
            counts.errors += 1
        self._time(seconds, element, outcome, node_id)
        bucket = self.failures if outcome == "failed" else self.errors
        record = None
        if len(bucket) < self.keep:
            reported = failure if failure is not None else error
            assert reported is not None
            record = self._failure(node_id, outcome, element, reported, seconds)
            if failure is not None and error is not None:
                record.notes.append(_first_line(error.get("message") or error.text or "error"))
            bucket.append(record)
        if outcome == "failed":
            failed_here[node_id] = record
        return outcome, seconds

    def _node_id(self, element: ET.Element) -> str:
        return node_id_of(
            element.get("classname", ""), element.get("name", ""), element.get("file"), self.root
        )

    def _time(
        self, seconds: float, element: ET.Element, outcome: str, node_id: str | None = None
    ) -> None:
        """Keep the slowest tests; on a tie, the earlier one. The node id of a passed test is
        worked out only if it makes the list."""
        self.order += 1
        full = len(self.slowest) >= SLOWEST
        if full and (seconds, -self.order) <= self.slowest[0][:2]:
            return
        item = (seconds, -self.order, node_id or self._node_id(element), outcome)
        if full:
            heapq.heapreplace(self.slowest, item)
        else:
            heapq.heappush(self.slowest, item)

    def _failure(
        self, node_id: str, kind: str, element: ET.Element, reported: ET.Element, seconds: float
    ) -> Failure:
        text = reported.text or ""
        message = _first_line(reported.get("message") or text)
        module = node_id.split("::", 1)[0]
        file, line = locate(module, text, self.root)
        if line is None and element.get("line", "").isdigit():
            line = int(element.get("line", "0")) + 1  # pytest writes it 0-based
        scrub = self.scrub
        return Failure(
            node_id=scrub(node_id),
            kind=kind,
            file=scrub(file) if file else None,
            line=line,
            message=scrub(message),
            explanation=[scrub(said[:CELL]) for said in explanation(text)[:MESSAGE_LINES]],
            text=scrub(_trim(text)),
            seconds=seconds,
        )

    def report(self) -> Report:
        slowest = sorted(self.slowest, reverse=True)
        return Report(
            shards=self.shards,
            counts=self.counts,
            failures=self.failures,
            errors=self.errors,
            failed_ids=self.failed_ids,
            slowest=[(s, self.scrub(n), k) for s, _, n, k in slowest if s > 0],
        )


def locate(module: str, text: str, root: Path) -> tuple[str | None, int | None]:
    """The test file (relative to the repository root) and the line of the last traceback
    entry inside it: the failing assertion, or the test's call into the helper that failed.
    Frames in plugins, conftest helpers and site-packages are passed over."""
    module = module.replace("\\", "/")
    found: tuple[str, int] | None = None
    for match in _FRAME.finditer(text):
        path = (match.group("path") or match.group("npath")).replace("\\", "/")
        number = int(match.group("line") or match.group("nline"))
        if _same_file(path, module):
            found = (path, number)
    file = _repo_path(found[0] if found else None, module, root)
    return file, (found[1] if found else None)


def _same_file(path: str, module: str) -> bool:
    path = path.removeprefix("./")
    return path == module or path.endswith("/" + module) or module.endswith("/" + path)


def _repo_path(frame: str | None, module: str, root: Path) -> str | None:
    if not module:
        return None
    if (root / module).is_file() or frame is None:
        return module
    candidate = Path(frame)
    if not candidate.is_absolute():
        candidate = Path.cwd() / candidate
    try:
        return candidate.resolve().relative_to(root.resolve()).as_posix()
    except (ValueError, OSError):
        return module


def explanation(text: str) -> list[str]:
    """pytest's `E` lines (what was asserted and how it differed), non-blank, with their
    common indentation removed and the rest kept (diffs are indented)."""
    lines = [line.rstrip() for line in _EXPLANATION.findall(text)]
    lines = [line for line in lines if line.strip()]
    indent = min((len(line) - len(line.lstrip()) for line in lines), default=0)
    return [line[indent:] for line in lines]


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _trim(text: str) -> str:
    lines = text.strip("\n").splitlines()
    head, tail = DETAIL_LINES
    if len(lines) > head + tail:
        lines = [*lines[:head], f"… {len(lines) - head - tail} lines left out …", *lines[-tail:]]
    trimmed = "\n".join(lines)
    if len(trimmed) > DETAIL_CHARS:
        half = DETAIL_CHARS // 2
        trimmed = (
            f"{trimmed[:half]}\n… {len(trimmed) - 2 * half} characters left out …\n"
            + (trimmed[-half:])
        )
    return trimmed


# ---------------------------------------------------------------------------- the summary


def _duration(seconds: float) -> str:
    if seconds >= 60:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s"
    return f"{seconds:.1f} s" if seconds >= 10 else f"{seconds:.2f} s"


def verdict(counts: Counts) -> str:
    """`3 failed, 1 error, 45 passed, 2 skipped, 1 xfailed in 12.3 s`."""
    parts = [
        f"{counts.failed} failed" if counts.failed else "",
        f"{counts.errors} error{'s' if counts.errors != 1 else ''}" if counts.errors else "",
        f"{counts.passed} passed" if counts.passed else "",
        f"{counts.skipped} skipped" if counts.skipped else "",
        f"{counts.xfailed} xfailed" if counts.xfailed else "",
    ]
    said = ", ".join(part for part in parts if part)
    if not said:
        return "no tests ran"
    return f"{said} in {_duration(counts.seconds)}"


def _icon(counts: Counts) -> str:
    if counts.failed or counts.errors:
        return "❌"
    return "✅" if counts.total else "⚠️"


def _clip(text: str, limit: int = CELL) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cell(text: str) -> str:
    """Plain text in a table cell: one line, no HTML, `|` escaped."""
    flat = " ".join(_clip(text).split())
    return html.escape(flat, quote=False).replace("|", "\\|")


def _code(text: str) -> str:
    """Text as inline code in a table cell."""
    flat = " ".join(_clip(text).split()).replace("|", "\\|")
    if not flat:
        return ""
    ticks = "``" if "`" in flat else "`"
    return f"{ticks} {flat} {ticks}" if ticks == "``" else f"`{flat}`"


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}text\n{text}\n{ticks}"


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def render_summary(report: Report, limit: int) -> str:
    """The job summary in Markdown, at most `limit` bytes: the verdict, totals, slowest tests
    and shards always; as many failure rows and tracebacks as fit, with a note for the rest."""
    counts = report.counts
    head = [
        f"### {_icon(counts)} {verdict(counts)}",
        "",
        "| Passed | Failed | Errors | Skipped | xfailed | Total | Duration |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {counts.passed} | {counts.failed} | {counts.errors} | {counts.skipped} "
        f"| {counts.xfailed} | {counts.total} | {_duration(counts.seconds)} |",
        "",
    ]
    tail: list[str] = []
    if report.slowest:
        tail += [
            f"#### Slowest {len(report.slowest)} tests",
            "",
            "| Test | Outcome | Duration |",
            "| --- | --- | ---: |",
            *(f"| {_code(n)} | {k} | {_duration(s)} |" for s, n, k in report.slowest),
            "",
        ]
    if len(report.shards) > 1:
        tail += [
            f"#### Shards ({len(report.shards)} JUnit files)",
            "",
            "| JUnit file | Tests | Passed | Failed | Errors | Skipped | xfailed | Duration |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for shard in report.shards[:SHARD_ROWS]:
            c = shard.counts
            tail.append(
                f"| {_code(shard.label)} | {c.total} | {c.passed} | {c.failed} "
                f"| {c.errors} | {c.skipped} | {c.xfailed} | {_duration(c.seconds)} |"
            )
        if len(report.shards) > SHARD_ROWS:
            tail.append(f"\n_…and {len(report.shards) - SHARD_ROWS} more JUnit files._")
        tail.append("")
    head_text, tail_text = "\n".join(head) + "\n", "\n".join(tail) + "\n" if tail else ""
    if _size(head_text) > limit:
        return ""  # the step's summary is full already
    if _size(head_text) + _size(tail_text) > limit:
        tail_text = ""
    budget = limit - _size(head_text) - _size(tail_text)
    return head_text + _failures(report, budget) + tail_text


def _failures(report: Report, budget: int) -> str:
    """The failures table (at most TABLE_ROWS rows), then each row's traceback folded in
    `<details>`, in at most `budget` bytes: what does not fit is left out, with a note."""
    failing = report.counts.failed + report.counts.errors
    if not failing:
        return ""
    capped = "_Some failures are left out to keep this summary under GitHub's 1 MiB cap._"
    budget -= _size(capped) + 200  # room for the closing notes
    parts = [
        "#### Failures",
        "",
        "| Test | Location | Message | Duration |",
        "| --- | --- | --- | ---: |",
    ]
    used = _size("\n".join(parts)) + 1
    if used > budget:
        return f"{capped}\n\n" if budget > 0 else ""
    shown = report.shown[:TABLE_ROWS]
    rows: list[Failure] = []
    for failure in shown:
        message = failure.message or failure.kind
        for note in failure.notes:
            message += f" (also: {note})"
        row = (
            f"| {_code(failure.node_id)} | {_code(failure.location)} | {_cell(message)} "
            f"| {_duration(failure.seconds)} |"
        )
        if used + _size(row) + 1 > budget:
            break
        parts.append(row)
        used += _size(row) + 1
        rows.append(failure)
    notes: list[str] = []
    if failing > len(rows):
        more = failing - len(rows)
        notes.append(f"_…and {more} more; the step's `failed-tests` output names every one._")
    details: list[str] = []
    for failure in (f for f in rows if f.text):
        where = f" — {html.escape(failure.location)}" if failure.location else ""
        block = (
            f"<details><summary><code>{html.escape(_clip(failure.node_id))}</code>{where}"
            f"</summary>\n\n{_fence(failure.text)}\n\n</details>"
        )
        if used + _size(block) + 2 > budget:
            break
        details.append(block)
        used += _size(block) + 2
    if len(rows) < len(shown) or len(details) < sum(1 for f in rows if f.text):
        notes.append(capped)
    text = "\n".join(parts) + "\n"
    if notes:
        text += "\n" + "\n\n".join(notes) + "\n"
    if details:
        text += "\n" + "\n\n".join(details) + "\n"
    return text + "\n"


def render_text(report: Report, junit_paths: Sequence[Path], rows: int = 10) -> str:
    """What a terminal shows outside Actions."""
    lines = [f"azpytest report: {verdict(report.counts)}"]
    for failure in report.shown[:rows]:
        where = f" ({failure.location})" if failure.location else ""
        label = "FAILED" if failure.kind == "failed" else "ERROR "
        lines.append(f"  {label} {failure.node_id}{where}: {failure.message}")
    failing = report.counts.failed + report.counts.errors
    if failing > min(rows, len(report.shown)):
        lines.append(f"  …and {failing - min(rows, len(report.shown))} more")
    lines += [f"junit: {path}" for path in junit_paths]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- annotations


def annotate(report: Report, workflow: Workflow, limit: int) -> None:
    """`::error` at each failure's file and line, the most useful first; then one notice."""
    shown = report.shown
    for failure in shown[:limit]:
        lines = [failure.message] if failure.message else []
        lines += [e for e in failure.explanation if e not in lines]
        lines = lines[:MESSAGE_LINES]
        lines += [f"also: {note}" for note in failure.notes]
        workflow.error(
            "\n".join(lines) or failure.kind,
            title=_clip(failure.node_id, 500),
            file=failure.file,
            line=failure.line,
        )
    failing = report.counts.failed + report.counts.errors
    more = failing - min(limit, len(shown))
    if more > 0:
        if failing <= TABLE_ROWS:
            are = "failures are" if more > 1 else "failure is"
            text = f"{more} more {are} listed in the job summary"
        else:
            text = (
                f"{more} more failures: the job summary lists the first {TABLE_ROWS} failures "
                "and the step's failed-tests output names every one"
            )
        workflow.notice(text, title="azpytest report")


# ---------------------------------------------------------------------------- merging


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
        tag = _local(element.tag)
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
            parts.append(f" {_local(name) if name[:1] == '{' else name}={quoted}")
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


# ---------------------------------------------------------------------------- the command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="azpytest report",
        description=(
            "Write the job summary, failure annotations and step outputs from pytest's JUnit "
            "XML files; with --merge, also one merged JUnit file."
        ),
    )
    parser.add_argument(
        "junit",
        nargs="*",
        metavar="JUNIT",
        help=f"JUnit files or glob patterns (default $AZPYTEST_RUN_DIR/{JUNIT})",
    )
    parser.add_argument("--merge", metavar="OUT", help="write one JUnit file merged from them all")
    parser.add_argument(
        "--root",
        metavar="DIR",
        help="the repository root that annotation paths are relative to "
        "(default $GITHUB_WORKSPACE, else the current folder)",
    )
    parser.add_argument(
        "--max-annotations",
        type=non_negative_int,
        default=DEFAULT_ANNOTATIONS,
        metavar="N",
        help=f"failures annotated at their line (default {DEFAULT_ANNOTATIONS}, GitHub's cap)",
    )
    parser.add_argument(
        "--fail-on-failure",
        action="store_true",
        help="exit 1 if a test failed or errored (by default the run step fails the job)",
    )
    return parser


def _natural(path: str) -> list[str | int]:
    return [int(part) if part.isdigit() else part for part in _NATURAL.split(path)]


def resolve_inputs(
    patterns: Sequence[str], environ: Mapping[str, str], exclude: Path | None
) -> list[tuple[Path, str]]:
    """The JUnit files (path, label as the user wrote it): globs expanded in natural order
    (shard-2 before shard-10), duplicates and the merge output itself left out."""
    if not patterns:
        run_dir = RunDir.from_environment(environ)
        if run_dir is None:
            raise InputError(
                "JUNIT",
                "no JUnit file given and AZPYTEST_RUN_DIR is not set: pass the file, "
                "e.g. `azpytest report junit.xml`",
            )
        patterns = [str(run_dir.junit)]
    found: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for pattern in patterns:
        if glob.has_magic(pattern) and not Path(pattern).exists():
            matches = sorted(glob.glob(pattern, recursive=True), key=_natural)
            matches = [m for m in matches if exclude is None or Path(m).resolve() != exclude]
            if not matches:
                raise InputError(
                    pattern, "the pattern matches no file: did the test run write its JUnit file?"
                )
            names = [(Path(m), m) for m in matches]
        else:
            names = [(Path(pattern), pattern)]
        for path, label in names:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                found.append((path, label))
    return found


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    environ = os.environ
    # The action passes its inputs through the environment.
    if not args.junit and environ.get("AZPYTEST_JUNIT_PATH"):
        args.junit = [environ["AZPYTEST_JUNIT_PATH"]]
    if environ.get("AZPYTEST_FAIL_ON_TEST_FAILURE", "").strip().lower() == "true":
        args.fail_on_failure = True
    workflow = Workflow(environ)
    try:
        return _report(args, environ, workflow)
    except InputError as exc:
        return errors.bad_input("report", exc, workflow)


def _report(args: argparse.Namespace, environ: Mapping[str, str], workflow: Workflow) -> int:
    root = Path(args.root or environ.get("GITHUB_WORKSPACE") or Path.cwd())
    if not root.is_dir():
        raise InputError("--root", f"{root} is not a folder: pass the repository's root")
    merge = Path(args.merge) if args.merge else None
    if merge is not None and not merge.parent.is_dir():
        raise InputError("--merge", f"{merge.parent} does not exist: create the folder first")
    inputs = resolve_inputs(args.junit, environ, merge.resolve() if merge else None)
    scrubber = Scrubber.from_environment(environ)
    scrub: Callable[[str], str] = scrubber.text if scrubber else _same
    keep = max(TABLE_ROWS, args.max_annotations)
    reader = Reader(root.resolve(), keep, scrub)
    for path, label in inputs:
        reader.read(path, label)
    report = reader.report()

    if merge is not None:
        try:
            write_merged(
                report.shards,
                [label for _, label in inputs],
                merge,
                scrubber.text if scrubber else None,
            )
        except OSError as exc:
            raise InputError("--merge", f"cannot write {merge} ({exc.strerror})") from None
        junit_paths = [merge.resolve()]
    else:
        junit_paths = [path.resolve() for path, _ in inputs]

    summary_path = workflow.step_summary_path
    written = summary_path.stat().st_size if summary_path and summary_path.is_file() else 0
    limit = SUMMARY_LIMIT - SUMMARY_MARGIN - written
    workflow.summary(scrub(render_summary(report, limit)))
    if workflow.in_actions:
        annotate(report, workflow, args.max_annotations)
        print(f"azpytest report: {verdict(report.counts)}", flush=True)
    else:
        print(scrub(render_text(report, junit_paths)), flush=True)
    _outputs(report, workflow, junit_paths, inputs[0][0])
    failing = report.counts.failed + report.counts.errors
    return 1 if args.fail_on_failure and failing else 0


def _same(text: str) -> str:
    return text


def _outputs(report: Report, workflow: Workflow, junit_paths: Sequence[Path], first: Path) -> None:
    counts = report.counts
    for name, value in (
        ("total", counts.total),
        ("passed", counts.passed),
        ("failed", counts.failed),
        ("errors", counts.errors),
        ("skipped", counts.skipped),
    ):
        workflow.set_output(name, str(value))
    workflow.set_output("junit-path", "\n".join(str(path) for path in junit_paths))
    artifacts = first.resolve().parent / ARTIFACTS
    workflow.set_output("artifacts-path", str(artifacts) if artifacts.is_dir() else "")
    ids: list[str] = []
    size = 0
    unique = list(dict.fromkeys(report.failed_ids))  # shards may rerun a test
    for node_id in unique:
        size += _size(node_id) + 1
        if size > FAILED_TESTS_LIMIT:
            workflow.warning(
                f"failed-tests names the first {len(ids)} of {len(unique)} failed "
                "tests: GitHub caps a step output's size",
                title="azpytest report",
            )
            break
        ids.append(node_id)
    workflow.set_output("failed-tests", " ".join(ids))
