"""The one rule for hiding a secret: its forms, and the scrubber every output goes through.

The runner hides what `::add-mask::` registered, in the log only (github.py registers the
forms `mask_forms` gives). Everything else we write — failure artifacts, the JUnit file, the
job summary, annotations, the test process's debug log — goes through `Scrubber`, which
replaces with `***` every stretch of `MIN_FRAGMENT` or more characters of a masked value, in
any form it is written in (`_escapes`, `_base64_forms`): pytest shows fragments (an
assertion's repr cut to a dozen characters from each end, pprint wrapping a long string at
its spaces, `-l` cutting at 240 characters, node ids escaping non-ASCII as `\\xNN`), so whole
values are not enough.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import quote, quote_plus

from azpytest.rundir import RunDir

MASK = "***"
# Lines shorter than this are not masked on their own (masking "}" would blank every brace
# in the log); the whole value is always masked.
MIN_MASKED_LINE = 4
# A value of a few characters ("app", a port) would blank parts of every word and path that
# contains it in files; the runner still masks it in the log.
MIN_SCRUBBED = 4
# Any stretch of this many characters of a masked value, in any of its forms, is a fragment and
# becomes *** in files; a value shorter than this (but MIN_SCRUBBED or more) only when whole.
MIN_FRAGMENT = 8
# A text is searched in pieces of this many characters: the automaton copies what it searches
# (4 bytes a character), so a 100 MB file costs 4 MB more, not 400 MB.
_PIECE = 1 << 20
_WHITE_SPACE = frozenset(" \t\n\r\f\v")
# The broker's header is masked in the log; keep it out of every file too.
ALWAYS_SCRUBBED = ("IDENTITY_HEADER",)


def mask_forms(value: str, *, encoded: bool = False) -> list[str]:
    """Every string the runner must hide for `value`: itself and each line of it, and their
    Python repr and ascii forms where they differ; with `encoded`, also its JSON-escaped and
    base64 forms (for values we write in those forms)."""
    forms: list[str] = []

    def add(form: str) -> None:
        if form and form not in forms:
            forms.append(form)

    add(value)
    for line in value.splitlines():
        if len(line.strip()) >= MIN_MASKED_LINE:
            add(line.strip())
    # As Python prints it in a repr (a dict, a list, logging's %r, -s output, which only the
    # runner's masks can hide): backslashes doubled, quotes and non-ASCII escaped.
    for text in [value, *(line.strip() for line in value.splitlines())]:
        if len(text) >= MIN_MASKED_LINE:
            add(repr(text)[1:-1])
            add(ascii(text)[1:-1])
    if encoded:
        add(json.dumps(value, ensure_ascii=False)[1:-1])
        add(json.dumps(value)[1:-1])
        add(base64.b64encode(value.encode()).decode())
    return forms


class Scrubber:
    """Replaces every fragment of every masked value, in each form it can be written in, with
    ***: one pass over a text with an automaton of the fragments, built once (again after
    `add`)."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: list[str] = []
        self._text: _Automaton | None = None
        self._bytes: _Automaton | None = None
        for value in values:
            self.add(value)

    def __bool__(self) -> bool:
        return bool(self._values)

    def add(self, value: str) -> None:
        if len(value) >= MIN_SCRUBBED and value not in self._values:
            self._values.append(value)
            self._text = self._bytes = None

    def text(self, text: str) -> str:
        if not self._values:
            return text
        if self._text is None:
            self._text = _Automaton(_patterns(self._values))
        return self._text.scrub(text)

    def data(self, data: bytes) -> bytes:
        """UTF-8 text as `text`; any other bytes against the UTF-8 bytes of each fragment,
        every other byte kept as it is."""
        if not self._values:
            return data
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            clean = self.text(text)
            return data if clean is text else clean.encode("utf-8")
        if self._bytes is None:
            # Latin-1 maps each byte to one character and back: a byte search on str.
            self._bytes = _Automaton(_patterns(self._values, as_bytes=True))
        clean = self._bytes.scrub(data.decode("latin-1"))
        return clean.encode("latin-1")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Scrubber:
        """The values of the variables prepare masked (named in the run folder's
        prepared.json, never stored there), of the broker's header, and the tokens `run`
        masked (its 0600 record, deleted at cleanup)."""
        run_dir = RunDir.from_environment(environ)
        names = run_dir.masked_variables() if run_dir is not None else []
        names += ALWAYS_SCRUBBED
        values = [environ[name] for name in names if environ.get(name)]
        return cls([*values, *(read_tokens(run_dir) if run_dir is not None else [])])


def read_tokens(run_dir: RunDir) -> list[str]:
    """The tokens `run` masked (`write_tokens`), or none."""
    try:
        values = json.loads(run_dir.tokens.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [value for value in values if isinstance(value, str)] if isinstance(values, list) else []


def write_tokens(run_dir: RunDir, values: Iterable[str]) -> None:
    """Record the tokens `run` masked for the steps after it (0600, deleted at cleanup)."""
    run_dir.write_private(run_dir.tokens.name, json.dumps(sorted(set(values))))


class _Automaton:
    """Finds every pattern in one pass and replaces each run of overlapping or adjacent
    matches with one ***."""

    def __init__(self, patterns: set[str]) -> None:
        # Here: the merge job's report runs on the standard library alone (it has no secret
        # to look for, so it never builds an automaton).
        import ahocorasick

        self._automaton = ahocorasick.Automaton(ahocorasick.STORE_LENGTH)
        for pattern in patterns:
            self._automaton.add_word(pattern)
        self._automaton.make_automaton()
        self._empty = not patterns  # a value made of white space only
        self._overlap = max(map(len, patterns), default=1) - 1

    def scrub(self, text: str) -> str:
        """`text` itself when nothing matches."""
        if self._empty:
            return text
        spans: list[tuple[int, int]] = []
        first = last = -1  # the span being grown
        # Each piece starts early enough to see the matches that end in it; matches come by
        # where they end.
        for offset in range(0, len(text), _PIECE):
            begin = max(0, offset - self._overlap)
            for end, length in self._automaton.iter(text[begin : offset + _PIECE]):
                stop = begin + end + 1
                if stop <= offset:
                    continue
                start = stop - length
                if start > last:
                    if last >= 0:
                        spans.append((first, last))
                    first = start
                elif start < first:
                    # A longer match reaches back, maybe over spans before this one.
                    first = start
                    while spans and first <= spans[-1][1]:
                        first = min(first, spans.pop()[0])
                last = stop
        if last < 0:
            return text
        spans.append((first, last))
        parts: list[str] = []
        done = 0
        for start, stop in spans:
            parts += (text[done:start], MASK)
            done = stop
        parts.append(text[done:])
        return "".join(parts)


def _patterns(values: Iterable[str], *, as_bytes: bool = False) -> set[str]:
    """For each value: each stretch of MIN_FRAGMENT of its characters (but those mostly of
    white space) as each escaping writes it, each stretch of MIN_FRAGMENT characters of its
    base64, and each whole form shorter than that. With `as_bytes`, their UTF-8 bytes as
    Latin-1 text."""
    patterns: set[str] = set()
    for value in values:
        patterns |= _fragments(value)
    if as_bytes:
        return {pattern.encode("utf-8").decode("latin-1") for pattern in patterns}
    return patterns


def _fragments(value: str) -> set[str]:
    whole = {form for form in mask_forms(value, encoded=True) if len(form) < MIN_FRAGMENT}
    fragments = {form for form in whole if len(form) >= MIN_SCRUBBED}
    stretches = [
        i
        for i in range(len(value) - MIN_FRAGMENT + 1)
        if _holds_a_secret(value[i : i + MIN_FRAGMENT])
    ]
    for escape in _escapes(value):
        written = [escape.get(char, char) for char in value]
        if len(value) < MIN_FRAGMENT:
            fragments.add("".join(written))
        fragments.update("".join(written[i : i + MIN_FRAGMENT]) for i in stretches)
    for encoded in _base64_forms(value.encode("utf-8")):
        if len(encoded) < MIN_FRAGMENT:
            if len(encoded) >= MIN_SCRUBBED:
                fragments.add(encoded)
            continue
        if "\n" in encoded:  # a short encoding split by a line break: whole only
            fragments.add(encoded)
            continue
        fragments.update(
            encoded[i : i + MIN_FRAGMENT] for i in range(len(encoded) - MIN_FRAGMENT + 1)
        )
    return fragments


def _holds_a_secret(fragment: str) -> bool:
    """Half or more of it is not white space: indentation and line breaks tell nothing, and a
    secret holding them must not blank the layout of every file."""
    white = sum(map(fragment.count, _WHITE_SPACE))
    return len(fragment) - white >= MIN_FRAGMENT // 2


def _escapes(value: str) -> list[dict[str, str]]:
    """Each way a file writes each character of `value` (one character at a time: the
    escapings below are all per character), those that change it as a mapping; the first
    one, empty, writes it as is."""
    quotings: list[Callable[[str], str]] = [
        lambda char: char,
        lambda char: json.dumps(char, ensure_ascii=False)[1:-1],
        lambda char: json.dumps(char)[1:-1],
        # repr and ascii in both quote styles ('...' escapes ', "..." does not), bytes' repr,
        # and a node id's form of a parameter (pytest's ascii_escaped).
        lambda char: repr(char + '"')[1:-2],
        lambda char: ascii(char + '"')[1:-2],
        lambda char: repr(char.encode("utf-8") + b'"')[2:-2],
        lambda char: char.encode("unicode_escape").decode("ascii"),
    ]
    if '"' not in value:
        quotings += [lambda char: repr(char + "'")[1:-2], lambda char: ascii(char + "'")[1:-2]]
    escapings = [
        quoting if xml is None else _compose(xml, quoting)
        for quoting in quotings
        for xml in (None, _xml_text, _xml_attribute, _xml_ascii, _xml_entities)
    ]
    escapings += [quote, lambda char: quote(char, safe=""), quote_plus]
    escapes: list[dict[str, str]] = [{}]
    chars = set(value)
    for escaping in escapings:
        escape = {char: escaping(char) for char in chars}
        escape = {char: written for char, written in escape.items() if written != char}
        if escape not in escapes:
            escapes.append(escape)
    return escapes


def _compose(outer: Callable[[str], str], inner: Callable[[str], str]) -> Callable[[str], str]:
    return lambda char: outer(inner(char))


def _xml_text(text: str) -> str:
    """As ElementTree writes text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _xml_attribute(text: str) -> str:
    """As ElementTree writes an attribute."""
    return (
        _xml_text(text)
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
        .replace("\t", "&#09;")
    )


def _xml_ascii(text: str) -> str:
    """As ElementTree writes an attribute in an ASCII file."""
    return _xml_attribute(text).encode("ascii", "xmlcharrefreplace").decode("ascii")


def _xml_entities(text: str) -> str:
    """With every XML entity."""
    return _xml_attribute(text).replace("'", "&apos;")


def _base64_forms(data: bytes) -> set[str]:
    """Standard and URL-safe base64 of `data` at each of the three offsets it can start at in
    an encoded blob (less the first quartet, which mixes in the bytes before it); and, for an
    encoding too short to hold a whole fragment on either side of a line break, each way a
    line break (a PEM or MIME wrap) can split it."""
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for offset in range(3):
            encoded = encode(bytes(offset) + data).decode("ascii")
            forms.add(encoded[4:] if offset else encoded)
    for encoded in list(forms):
        for cut in range(len(encoded) - MIN_FRAGMENT + 1, MIN_FRAGMENT):
            for newline in ("\n", "\r\n"):
                forms.add(encoded[:cut] + newline + encoded[cut:])
    return forms


# What needs no secret to recognise: the merge job, which knows none, blanks these in every
# text it writes (a second line of defence behind the shards' scrubbing), as the report of
# each shard does. A JSON Web Token (an Entra, GitHub or Kubernetes token: three base64url
# parts, the first a JSON object), a PEM private key's body, a SAS signature or an account
# key in a connection string or a URL.
_SHAPES = re.compile(
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
    r"|(?<=-----BEGIN )(?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?(?=-----END |\Z)"
    r"|(?<=[?&;]sig=)[^&\s\"'<]{8,}"
    r"|(?<=AccountKey=)[^;\s\"'<]{8,}"
    r"|(?<=SharedAccessKey=)[^;\s\"'<]{8,}",
    re.IGNORECASE,
)


def scrub_shapes(text: str) -> str:
    """`text` with every token, private key body and signature that `_SHAPES` knows by its
    shape replaced by ***; `text` itself when there is none."""
    if "eyJ" not in text and "PRIVATE KEY" not in text.upper() and "=" not in text:
        return text
    return _SHAPES.sub(MASK, text)
