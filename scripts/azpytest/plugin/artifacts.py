"""Failure artifacts: every report scrubbed of masked values, and what a failed test leaves
beside the JUnit file (its traceback, its captured output, what it asked to keep)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Generator, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from azpytest import errors
from azpytest.plugin.common import setting
from azpytest.rundir import ARTIFACTS

if TYPE_CHECKING:
    from _pytest._code.code import ReprFileLocation
    from _pytest._io import TerminalWriter
    from _pytest.python import CallSpec

    from azpytest.artifacts import ArtifactWriter
    from azpytest.masking import Scrubber

_ARTIFACTS = pytest.StashKey["ArtifactState"]()
_COLLECTED = pytest.StashKey[list[tuple[str, "str | bytes | Path"]]]()
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def failed(item: pytest.Item) -> bool:
    """Whether the test has failed so far (setup or call): fixtures ask in their teardown."""
    return any(r.failed for r in item.stash.get(_REPORTS, {}).values())


@dataclass
class ArtifactState:
    writer: ArtifactWriter | None  # None when no JUnit path says where
    scrubber: Scrubber


def artifact_state(config: pytest.Config) -> ArtifactState:
    """The run's scrubber and artifact writer, made on first use."""
    state = config.stash.get(_ARTIFACTS, None)
    if state is None:
        from azpytest import maskchannel
        from azpytest.artifacts import ArtifactWriter
        from azpytest.masking import Scrubber

        scrubber = Scrubber.from_environment(os.environ)
        # Every token this process masks (the identity fixtures', kube's) is scrubbed too.
        maskchannel.on_mask(scrubber.add)
        xmlpath = getattr(config.option, "xmlpath", None)
        root = setting("artifacts-dir") or (
            str(Path(xmlpath).parent / ARTIFACTS) if xmlpath else None
        )
        writer = ArtifactWriter(Path(root), scrubber) if root else None
        state = ArtifactState(writer=writer, scrubber=scrubber)
        config.stash[_ARTIFACTS] = state
    return state


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """What pytest's logging writes straight out (live logging, `--log-file`) bypasses the
    reports: its formatters scrub too (caplog, which tests read, is left as it is)."""
    plugin = config.pluginmanager.get_plugin("logging-plugin")
    if plugin is None:
        return
    for name in ("log_cli_handler", "log_file_handler"):
        handler = getattr(plugin, name, None)
        if isinstance(handler, logging.Handler) and handler.formatter is not None:
            handler.setFormatter(_ScrubbingFormatter(handler.formatter, config))


class _ScrubbingFormatter(logging.Formatter):
    def __init__(self, inner: logging.Formatter, config: pytest.Config) -> None:
        super().__init__()
        self._inner = inner
        self._config = config

    def format(self, record: logging.LogRecord) -> str:
        text = self._inner.format(record)
        scrubber = artifact_state(self._config).scrubber
        _learn_tokens(scrubber)
        return scrubber.text(text) if scrubber else text


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """A parametrize id made from a masked value would carry it into the log, JUnit's
    `name=`, the durations file, artifact paths and `.pytest_cache`: such a value gets a
    stable id of its own instead (`secret-<hash>`), the same in every run and shard."""
    if not isinstance(val, str | bytes):
        return None  # pytest's own id of other values is `argname` + index, not the value
    scrubber = artifact_state(config).scrubber
    text = val.decode("utf-8", "replace") if isinstance(val, bytes) else val
    if not scrubber or scrubber.text(text) == text:
        return None
    return f"{argname}-secret-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


@pytest.hookimpl(wrapper=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> Generator[None, None, None]:
    """Ids the suite gives (`ids=`, `pytest.param(id=...)`, an ids function) are node ids
    too: once every parametrization is made, each id part that holds a fragment of a masked
    value becomes `secret-<hash>` (stable across runs and shards), before pytest names the
    tests from them, so selecting a test by its node id (a rerun) still works."""
    yield
    scrubber = artifact_state(metafunc.config).scrubber
    if not scrubber:
        return
    calls = metafunc._calls  # pytest has no public way to rename a parametrization
    metafunc._calls = [_secret_free(call, scrubber) for call in calls]


def _secret_free(call: CallSpec, scrubber: Scrubber) -> CallSpec:
    parts = list(call._idlist)
    clean = [part if scrubber.text(part) == part else _secret_id(part) for part in parts]
    whole = "-".join(clean)
    if scrubber.text(whole) != whole:  # a fragment across two parts
        clean = [_secret_id("-".join(parts))]
    return call if clean == parts else dataclasses.replace(call, _idlist=clean)


def _secret_id(text: str) -> str:
    return f"secret-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    state = artifact_state(item.config)
    _learn_tokens(state.scrubber)
    if state.scrubber:
        _scrub_report(report, state.scrubber)
    if report.failed and state.writer is not None:
        _write_failure(item, report, state.writer)
    return report


def _learn_tokens(scrubber: Scrubber) -> None:
    """The tokens `azpytest run` masked that this process never saw (the token broker's,
    which a failure message may carry): from run's 0600 record, when it has changed."""
    from azpytest.masking import read_tokens
    from azpytest.rundir import RunDir

    run_dir = RunDir.from_environment(os.environ)
    if run_dir is None:
        return
    try:
        stat = run_dir.tokens.stat()
    except OSError:
        return
    seen = (stat.st_mtime_ns, stat.st_size)
    if _TOKENS_SEEN.get(run_dir.tokens) == seen:
        return
    _TOKENS_SEEN[run_dir.tokens] = seen
    for token in read_tokens(run_dir):
        scrubber.add(token)


_TOKENS_SEEN: dict[Path, tuple[int, int]] = {}


def _scrub_report(report: pytest.TestReport, scrubber: Scrubber) -> None:
    """Masked values never reach the terminal, the JUnit file or an artifact. Each longrepr
    keeps the shape pytest expects of it: a skip's is a (path, line, reason) tuple, which
    the terminal and junitxml unpack (anything else there is an INTERNALERROR)."""
    wasxfail = getattr(report, "wasxfail", None)
    if isinstance(wasxfail, str):
        report.wasxfail = scrubber.text(wasxfail)
    if isinstance(report.longrepr, tuple):
        path, line, reason = report.longrepr
        report.longrepr = (scrubber.text(str(path)), line, scrubber.text(str(reason)))
    elif isinstance(report.longrepr, str):
        report.longrepr = scrubber.text(report.longrepr)
    elif report.longrepr is not None:
        text = str(report.longrepr)
        clean = scrubber.text(text)
        if clean != text:
            # pytest takes any longrepr with toterminal() (and reads reprcrash if present).
            report.longrepr = _ScrubbedRepr(  # type: ignore[assignment]
                clean, getattr(report.longrepr, "reprcrash", None), scrubber
            )
    report.sections = [(title, scrubber.text(content)) for title, content in report.sections]


class _ScrubbedRepr:
    """A failure's text with masked values replaced, keeping the crash location and message
    that the JUnit writer and the terminal summary read."""

    def __init__(self, text: str, crash: ReprFileLocation | None, scrubber: Scrubber) -> None:
        self._text = text
        self.reprcrash = None
        if crash is not None and dataclasses.is_dataclass(crash):
            self.reprcrash = dataclasses.replace(
                crash, path=scrubber.text(str(crash.path)), message=scrubber.text(crash.message)
            )

    def __str__(self) -> str:
        return self._text

    def toterminal(self, out: TerminalWriter) -> None:
        for line in self._text.splitlines():
            out.line(line)


def _write_failure(item: pytest.Item, report: pytest.TestReport, writer: ArtifactWriter) -> None:
    nodeid = report.nodeid
    phase = report.when
    writer.write(nodeid, f"{phase}-traceback.txt", report.longreprtext or "")
    for title, section in report.sections:
        name = title.lower().replace(" ", "-").replace("captured-", "")
        writer.write(nodeid, f"{name.lower()}.txt", section)
    for name, content in item.stash.get(_COLLECTED, []):
        try:
            if isinstance(content, Path):
                if content.is_dir():
                    for path in sorted(p for p in content.rglob("*") if p.is_file()):
                        writer.copy(nodeid, f"{name}-{path.name}", path)
                elif content.is_file():
                    writer.copy(nodeid, name, content)
            else:
                writer.write(nodeid, name, content)
        except OSError as exc:
            writer.write(nodeid, f"{name}.error.txt", errors.not_collected(name, exc))


class ArtifactCollector(MutableMapping[str, "str | bytes | Path"]):
    """Files and text to keep if the test fails (written scrubbed, only on failure):
    `collect(name, content)` / `collect(name, path=...)`, or as a mapping, the shape suites'
    own fixtures of this name have (`artifact_collector["pods.log"] = text`: a name set
    again keeps its last value)."""

    def __init__(self, item: pytest.Item) -> None:
        self._item = item

    def _entries(self) -> list[tuple[str, str | bytes | Path]]:
        return self._item.stash.setdefault(_COLLECTED, [])

    def __setitem__(self, name: str, content: str | bytes | Path) -> None:
        if not isinstance(content, (str, bytes, Path)):
            content = str(content)  # what a suite's own collector would have written
        self._forget(name)
        self._entries().append((name, content))

    def __getitem__(self, name: str) -> str | bytes | Path:
        for key, content in reversed(self._entries()):
            if key == name:
                return content
        raise KeyError(name)

    def __delitem__(self, name: str) -> None:
        if not self._forget(name):
            raise KeyError(name)

    def _forget(self, name: str) -> bool:
        entries = self._entries()
        kept = [(k, v) for k, v in entries if k != name]
        found = len(kept) != len(entries)
        entries[:] = kept
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k for k, _ in self._entries()))

    def __len__(self) -> int:
        return len(dict.fromkeys(k for k, _ in self._entries()))

    def collect(
        self,
        name: str,
        content: str | bytes | Path | None = None,
        *,
        path: str | Path | None = None,
    ) -> None:
        if path is not None and content is None:
            value: str | bytes | Path = Path(path)
        elif content is not None and path is None:
            value = content
        else:
            raise TypeError("collect(name, content) or collect(name, path=...)")
        self._item.stash.setdefault(_COLLECTED, []).append((name, value))


@pytest.fixture
def artifact_collector(request: pytest.FixtureRequest) -> ArtifactCollector:
    """`artifact_collector.collect(name, content | path=...)`: kept beside the JUnit file
    (artifacts/<node id>/) if the test fails, with every masked value replaced by ***."""
    return ArtifactCollector(request.node)
