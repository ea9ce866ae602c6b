"""`azpytest report`: the job summary, failure annotations and step outputs from JUnit files.

Reads pytest's JUnit XML — one file, or the shards of a matrix — and, with `--merge`, writes
one merged file. What it writes, every value `prepare` masked replaced by `***`: the job
summary and annotations (see `azpytest.report.summary`), and the step outputs: total, passed,
failed, errors, skipped, junit-path (the merged file, or the inputs one a line),
artifacts-path (`artifacts/` beside the first JUnit file, if there is one) and failed-tests:
the node ids of the failed and errored tests separated by single spaces and not quoted, for a
rerun: `pytest $FAILED_TESTS` with the output passed in through `env:` (an id that holds a
space splits in two; one that held a masked value reads `***`).

First of all, as the action uploads the artifacts folder after this step, it scrubs every
file and name in each artifacts folder, what tests wrote there too, withholding what cannot
be scrubbed, with one notice (`azpytest.artifacts.scrub_folder`).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from azpytest import errors
from azpytest.artifacts import Withheld, scrub_folder
from azpytest.github import Workflow
from azpytest.inputs import InputError, flag_of, from_environment, non_negative_int
from azpytest.masking import Scrubber, scrub_shapes
from azpytest.report.junit import EMPTY_SHARD, NOTHING_TO_RERUN
from azpytest.report.model import Reader, Report, display_names
from azpytest.report.summary import (
    SUMMARY_LIMIT,
    SUMMARY_MARGIN,
    TABLE_ROWS,
    annotate,
    render_summary,
    render_text,
    verdict,
)
from azpytest.rundir import ARTIFACTS, JUNIT, RunDir

DEFAULT_ANNOTATIONS = 10  # GitHub shows at most 10 error annotations per step

_NATURAL = re.compile(r"(\d+)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `report` command's arguments, on its own parser or a subcommand's."""
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


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """The command on arguments `add_arguments` parsed; its exit code."""
    workflow = Workflow(environ)
    try:
        return _report(args, environ, workflow)
    except InputError as exc:
        return errors.bad_input("report", exc, workflow)
    finally:
        workflow.finish()


def _report(args: argparse.Namespace, environ: Mapping[str, str], workflow: Workflow) -> int:
    # Flags from the inputs table (cli.py), else their variables (what action.yml sets).
    junit_path = args.junit_path or from_environment("junit-path", environ)
    patterns = args.junit or ([junit_path] if junit_path else [])
    if not patterns and args.run_dir:
        patterns = [str(RunDir(Path(args.run_dir)).junit)]
    fail_on_failure = bool(args.fail_on_test_failure) or flag_of("fail-on-test-failure", environ)
    allow_all_skipped = bool(args.allow_all_skipped) or flag_of("allow-all-skipped", environ)
    allow_no_tests = bool(args.allow_no_tests) or flag_of("allow-no-tests", environ)
    working = args.working_directory or from_environment("working-directory", environ)
    tests_root = Path(working).resolve() if working else Path.cwd().resolve()
    root = Path(args.root or environ.get("GITHUB_WORKSPACE") or Path.cwd())
    if not root.is_dir():
        raise InputError("--root", f"{root} is not a folder: pass the repository's root")
    merge = Path(args.merge) if args.merge else None
    if merge is not None and not merge.parent.is_dir():
        raise InputError("--merge", f"{merge.parent} does not exist: create the folder first")
    inputs = resolve_inputs(patterns, environ, merge.resolve() if merge else None)
    inputs, superseded = latest_attempts(inputs)
    if superseded:
        workflow.notice(errors.attempts_superseded(superseded), title=errors.REPORT_TITLE)
    scrubber = Scrubber.from_environment(environ)
    # Before anything else can fail: the upload that follows takes these folders as they are.
    withheld = Withheld()
    for folder in _artifact_folders([path for path, _ in inputs], environ):
        found = scrub_folder(folder, scrubber)
        withheld.files += found.files
        withheld.removed += found.removed
    if withheld:
        workflow.notice(withheld.notice(), title=errors.REPORT_TITLE)
    # What the masked values and tokens are not enough for (the merge job knows none):
    # tokens and keys known by their shape (masking.scrub_shapes), in every text written.
    scrub: Callable[[str], str] = (
        (lambda text: scrub_shapes(scrubber.text(text))) if scrubber else scrub_shapes
    )
    keep = max(TABLE_ROWS, args.max_annotations)
    reader = Reader(root.resolve(), keep, scrub, tests_root)
    shown = display_names([path for path, _ in inputs], root.resolve())
    for (path, label), name in zip(inputs, shown, strict=True):
        reader.read(path, label, name)
    report = reader.report()

    if merge is not None:
        # Imported here: the writer's xml.sax.saxutils pulls in urllib.request, http.client and
        # email (17 ms, a sixth of the report's start-up) for runs that merge nothing.
        from azpytest.report.merge import write_merged

        try:
            write_merged(
                report.shards,
                [label for _, label in inputs],
                merge,
                scrub,
            )
        except OSError as exc:
            raise InputError("--merge", f"cannot write {merge} ({exc.strerror})") from None
        junit_paths = [merge.resolve()]
    else:
        junit_paths = [path.resolve() for path, _ in inputs]

    summary_path = workflow.step_summary_path
    written = summary_path.stat().st_size if summary_path and summary_path.is_file() else 0
    limit = SUMMARY_LIMIT - SUMMARY_MARGIN - written
    empty = _empty_run(report, merging=merge is not None or len(inputs) > 1)
    workflow.summary(scrub(render_summary(report, limit, empty)))
    if workflow.in_actions:
        if merge is None:  # merging, the shards' own report steps annotated each failure
            annotate(report, workflow, args.max_annotations)
        print(f"azpytest report: {verdict(report.counts)}", flush=True)
    else:
        print(scrub(render_text(report, junit_paths)), flush=True)
    _outputs(report, workflow, junit_paths, inputs[0][0])
    failing = report.counts.failed + report.counts.errors
    if empty is not None:
        workflow.notice(empty, title=errors.REPORT_TITLE)
    elif report.counts.total == 0 and not allow_no_tests:
        # Green needs a test that ran: a filter that matched nothing must not pass.
        workflow.error(errors.no_test_ran(len(report.shards)), title=errors.REPORT_TITLE)
        failing += 1
    if report.counts.all_skipped and not allow_all_skipped:
        # Green needs a test that ran: a typo'd name or a missing variable skips a suite.
        top = report.skip_reasons[0][1] if report.skip_reasons else "no reason given"
        workflow.error(errors.all_skipped(report.counts.skipped, top), title=errors.REPORT_TITLE)
        failing += 1
    return 1 if fail_on_failure and failing else 0


_ATTEMPT = re.compile(r"^(?P<name>.+)-(?P<shard>\d+)-(?P<attempt>\d+)$")


def latest_attempts(
    inputs: Sequence[tuple[Path, str]],
) -> tuple[list[tuple[Path, str]], list[tuple[str, int, int]]]:
    """Of the shards that several attempts of a workflow run uploaded (download-artifact
    puts each artifact, `<name>-<shard>-<attempt>`, in a folder of that name), the latest
    attempt of each shard only: "Re-run failed jobs" reruns the failed shards, and a test
    counted in both attempts would be counted twice. Also the (artifact name, attempt kept,
    attempts left out) of each shard whose earlier attempts were left out."""
    latest: dict[tuple[Path, str, str], int] = {}
    keys: list[tuple[tuple[Path, str, str], int] | None] = []
    for path, _ in inputs:
        key = None
        for folder in path.resolve().parents:
            match = _ATTEMPT.match(folder.name)
            if match:
                key = ((folder.parent, match["name"], match["shard"]), int(match["attempt"]))
                latest[key[0]] = max(latest.get(key[0], 0), key[1])
                break
        keys.append(key)
    kept: list[tuple[Path, str]] = []
    left_out: dict[tuple[Path, str, str], int] = {}
    for item, key in zip(inputs, keys, strict=True):
        if key is None or key[1] == latest[key[0]]:
            kept.append(item)
        else:
            left_out[key[0]] = left_out.get(key[0], 0) + 1
    superseded = [
        (f"{name}-{shard}", latest[(parent, name, shard)], count)
        for (parent, name, shard), count in left_out.items()
    ]
    return kept, superseded


def _empty_run(report: Report, merging: bool) -> str | None:
    """Why a run with no test is green, if it is: an earlier run had nothing to rerun, or
    (in one shard's own report) the shard got no test of the suite's split. A merge of only
    empty shards is a suite with no test: not explained."""
    if report.counts.total:
        return None
    markers = [shard.markers for shard in report.shards]
    if markers and all(NOTHING_TO_RERUN in found for found in markers):
        return errors.nothing_to_rerun(markers[0][NOTHING_TO_RERUN])
    if not merging and markers and EMPTY_SHARD in markers[0]:
        return errors.empty_shard(markers[0][EMPTY_SHARD])
    return None


def _artifact_folders(junit_files: Sequence[Path], environ: Mapping[str, str]) -> list[Path]:
    """Every folder failure artifacts may be uploaded from: beside each JUnit file, the run
    folder's, and the one artifacts-dir names."""
    folders = [path.resolve().parent / ARTIFACTS for path in junit_files]
    run_dir = RunDir.from_environment(environ)
    if run_dir is not None:
        folders.append(run_dir.path.resolve() / ARTIFACTS)
    setting = from_environment("artifacts-dir", environ)
    if setting:
        folders.append(Path(os.path.abspath(setting)))
    return list(dict.fromkeys(folders))


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
    ids, failed = report.failed_tests()
    if len(ids) < failed:
        workflow.warning(errors.failed_tests_capped(len(ids), failed), title=errors.REPORT_TITLE)
    workflow.set_output("failed-tests", " ".join(ids))
