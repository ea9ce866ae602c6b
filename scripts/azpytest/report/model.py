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
    """Reads shards one after another into one Report."""

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
        # Only what the failed-tests output can hold is kept: memory stays flat however
        # many tests fail (1M failures would otherwise keep 1M ids).
        self.failed_ids: list[str] = []
        self._failed_seen: set[str] = set()
        self._failed_bytes = 0
        self.failed_past_cap = 0
        self.slowest: list[tuple[float, int, str, str]] = []  # a min-heap
        self.order = 0
        self.shards: list[Shard] = []
        self.skips: dict[str, int] = {}  # reason -> tests, at most SKIP_REASONS reasons
        self.other_skips = 0

    def read(self, path: Path, label: str, shown: str = "") -> Shard:
        shard = Shard(path, label, shown=shown)
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
            elif kind == "other":
                if local_name(element.tag) == "properties":
                    found = {
                        prop.get("name", ""): prop.get("value", "")
                        for prop in element
                        if prop.get("name") in MARKERS
                    }
                    shard.markers.update(found)
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
            tag = local_name(child.tag)
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
                self._skip(skipped)
            self._time(seconds, element, outcome)
            return outcome, seconds
        properties = properties_of(element)
        node_id = properties.get(RERUN_ID) or self._node_id(element)
        if failure is None and error is not None and node_id in failed_here:
            # The teardown error of a test whose call failed: one test, failed; note it.
            kept = failed_here[node_id]
            if kept is not None:
                kept.notes.append(_first_line(error.get("message") or error.text or "error"))
            return "teardown-error", seconds
        self._failed(self.scrub(node_id))
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
            record = self._failure(node_id, outcome, element, reported, seconds, properties)
            if failure is not None and error is not None:
                record.notes.append(_first_line(error.get("message") or error.text or "error"))
            bucket.append(record)
        if outcome == "failed":
            failed_here[node_id] = record
        return outcome, seconds

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
        if node_id in self._failed_seen:
            return  # shards may rerun a test
        size = len(node_id.encode("utf-8")) + 1
        if self._failed_bytes + size > FAILED_TESTS_LIMIT:
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
