"""The GitHub Actions runner, as this package talks to it.

Workflow commands on stdout (mask, group, error/warning/notice), the files a step writes
(`GITHUB_ENV`, `GITHUB_OUTPUT`, `GITHUB_STEP_SUMMARY`) and the job's OIDC token request.
Outside Actions the same calls are safe: nothing that could reveal a value is printed, and
the would-be environment is kept in memory for the caller to hand on.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TextIO

from azpytest import maskchannel
from azpytest.masking import mask_forms


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


WARNINGS_SHOWN = 10  # warning annotations GitHub shows per step; the rest it drops silently


class Workflow:
    """One step's view of the runner. Construct it once, at the entry point; `finish()` at
    its end."""

    def __init__(self, environ: Mapping[str, str], out: TextIO | None = None) -> None:
        self.environ = environ
        self.out = out if out is not None else sys.stdout
        self.in_actions = environ.get("GITHUB_ACTIONS") == "true"
        self.masked: set[str] = set()
        self.exported: dict[str, str] = {}
        self.warnings = 0  # warnings this step gave, annotated or not

    def finish(self) -> None:
        """The step's last word: how many warnings went to the log only (past GitHub's cap)."""
        if self.warnings >= WARNINGS_SHOWN:
            shown = WARNINGS_SHOWN - 1
            self.annotate(
                "warning",
                f"{self.warnings} warnings in all: the first {shown} are annotations, the other "
                f"{self.warnings - shown} are in this step's log (lines 'azpytest: warning:'); "
                f"GitHub shows {WARNINGS_SHOWN} warning annotations per step.",
                title="azpytest: more warnings in the log",
            )

    # ------------------------------------------------------------------ workflow commands

    def command(self, name: str, message: str = "", **properties: str | int | None) -> None:
        props = ",".join(
            f"{key}={escape_property(str(value))}"
            for key, value in properties.items()
            if value is not None
        )
        head = f"::{name} {props}::" if props else f"::{name}::"
        self.out.write(f"{head}{escape_data(message)}\n")
        self.out.flush()

    def mask(self, value: str, *, encoded: bool = False) -> None:
        """Hide `value` in the job log before anything can print it. Under `azpytest run`
        (the test process, its xdist workers, what they start), `run` writes the commands
        for us through the mask channel, out of pytest's capture, and has when this returns."""
        maskchannel.masked(value)
        forms = [form for form in mask_forms(value, encoded=encoded) if form not in self.masked]
        if not forms:
            return
        channel = self.environ.get(maskchannel.ENV_VARIABLE)
        if channel and maskchannel.send(channel, value, encoded=encoded):
            self.masked.update(forms)
            return
        for form in forms:
            if form in self.masked:
                continue
            self.masked.add(form)
            if self.in_actions:
                self.command("add-mask", form)

    def annotate(
        self,
        level: str,
        message: str,
        *,
        title: str | None = None,
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        if self.in_actions:
            self.command(level, message, file=file, line=line, title=title)
        else:
            where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
            label = f"{title}: " if title else ""
            print(f"{level}: {where}{label}{message}", file=sys.stderr, flush=True)

    def error(
        self,
        message: str,
        *,
        title: str | None = None,
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        self.annotate("error", message, title=title, file=file, line=line)

    def warning(
        self,
        message: str,
        *,
        title: str | None = None,
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        """An annotation for the first warnings, a log line for those past GitHub's cap (one
        annotation left for `finish()` to count them)."""
        self.warnings += 1
        if self.warnings < WARNINGS_SHOWN:
            self.annotate("warning", message, title=title, file=file, line=line)
            return
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        label = f"{title}: " if title else ""
        print(f"azpytest: warning: {where}{label}{message}", file=self.out, flush=True)

    def notice(
        self,
        message: str,
        *,
        title: str | None = None,
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        self.annotate("notice", message, title=title, file=file, line=line)

    @contextlib.contextmanager
    def group(self, title: str) -> Iterator[None]:
        if not self.in_actions:
            yield
            return
        self.command("group", title)
        try:
            yield
        finally:
            self.command("endgroup")

    # ------------------------------------------------------------------ files

    def _file(self, variable: str) -> Path | None:
        value = self.environ.get(variable)
        return Path(value) if value else None

    def set_env(self, name: str, value: str) -> None:
        """Export to later steps (GITHUB_ENV, heredoc with a random delimiter)."""
        self.exported[name] = value
        path = self._file("GITHUB_ENV")
        if path is not None:
            _append_heredoc(path, name, value)

    def set_output(self, name: str, value: str) -> None:
        """A step output; never a secret (outputs are not masked everywhere they surface)."""
        path = self._file("GITHUB_OUTPUT")
        if path is not None:
            _append_heredoc(path, name, value)

    def summary(self, markdown: str) -> None:
        path = self._file("GITHUB_STEP_SUMMARY")
        if path is not None:
            with path.open("a", encoding="utf-8") as handle:
                handle.write(markdown if markdown.endswith("\n") else markdown + "\n")

    @property
    def step_summary_path(self) -> Path | None:
        return self._file("GITHUB_STEP_SUMMARY")


def _append_heredoc(path: Path, name: str, value: str) -> None:
    import secrets  # (hmac and hashlib: 4 ms of every command's start, for outputs only)

    delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    while delimiter in value:  # 128 random bits: practically never
        delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")


def read_file_commands(path: Path) -> dict[str, str]:
    """The values a step wrote to GITHUB_ENV or GITHUB_OUTPUT (`NAME<<DELIMITER` blocks and
    `NAME=value` lines), as the runner reads them for the next step."""
    values: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line:
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            values[name] = "\n".join(lines[i + 1 : end])
            i = end
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
        i += 1
    return values
