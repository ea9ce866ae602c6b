"""The results of JUnit files: counts, suites, failures and shards, and the Reader that
gathers them from one file or the shards of a matrix into one Report.

A failure keeps what the summary and annotations show: the test file and line of the failing
assertion (or of the test's call into the helper that failed), the message, pytest's `E`
lines and the traceback, trimmed; every value `prepare` masked replaced by `***`.
"""

from __future__ import annotations

import heapq
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from azpytest import errors
from azpytest.report.junit import (
    LOCATION,
    MARKERS,
    RERUN_ID,
    local_name,
    node_id_of,
    properties_of,
    stream,
)

SLOWEST = 10  # tests in the list of the slowest
CELL = 300  # characters of a table cell
FAILED_TESTS_LIMIT = 256 * 1024  # bytes of the failed-tests output; GitHub caps outputs at 1 MB
SKIP_REASONS = 200  # distinct skip reasons counted (the rest are counted together)
DETAIL_LINES = (15, 25)  # head and tail lines of a traceback shown in <details>
DETAIL_CHARS = 6000
MESSAGE_LINES = 8  # lines of an annotation's message
# Failed tests remembered per file to tell a test's teardown error from another error
# (xdist writes the two apart, but a few reports apart at most).
TEARDOWN_WINDOW = 4096

# A traceback entry: `path.py:12: ...` (pytest's long, short and line styles; the path starts
# the line) or `  File "path.py", line 12, in f` (native).
_FRAME = re.compile(
    r'^(?:(?P<path>(?:[A-Za-z]:)?[^\s:"<>|]+\.py):(?P<line>\d+):'
    r'|\s+File "(?P<npath>[^"\n]+\.py)", line (?P<nline>\d+))',
    re.M,
)
_MISSING_MODULE = re.compile(r"ModuleNotFoundError: No module named '([\w.]{1,200})'")
_EXPLANATION = re.compile(r"^E([ \t].*)?$", re.M)  # pytest's `E   ` lines


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

    @property
    def all_skipped(self) -> bool:
        """Tests were collected and every one was skipped: nothing was tested."""
        return self.skipped > 0 and self.skipped == self.total

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
    shown: str = ""  # as the summary names it (relative; see display_names), else the label
    markers: dict[str, str] = field(default_factory=dict)  # why it holds no test (junit.MARKERS)


@dataclass
class Report:
    shards: list[Shard]
    counts: Counts
    failures: list[Failure]  # the first `keep`, in file order
    errors: list[Failure]  # the first `keep`, in file order
    failed_ids: list[str]  # failed and errored tests, in file order, within the output's cap
    slowest: list[tuple[float, str, str]]  # (seconds, node id, outcome), slowest first
    skip_reasons: list[tuple[int, str]] = field(default_factory=list)  # (tests, reason)
    failed_past_cap: int = 0  # failed tests not kept in failed_ids (past FAILED_TESTS_LIMIT)
    other_skips: int = 0  # skipped tests whose reason was not kept (past SKIP_REASONS)

    @property
    def shown(self) -> list[Failure]:
        """The most useful first: failures before errors, each in file order."""
        return self.failures + self.errors

    def failed_tests(self) -> tuple[list[str], int]:
        """The node ids the `failed-tests` output names (within GitHub's cap on an output's
        size), and how many distinct failed tests there are: every message about that output
        says the same."""
        unique = list(dict.fromkeys(self.failed_ids))  # shards may rerun a test
        named: list[str] = []
        size = 0
        for node_id in unique:
            size += len(node_id.encode("utf-8")) + 1
            if size > FAILED_TESTS_LIMIT:
                break
            named.append(node_id)
        return named, len(unique) + self.failed_past_cap


class _Recent:
    """The failed tests of a file, by (classname, name), to tell a test's teardown error from
    another error: at least the last TEARDOWN_WINDOW of them. Two generations: when the new one
    fills, the old one is dropped whole (no per-test deletes on the hot path)."""

    __slots__ = ("new", "old")

    def __init__(self) -> None:
        self.new: dict[tuple[str, str], Failure | None] = {}
        self.old: dict[tuple[str, str], Failure | None] = {}

    def rotate(self) -> None:
        """Called when `new` (filled by the reader itself: a method call per failed test is
        2 % of a report of a million failures) holds TEARDOWN_WINDOW tests."""
        self.old, self.new = self.new, {}

    def find(self, key: tuple[str, str]) -> tuple[bool, Failure | None]:
        """Whether the test failed recently, and its kept record (None when not kept)."""
        if key in self.new:
            return True, self.new[key]
        if key in self.old:
            return True, self.old[key]
        return False, None


def display_names(paths: list[Path], root: Path) -> list[str]:
    """How the summary names JUnit files: relative to the repository root when they are in
    it, else to the folder they all share (a runner's temporary folder says nothing)."""
    resolved = [path.resolve() for path in paths]
    if all(root in path.parents for path in resolved):
        return [path.relative_to(root).as_posix() for path in resolved]
    common = Path(os.path.commonpath([str(p.parent) for p in resolved])) if resolved else root
    if len(resolved) == 1:
        return [resolved[0].name]
    return [path.relative_to(common).as_posix() for path in resolved]


def _seconds(text: str | None) -> float:
    try:
        return float(text or 0)
    except ValueError:
        return 0.0


class Reader:
    """Reads shards one after another into one Report, in memory that does not grow with the
    number of tests or of failures: what it keeps is what the outputs show (the first `keep`
    failures and errors, the failed ids the `failed-tests` output holds, the SLOWEST tests,
    per-file and per-suite counts, SKIP_REASONS reasons)."""

    def __init__(
        self, root: Path, keep: int, scrub: Callable[[str], str], tests_root: Path | None = None
    ) -> None:
        self.root = root
        # Where pytest ran (working-directory): node ids and test files are relative to it.
        self.tests_root = tests_root or root
        self.keep = keep
        self.scrub = scrub
        self.counts = Counts()
        self.failures: list[Failure] = []
        self.errors: list[Failure] = []
        # Only what the failed-tests output can hold is kept: the first ids, in file order,
        # up to FAILED_TESTS_LIMIT bytes; past it failed tests are only counted (a rerun
        # takes every failed id from the JUnit files themselves: rerun-failed-from).
        self.failed_ids: list[str] = []
        self._failed_seen: set[str] = set()
        self._failed_bytes = 0
        self._failed_full = False
        self.failed_past_cap = 0
        self.slowest: list[tuple[float, int, str, str]] = []  # a min-heap
        self._slow_floor = -1.0  # a test must take longer than this to join the slowest
        self.order = 0
        self.shards: list[Shard] = []
        self.skips: dict[str, int] = {}  # reason -> tests, at most SKIP_REASONS reasons
        self.other_skips = 0

    def read(self, path: Path, label: str, shown: str = "") -> Shard:
        shard = Shard(path, label, shown=shown)
        counts = shard.counts
        # Per file: pytest writes a call failure and a teardown error of one test as two
        # <testcase> elements with the same name, not always next to each other (xdist).
        recent = _Recent()
        # Each suite's totals are the difference of these running sums between its start and
        # its end: O(1) per test case, however deep the suites nest.
        cases = failures = errors = skipped = 0
        case_seconds = 0.0
        open_suites: list[tuple[SuiteTotals, bool, tuple[int, int, int, int, float]]] = []
        slow = self._slow_floor
        for kind, element in stream(path, label):
            if kind == "case":
                try:
                    seconds = float(element.get("time") or 0)
                except ValueError:
                    seconds = 0.0
                cases += 1
                case_seconds += seconds
                if not len(element):  # passed: the common case, kept short
                    counts.passed += 1
                    if seconds > slow:
                        self._time(seconds, element, "passed")
                        slow = self._slow_floor
                    continue
                outcome = self._case(element, seconds, counts, recent)
                if outcome == "failed":
                    failures += 1
                elif outcome == "error" or outcome == "teardown-error":
                    errors += 1
                elif outcome == "skipped" or outcome == "xfailed":
                    skipped += 1
                slow = self._slow_floor
            elif kind == "suite":
                timed = element.get("time") is not None
                totals = SuiteTotals(seconds=_seconds(element.get("time")), depth=len(open_suites))
                shard.suites.append(totals)
                began = (cases, failures, errors, skipped, case_seconds)
                open_suites.append((totals, timed, began))
            elif kind == "end":
                totals, timed, began = open_suites.pop()
                totals.tests = cases - began[0]
                totals.failures = failures - began[1]
                totals.errors = errors - began[2]
                totals.skipped = skipped - began[3]
                if not timed:
                    totals.seconds += case_seconds - began[4]
                if not open_suites:  # nested suites: the outermost holds the time
                    counts.seconds += totals.seconds
            elif kind == "other" and local_name(element.tag) == "properties":
                found = {
                    prop.get("name", ""): prop.get("value", "")
                    for prop in element
                    if prop.get("name") in MARKERS
                }
                shard.markers.update(found)
        self.counts.add(shard.counts)
        self.shards.append(shard)
        return shard

    def _case(
        self,
        element: ET.Element,
        seconds: float,
        counts: Counts,
        failed_here: _Recent,
    ) -> str:
        """Count a test case that has children (a failure, a skip, captured output); its
        outcome."""
        failure: ET.Element | None = None
        error: ET.Element | None = None
        skipped: ET.Element | None = None
        for child in element:
            tag = child.tag
            if tag[:1] == "{":
                tag = local_name(tag)
            if tag == "failure" and failure is None:
                failure = child
            elif tag == "error" and error is None:
                error = child
            elif tag == "skipped" and skipped is None:
                skipped = child
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
                self._skip(skipped)
            if seconds > self._slow_floor:
                self._time(seconds, element, outcome)
            return outcome
        key = (element.get("classname", ""), element.get("name", ""))
        if failure is None and error is not None:
            failed, kept = failed_here.find(key)
            if failed:
                # The teardown error of a test whose call failed: one test, failed; note it.
                if kept is not None:
                    kept.notes.append(_first_line(error.get("message") or error.text or "error"))
                return "teardown-error"
        outcome = "failed" if failure is not None else "error"
        if failure is not None:
            counts.failed += 1
        else:
            counts.errors += 1
        bucket = self.failures if outcome == "failed" else self.errors
        record = None
        # The node id is worked out only where an output shows it.
        if not self._failed_full or len(bucket) < self.keep:
            properties = properties_of(element)
            node_id = properties.get(RERUN_ID) or self._node_id(element)
            self._failed(self.scrub(node_id))
            if len(bucket) < self.keep:
                reported = failure if failure is not None else error
                assert reported is not None
                record = self._failure(node_id, outcome, element, reported, seconds, properties)
                if failure is not None and error is not None:
                    record.notes.append(_first_line(error.get("message") or error.text or "error"))
                bucket.append(record)
            if seconds > self._slow_floor:
                self._time(seconds, element, outcome, node_id)
        else:
            self.failed_past_cap += 1
            if seconds > self._slow_floor:
                self._time(seconds, element, outcome)
        if outcome == "failed":
            recent = failed_here.new
            recent[key] = record
            if len(recent) >= TEARDOWN_WINDOW:
                failed_here.rotate()
        return outcome

    def _node_id(self, element: ET.Element) -> str:
        return node_id_of(
            element.get("classname", ""),
            element.get("name", ""),
            element.get("file"),
            self.tests_root,
        )

    def _time(
        self, seconds: float, element: ET.Element, outcome: str, node_id: str | None = None
    ) -> None:
        """Keep the slowest tests; on a tie, the earlier one (callers pass only tests slower
        than `_slow_floor`). The node id is worked out only for a test that makes the list."""
        self.order += 1
        if node_id is None:
            node_id = properties_of(element).get(RERUN_ID) or self._node_id(element)
        item = (seconds, -self.order, node_id, outcome)
        if len(self.slowest) >= SLOWEST:
            heapq.heapreplace(self.slowest, item)
        else:
            heapq.heappush(self.slowest, item)
        if len(self.slowest) >= SLOWEST:
            self._slow_floor = self.slowest[0][0]

    def _failure(
        self,
        node_id: str,
        kind: str,
        element: ET.Element,
        reported: ET.Element,
        seconds: float,
        properties: dict[str, str],
    ) -> Failure:
        text = reported.text or ""
        message = _first_line(reported.get("message") or text)
        file: str | None
        line: int | None
        if LOCATION in properties:  # recorded by the plugin from pytest's own objects
            file, _, number = properties[LOCATION].rpartition(":")
            file, line = (file, int(number)) if number.isdigit() else (properties[LOCATION], None)
        else:
            module = node_id.split("::", 1)[0]
            file, line = locate(module, text, self.root, self.tests_root)
        if line is None and element.get("line", "").isdigit():
            line = int(element.get("line", "0")) + 1  # pytest writes it 0-based
        scrub = self.scrub
        missing = _MISSING_MODULE.search(text)
        return Failure(
            notes=[errors.module_not_installed(missing.group(1))] if missing else [],
            node_id=scrub(node_id),
            kind=kind,
            file=scrub(file) if file else None,
            line=line,
            message=scrub(message),
            explanation=[scrub(said[:CELL]) for said in explanation(text)[:MESSAGE_LINES]],
            text=scrub(_trim(text)),
            seconds=seconds,
        )

    def _failed(self, node_id: str) -> None:
        """The first failed ids, in file order, as many as the output holds; then none."""
        if node_id in self._failed_seen:
            return  # shards may rerun a test
        if self._failed_full:
            self.failed_past_cap += 1
            return
        size = len(node_id.encode("utf-8")) + 1
        if self._failed_bytes + size > FAILED_TESTS_LIMIT:
            self._failed_full = True  # the output names the first ones: it is full
            self.failed_past_cap += 1
            return
        self._failed_bytes += size
        self._failed_seen.add(node_id)
        self.failed_ids.append(node_id)

    def _skip(self, skipped: ET.Element) -> None:
        """Count the skip under its reason (pytest's `message`), a bounded number of them."""
        reason = " ".join((skipped.get("message") or "no reason given").split())[:CELL]
        if reason in self.skips or len(self.skips) < SKIP_REASONS:
            self.skips[reason] = self.skips.get(reason, 0) + 1
        else:
            self.other_skips += 1

    def report(self) -> Report:
        slowest = sorted(self.slowest, reverse=True)
        reasons = sorted(((n, self.scrub(r)) for r, n in self.skips.items()), key=lambda x: -x[0])
        return Report(
            shards=self.shards,
            counts=self.counts,
            failures=self.failures,
            errors=self.errors,
            failed_ids=self.failed_ids,
            failed_past_cap=self.failed_past_cap,
            slowest=[(s, self.scrub(n), k) for s, _, n, k in slowest if s > 0],
            skip_reasons=reasons,
            other_skips=self.other_skips,
        )


def locate(
    module: str, text: str, root: Path, tests_root: Path | None = None
) -> tuple[str | None, int | None]:
    """The test file (relative to the repository root) and the line of the last traceback
    entry inside it: the failing assertion, or the test's call into the helper that failed.
    Frames in plugins, conftest helpers and site-packages are passed over. `module` is
    relative to `tests_root` (where pytest ran; the root by default). For JUnit written
    without the plugin, which records both (plugin/pointers.py)."""
    module = module.replace("\\", "/")
    found: tuple[str, int] | None = None
    for match in _FRAME.finditer(text):
        path = (match.group("path") or match.group("npath")).replace("\\", "/")
        number = int(match.group("line") or match.group("nline"))
        if _same_file(path, module):
            found = (path, number)
    file = _repo_path(found[0] if found else None, module, root, tests_root or root)
    return file, (found[1] if found else None)


def _same_file(path: str, module: str) -> bool:
    path = path.removeprefix("./")
    return path == module or path.endswith("/" + module) or module.endswith("/" + path)


def _repo_path(frame: str | None, module: str, root: Path, tests_root: Path) -> str | None:
    if not module:
        return None
    if (tests_root / module).exists():
        try:
            return (tests_root / module).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return module
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
