"""What a reader sees of a Report: the job summary, the terminal's text and the annotations.

- the job summary: a one-line verdict, totals, the failures (capped, each traceback folded
  in `<details>`), the slowest tests and one row per shard, kept under GitHub's 1 MiB cap;
- `::error` annotations at the test file and line of the failing assertion (or of the
  test's call into the helper that failed), failures before errors, at most a given number
  (GitHub shows 10 per step), then one notice of how many more.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

from azpytest import errors
from azpytest.github import Workflow
from azpytest.report.model import CELL, MESSAGE_LINES, Counts, Failure, Report

SUMMARY_LIMIT = 1024 * 1024  # GitHub refuses a step summary over 1 MiB
SUMMARY_MARGIN = 16 * 1024
TABLE_ROWS = 50  # failures listed in the summary
SHARD_ROWS = 100
SKIP_ROWS = 20  # skip reasons listed in the summary


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        hours, rest = divmod(round(seconds), 3600)
        return f"{hours} h {rest // 60} min"
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
    if counts.all_skipped:
        return f"no test ran: {said} in {_duration(counts.seconds)}"
    return f"{said} in {_duration(counts.seconds)}"


def _icon(counts: Counts) -> str:
    if counts.failed or counts.errors:
        return "❌"
    return "✅" if counts.total and not counts.all_skipped else "⚠️"


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


def render_summary(report: Report, limit: int, note: str | None = None) -> str:
    """The job summary in Markdown, at most `limit` bytes: the verdict (and `note`, why a run
    with no test passes), totals, slowest tests and shards always; as many failure rows and
    tracebacks as fit, with a note for the rest."""
    counts = report.counts
    icon = "✅" if note and not counts.total else _icon(counts)
    head = [
        f"### {icon} {verdict(counts)}",
        "",
        *([f"> {note}", ""] if note else []),
        "| Passed | Failed | Errors | Skipped | xfailed | Total | Duration |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {counts.passed} | {counts.failed} | {counts.errors} | {counts.skipped} "
        f"| {counts.xfailed} | {counts.total} | {_duration(counts.seconds)} |",
        "",
    ]
    tail: list[str] = _skips(report)
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
                f"| {_code(shard.shown or shard.label)} | {c.total} | {c.passed} | {c.failed} "
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


def _skips(report: Report) -> list[str]:
    """The skip reasons, grouped, the most frequent first: a typo'd name or a missing
    variable that skips a whole suite shows here."""
    if not report.skip_reasons:
        return []
    lines = [
        f"#### Skipped ({report.counts.skipped})",
        "",
        "| Reason | Tests |",
        "| --- | ---: |",
        *(f"| {_cell(reason)} | {count} |" for count, reason in report.skip_reasons[:SKIP_ROWS]),
    ]
    more = len(report.skip_reasons) - SKIP_ROWS
    rest = sum(count for count, _ in report.skip_reasons[SKIP_ROWS:]) + report.other_skips
    if rest:
        reasons = f"{more} more reasons" if more > 0 else "more reasons"
        lines.append(f"\n_…and {rest} tests skipped for {reasons}._")
    return [*lines, ""]


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
        named, failed = report.failed_tests()
        says = "every one" if len(named) >= failed else f"the first {len(named)} of {failed}"
        notes.append(f"_…and {more} more; the step's `failed-tests` output names {says}._")
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
        workflow.error(
            errors.failure_annotation(
                failure.message, failure.explanation, failure.notes, failure.kind, MESSAGE_LINES
            ),
            title=_clip(failure.node_id, 500),
            file=failure.file,
            line=failure.line,
        )
    failing = report.counts.failed + report.counts.errors
    more = failing - min(limit, len(shown))
    if more > 0:
        named, failed = report.failed_tests()
        workflow.notice(
            errors.more_failures(more, failing, TABLE_ROWS, len(named), failed),
            title=errors.REPORT_TITLE,
        )
