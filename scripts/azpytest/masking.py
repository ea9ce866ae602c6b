"""The one rule for hiding a secret: its forms, and the scrubber every output goes through.

The runner hides what `::add-mask::` registered, in the log only (github.py registers the
forms below). Everything else we write — failure artifacts, the JUnit file, the job summary,
annotations, the test process's debug log — goes through `Scrubber`, which replaces each form
of every masked value with `***`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping

from azpytest.rundir import RunDir

MASK = "***"
# Lines shorter than this are not masked on their own (masking "}" would blank every brace
# in the log); the whole value is always masked.
MIN_MASKED_LINE = 4
# A value of a few characters ("app", a port) would blank parts of every word and path that
# contains it in files; the runner still masks it in the log.
MIN_SCRUBBED = 4
# The broker's header is masked in the log; keep it out of every file too.
ALWAYS_SCRUBBED = ("IDENTITY_HEADER",)


def mask_forms(value: str, *, encoded: bool = False) -> list[str]:
    """Every string the runner must hide for `value`: itself and each line of it; with
    `encoded`, also its JSON-escaped and base64 forms (for values we write in those forms)."""
    forms: list[str] = []

    def add(form: str) -> None:
        if form and form not in forms:
            forms.append(form)

    add(value)
    for line in value.splitlines():
        if len(line.strip()) >= MIN_MASKED_LINE:
            add(line.strip())
    if encoded:
        add(json.dumps(value, ensure_ascii=False)[1:-1])
        add(json.dumps(value)[1:-1])
        add(base64.b64encode(value.encode()).decode())
    return forms


class Scrubber:
    """Replaces every masked value (and each line of a multi-line one) with ***."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._set: set[str] = set()
        self._forms: list[str] = []
        for value in values:
            self.add(value)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def add(self, value: str) -> None:
        if value:
            self._set.update(f for f in mask_forms(value, encoded=True) if len(f) >= MIN_SCRUBBED)
            # Longest first, so a value is replaced before any line of it.
            self._forms = sorted(self._set, key=len, reverse=True)

    def text(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def data(self, data: bytes) -> bytes:
        for form in self._forms:
            encoded = form.encode("utf-8")
            if encoded in data:
                data = data.replace(encoded, MASK.encode())
        return data

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Scrubber:
        """The values of the variables prepare masked (named in the run folder's
        prepared.json, never stored there) and of the broker's header."""
        run_dir = RunDir.from_environment(environ)
        names = run_dir.masked_variables() if run_dir is not None else []
        names += ALWAYS_SCRUBBED
        return cls(environ[name] for name in names if environ.get(name))
