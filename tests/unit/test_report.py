"""`azpytest report`'s parts: node ids, failure locations, the summary's text and cap, the
streaming reader's errors, the merged file's escaping and the input list."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from azpytest.github import Workflow
from azpytest.masking import Scrubber
from azpytest.report.command import resolve_inputs
from azpytest.report.junit import node_id_of
from azpytest.report.merge import write_merged
from azpytest.report.model import Counts, Failure, Reader, Report, locate
from azpytest.report.summary import annotate, render_summary, verdict
from azpytest.settings import InputError


def _touch(root: Path, *paths: str) -> None:
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("")


def _same(text: str) -> str:
    return text


# ---------------------------------------------------------------------------- node ids


def test_node_id_takes_the_longest_module_prefix_that_is_a_file(tmp_path: Path) -> None:
    _touch(tmp_path, "tests/test_x.py", "tests/integration/test_db.py")
    assert node_id_of("tests.test_x", "test_a", None, tmp_path) == "tests/test_x.py::test_a"
    assert (
        node_id_of("tests.test_x.TestC", "test_a[param]", None, tmp_path)
        == "tests/test_x.py::TestC::test_a[param]"
    )
    assert (
        node_id_of("tests.integration.test_db.TestPool.TestInner", "test_b", None, tmp_path)
        == "tests/integration/test_db.py::TestPool::TestInner::test_b"
    )


def test_node_id_keeps_parametrized_ids_whole(tmp_path: Path) -> None:
    _touch(tmp_path, "tests/test_x.py")
    for name in ("test_a[a/b]", "test_a[x::y]", "test_a[\\xfcn\\xef]", "test_a[1.5-ü]"):
        assert node_id_of("tests.test_x", name, None, tmp_path) == f"tests/test_x.py::{name}"


def test_node_id_finds_modules_in_folders_with_dots(tmp_path: Path) -> None:
    _touch(tmp_path, "suites/v1.2/test_api.py")
    assert (
        node_id_of("suites.v1.2.test_api.TestGet", "test_ok", None, tmp_path)
        == "suites/v1.2/test_api.py::TestGet::test_ok"
    )


def test_node_id_without_the_file_guesses_classes_by_their_capital(tmp_path: Path) -> None:
    assert (
        node_id_of("tests.test_gone.TestC", "test_a", None, tmp_path)
        == "tests/test_gone.py::TestC::test_a"
    )
    assert node_id_of("tests.test_gone", "test_a", None, tmp_path) == "tests/test_gone.py::test_a"


def test_node_id_uses_the_file_attribute_of_xunit1(tmp_path: Path) -> None:
    assert (
        node_id_of("tests.test_x.TestC", "test_a", "tests/test_x.py", tmp_path)
        == "tests/test_x.py::TestC::test_a"
    )


# ---------------------------------------------------------------------------- locations

HELPER_FAILURE = """\
def test_total():
        cart = [1, 2]
>       assert_total(cart, 4)

shop/test_shop.py:13: 
_ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ 

cart = [1, 2], expected = 4

    def assert_total(cart, expected):
>       assert sum(cart) == expected
E       assert 3 == 4

shop/helpers.py:3: AssertionError"""


def test_location_is_the_last_frame_in_the_test_file(tmp_path: Path) -> None:
    _touch(tmp_path, "shop/test_shop.py")
    assert locate("shop/test_shop.py", HELPER_FAILURE, tmp_path) == ("shop/test_shop.py", 13)


def test_location_passes_over_plugin_and_site_packages_frames(tmp_path: Path) -> None:
    text = (
        "tests/test_x.py:8: in test_a\n    check()\n"
        "/usr/lib/python3/site-packages/plugin/checks.py:40: in check\n    raise\n"
        "tests/conftest.py:12: in helper\n    assert False\nE   AssertionError\n"
    )
    assert locate("tests/test_x.py", text, tmp_path) == ("tests/test_x.py", 8)


def test_location_reads_native_and_line_tracebacks(tmp_path: Path) -> None:
    _touch(tmp_path, "tests/test_x.py")
    native = (
        'Traceback (most recent call last):\n  File "/opt/venv/_pytest/runner.py", line 341\n'
        f'  File "{tmp_path}/tests/test_x.py", line 21, in test_a\n    assert x\n'
        "AssertionError"
    )
    assert locate("tests/test_x.py", native, tmp_path) == ("tests/test_x.py", 21)
    line_style = f"{tmp_path}/tests/test_x.py:34: AssertionError: assert 1 == 2"
    assert locate("tests/test_x.py", line_style, tmp_path) == ("tests/test_x.py", 34)


def test_location_relative_to_the_repository_when_pytest_ran_in_a_subfolder(
    tmp_path: Path,
) -> None:
    _touch(tmp_path, "python/tests/test_x.py")
    text = f"{tmp_path}/python/tests/test_x.py:5: AssertionError"
    assert locate("tests/test_x.py", text, tmp_path) == ("python/tests/test_x.py", 5)


def test_location_without_a_frame_in_the_test_file_has_no_line(tmp_path: Path) -> None:
    text = "conftest.py:9: in database\n    raise ConnectionError\nE   ConnectionError"
    assert locate("tests/test_x.py", text, tmp_path) == ("tests/test_x.py", None)


# ---------------------------------------------------------------------------- the summary


def test_verdict_names_each_outcome_once() -> None:
    assert (
        verdict(Counts(passed=45, failed=3, errors=1, skipped=2, xfailed=1, seconds=12.34))
        == "3 failed, 1 error, 45 passed, 2 skipped, 1 xfailed in 12.3 s"
    )
    assert verdict(Counts(passed=50, seconds=3.1)) == "50 passed in 3.10 s"
    assert verdict(Counts(errors=2, seconds=75)) == "2 errors in 1 min 15 s"
    assert verdict(Counts(passed=9, seconds=44_309)) == "9 passed in 12 h 18 min 29 s"
    assert verdict(Counts()) == "no tests ran"


def test_failed_ids_are_kept_only_as_far_as_the_output_holds(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    with junit.open("w") as out:
        out.write("<testsuite>")
        for n in range(40_000):
            out.write(
                f'<testcase classname="t" name="test_{n:06}_{"x" * 20}"><failure/></testcase>'
            )
        out.write("</testsuite>")
    report = _read(junit)
    named, failed = report.failed_tests()
    assert failed == 40_000 and report.counts.failed == 40_000
    assert len(report.failed_ids) == len(named) < 40_000  # nothing kept past the cap
    assert sum(len(n) + 1 for n in named) <= 256 * 1024


def _failure(n: int, **changes: object) -> Failure:
    values: dict[str, object] = {
        "node_id": f"tests/test_x.py::test_{n}",
        "kind": "failed",
        "file": "tests/test_x.py",
        "line": n,
        "message": f"assert {n} == 0",
        "explanation": [f"assert {n} == 0"],
        "text": f"E   assert {n} == 0\n" * 40,
        "seconds": 0.5,
    }
    values.update(changes)
    return Failure(**values)  # type: ignore[arg-type]


def _report(failures: list[Failure], errors: int = 0) -> Report:
    counts = Counts(failed=len(failures), errors=errors, passed=3, seconds=4.2)
    return Report(
        shards=[],
        counts=counts,
        failures=failures,
        errors=[],
        failed_ids=[f.node_id for f in failures],
        slowest=[],
    )


def test_summary_escapes_table_cells() -> None:
    failure = _failure(
        1,
        node_id="tests/test_x.py::test_a[a|b]",
        message="expected <b>bold</b> | got\nnothing",
        notes=['failed on teardown with "RuntimeError: boom"'],
    )
    summary = render_summary(_report([failure]), 100_000)
    row = next(line for line in summary.splitlines() if "test_a" in line and line.startswith("|"))
    assert row == (
        "| `tests/test_x.py::test_a[a\\|b]` | `tests/test_x.py:1` | expected &lt;b&gt;bold&lt;/b&gt; "
        '\\| got nothing (also: failed on teardown with "RuntimeError: boom") | 0.50 s |'
    )


def test_summary_folds_tracebacks_and_fences_backticks() -> None:
    failure = _failure(1, text="```\nE   assert '```' == ''")
    summary = render_summary(_report([failure]), 100_000)
    assert (
        "<details><summary><code>tests/test_x.py::test_1</code> — tests/test_x.py:1</summary>\n\n"
        "````text\n```\nE   assert '```' == ''\n````\n\n</details>"
    ) in summary


def test_summary_caps_rows_and_says_how_many_more() -> None:
    summary = render_summary(_report([_failure(n) for n in range(60)], errors=5), 1_000_000)
    rows = [line for line in summary.splitlines() if line.startswith("| `tests/")]
    assert len(rows) == 50
    assert "_…and 15 more; the step's `failed-tests` output names every one._" in summary
    assert "1 MiB" not in summary


@pytest.mark.parametrize("limit", [300, 2_000, 20_000, 40_000])
def test_summary_stays_within_its_byte_budget(limit: int) -> None:
    summary = render_summary(_report([_failure(n) for n in range(60)]), limit)
    assert len(summary.encode()) <= limit
    assert summary.startswith("### ❌ 60 failed, 3 passed in 4.20 s\n")
    if limit >= 2_000:
        assert "_Some failures are left out to keep this summary under GitHub's 1 MiB cap._" in (
            summary
        )


def test_a_huge_failure_message_is_clipped_in_its_annotation_with_a_pointer() -> None:
    failure = _failure(1, message="assert " + "x" * 5_000_000, explanation=[])
    out = io.StringIO()
    annotate(_report([failure]), Workflow({"GITHUB_ACTIONS": "true"}, out=out), 10)
    line = out.getvalue().splitlines()[0]
    message = line.split("::", 2)[2]
    assert len(message.encode()) <= 4096
    assert message.endswith("… (clipped: the job summary holds the whole failure)")


def test_every_message_about_failed_tests_says_the_same_when_it_is_capped() -> None:
    # 3,000 failures with long ids: more than GitHub lets one output hold.
    failures = [_failure(n, node_id=f"tests/test_x.py::test_{n}_{'p' * 120}") for n in range(3000)]
    report = _report(failures)
    named, failed = report.failed_tests()
    assert failed == 3000 and 0 < len(named) < 3000
    assert sum(len(n.encode()) + 1 for n in named) <= 256 * 1024
    summary = render_summary(report, 1_000_000)
    assert f"output names the first {len(named)} of 3000._" in summary
    out = io.StringIO()
    annotate(report, Workflow({"GITHUB_ACTIONS": "true"}, out=out), 10)
    notice = out.getvalue().splitlines()[-1]
    assert notice.endswith(f"failed-tests output names the first {len(named)} of 3000")
    assert "every one" not in summary + out.getvalue()


# ---------------------------------------------------------------------------- reading


def _read(path: Path, root: Path | None = None) -> Report:
    reader = Reader(root or path.parent, keep=50, scrub=_same)
    reader.read(path, path.name)
    return reader.report()


def test_teardown_error_after_a_failure_counts_once_even_apart(tmp_path: Path) -> None:
    # xdist can put another test between a test's call failure and its teardown error.
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest" tests="4">'
        '<testcase classname="t" name="test_a" time="1.5"><failure message="assert 0">'
        "t.py:3: AssertionError</failure></testcase>"
        '<testcase classname="t" name="test_b" time="0.1"/>'
        '<testcase classname="t" name="test_a" time="0.0">'
        '<error message="failed on teardown with &quot;OSError: x&quot;">t.py:9: OSError</error>'
        "</testcase>"
        '<testcase classname="t" name="test_c" time="0.1">'
        '<skipped type="pytest.xfail" message="bug"/></testcase>'
        "</testsuite></testsuites>"
    )
    report = _read(junit)
    assert report.counts.seconds == pytest.approx(1.7)  # no suite time: the tests' sum
    assert report.counts == Counts(passed=1, failed=1, xfailed=1, seconds=report.counts.seconds)
    assert report.failed_ids == ["t.py::test_a"]
    (failure,) = report.failures
    assert failure.notes == ['failed on teardown with "OSError: x"']
    assert failure.location == "t.py:3"


def test_xunit1_line_attribute_is_made_one_based(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuite name="pytest"><testcase classname="tests.test_x" name="test_a" '
        'file="tests/test_x.py" line="8" time="0.1">'
        '<failure message="boom">conftest.py:3: RuntimeError</failure></testcase></testsuite>'
    )
    (failure,) = _read(junit).failures
    assert (failure.node_id, failure.location) == ("tests/test_x.py::test_a", "tests/test_x.py:9")


def test_test_cases_outside_a_suite_are_read(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text('<testsuites><testcase classname="t" name="test_a" time="2"/></testsuites>')
    report = _read(junit)
    assert (report.counts.passed, report.counts.seconds) == (1, 2.0)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (
            '<testsuites><testsuite name="p">\n<testcase name="a">\n</testsuite>',
            "not well-formed XML at line 3, column 3 (mismatched tag): the file may be cut "
            "short (a cancelled run) or not be JUnit XML",
        ),
        (
            '<testsuites><testsuite name="p"><testcase name="a"/>',
            "not well-formed XML at line 1, column 53 (no element found): the file may be cut "
            "short (a cancelled run) or not be JUnit XML",
        ),
        ("", "the file is empty: did the test run end before pytest wrote it?"),
        (
            "<html><body/></html>",
            "the root element is <html>, not <testsuites> or <testsuite>: not a JUnit XML file "
            "(pytest writes one with --junitxml=PATH)",
        ),
    ],
)
def test_unreadable_junit_names_the_file_and_the_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    junit = tmp_path / "shard-2.xml"
    junit.write_text(content)
    with pytest.raises(InputError) as caught:
        _read(junit)
    assert str(caught.value) == f"shard-2.xml: {problem}"


def test_missing_junit_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^junit.xml: no such file: run pytest with --junitxml"):
        _read(tmp_path / "junit.xml")


def test_slowest_keeps_the_ten_longest_and_the_earlier_on_a_tie(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    cases = "".join(f'<testcase classname="t" name="test_{n}" time="{n % 12}"/>' for n in range(30))
    junit.write_text(f"<testsuite>{cases}</testsuite>")
    slowest = _read(junit).slowest
    assert [(s, n) for s, n, _ in slowest] == [
        (11.0, "t.py::test_11"),
        (11.0, "t.py::test_23"),
        (10.0, "t.py::test_10"),
        (10.0, "t.py::test_22"),
        (9.0, "t.py::test_9"),
        (9.0, "t.py::test_21"),
        (8.0, "t.py::test_8"),
        (8.0, "t.py::test_20"),
        (7.0, "t.py::test_7"),
        (7.0, "t.py::test_19"),
    ]


# ---------------------------------------------------------------------------- merging


def test_merged_file_escapes_text_and_attributes_and_scrubs(tmp_path: Path) -> None:
    tricky = "a & b < c > d \"q\" 's'\nnext\tline ]]> ü 🙂"
    shard = tmp_path / "in.xml"
    case = ET.Element("testcase", {"classname": "t", "name": "test_a[<&>]", "time": "1"})
    failure = ET.SubElement(case, "failure", {"message": tricky + " hunter22"})
    failure.text = tricky + " hunter22"
    suite = ET.Element("testsuite", {"name": "pytest", "tests": "99"})
    suite.append(case)
    ET.ElementTree(suite).write(shard, encoding="utf-8", xml_declaration=True)
    reader = Reader(tmp_path, keep=50, scrub=_same)
    reader.read(shard, "in.xml")
    out = tmp_path / "merged.xml"
    write_merged(reader.report().shards, ["in.xml"], out, Scrubber(["hunter22"]).text)
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites"
    assert root.attrib == {
        "name": "pytest tests",
        "errors": "0",
        "failures": "1",
        "skipped": "0",
        "tests": "1",
        "time": "1.000",
    }
    (merged_suite,) = root
    assert merged_suite.attrib == {
        "name": "pytest",
        "tests": "1",
        "errors": "0",
        "failures": "1",
        "skipped": "0",
        "time": "1.000",
    }
    merged_failure = merged_suite.find("testcase/failure")
    assert merged_failure is not None
    assert merged_failure.get("message") == tricky + " ***"
    assert merged_failure.text == tricky + " ***"
    assert merged_suite[0].get("name") == "test_a[<&>]"
    assert "hunter22" not in out.read_text()


# ---------------------------------------------------------------------------- inputs


def test_globs_expand_in_natural_order_without_the_merge_output(tmp_path: Path) -> None:
    for n in (10, 2, 1):
        (tmp_path / f"junit-{n}.xml").write_text("")
    (tmp_path / "junit-merged.xml").write_text("")
    found = resolve_inputs(
        [f"{tmp_path}/junit-*.xml", f"{tmp_path}/junit-1.xml"],
        {},
        (tmp_path / "junit-merged.xml").resolve(),
    )
    assert [path.name for path, _ in found] == ["junit-1.xml", "junit-2.xml", "junit-10.xml"]


def test_default_input_is_the_run_folders_junit(tmp_path: Path) -> None:
    found = resolve_inputs([], {"AZPYTEST_RUN_DIR": str(tmp_path)}, None)
    assert found == [(tmp_path / "junit.xml", str(tmp_path / "junit.xml"))]


def test_no_input_and_no_run_folder_is_bad_input() -> None:
    with pytest.raises(InputError) as caught:
        resolve_inputs([], {}, None)
    assert str(caught.value) == (
        "JUNIT: no JUnit file given and AZPYTEST_RUN_DIR is not set: pass the file, "
        "e.g. `azpytest report junit.xml`"
    )


def test_a_pattern_that_matches_nothing_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"shard-\*\.xml: the pattern matches no file"):
        resolve_inputs([f"{tmp_path}/shard-*.xml"], {}, None)


def test_junit_files_are_named_without_the_runners_paths(tmp_path: Path) -> None:
    from azpytest.report.model import display_names

    repo = tmp_path / "repo"
    inside = [repo / "reports" / "a.xml", repo / "b.xml"]
    assert display_names(inside, repo) == ["reports/a.xml", "b.xml"]
    temp = tmp_path / "runner-temp" / "shards"
    shards = [temp / "azpytest-x-0-1" / "junit.xml", temp / "azpytest-x-1-1" / "junit.xml"]
    assert display_names(shards, repo) == ["azpytest-x-0-1/junit.xml", "azpytest-x-1-1/junit.xml"]
