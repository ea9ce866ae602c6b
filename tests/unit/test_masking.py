"""The scrubber: no stretch of MIN_FRAGMENT characters of a secret survives in any form a
file can hold it in, and a text without a secret comes out byte for byte."""

from __future__ import annotations

import base64
import json
import pprint
import random
import string
import xml.etree.ElementTree as ET
from collections.abc import Callable
from urllib.parse import quote, quote_plus

import pytest
from _pytest._io.saferepr import saferepr, saferepr_unlimited
from _pytest.assertion.util import assertrepr_compare, dummy_highlighter

from azpytest.masking import MASK, MIN_FRAGMENT, MIN_SCRUBBED, Scrubber

_rng = random.Random(13)
_PEM_BODY = base64.b64encode(_rng.randbytes(2900)).decode()
PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    + "\n".join(_PEM_BODY[i : i + 64] for i in range(0, len(_PEM_BODY), 64))
    + "\n-----END PRIVATE KEY-----\n"
)
CANARIES = {
    "json": '{"user": "svc-shop", "password": "Zq8#wL!p2&x<y>-LEAK-1"}',
    "pem": PEM,
    "multiline": "first 50% of it's\nsecond line's 'quoted' value",
    "unicode": "Grüße\\Straße-κλειδί-ключ",
    "token": "ghp_" + "".join(_rng.choices(string.ascii_letters + string.digits, k=56)),
    "url": "https://shop.example.net/api?sig=Ab%2Fcd+ef/gh==&user=svc&exp=1700000000",
    "word": "password-Tr0ub4dor&3-horse",
}


def _xml_text(value: str) -> str:
    element = ET.Element("failure")
    element.text = value
    return ET.tostring(element, encoding="unicode")


def _xml_attribute(value: str) -> str:
    return ET.tostring(ET.Element("testcase", name=value), encoding="unicode")


def _xml_ascii(value: str) -> str:
    element = ET.Element("testcase", message=value)
    element.text = value
    data: bytes = ET.tostring(element, encoding="us-ascii")
    return data.decode("ascii")


def _base64_at(offset: int, encode: Callable[[bytes], bytes]) -> Callable[[str], str]:
    """The value inside a base64 blob, starting `offset` bytes after other data."""
    return lambda value: encode(b"\x00\x01\x02"[:offset] + value.encode() + b"tail").decode()


def _wrap(text: str, width: int) -> str:
    return "\n".join(text[i : i + width] for i in range(0, len(text), width))


FORMS: dict[str, Callable[[str], str]] = {
    "raw": lambda value: value,
    "json": lambda value: json.dumps({"value": value}, ensure_ascii=False),
    "json-ascii": lambda value: json.dumps({"value": value}),
    "xml-text": _xml_text,
    "xml-attribute": _xml_attribute,
    "xml-ascii": _xml_ascii,
    "xml-entities": lambda value: (
        value.replace("&", "&amp;")
        .replace('"', "&quot;")
        .replace("'", "&apos;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
    ),
    "quote": lambda value: "https://x.invalid/?next=" + quote(value),
    "quote-safe": lambda value: "https://x.invalid/" + quote(value, safe=""),
    "quote-plus": lambda value: "a=1&b=" + quote_plus(value),
    **{f"base64-{offset}": _base64_at(offset, base64.b64encode) for offset in range(3)},
    **{
        f"base64-urlsafe-{offset}": _base64_at(offset, base64.urlsafe_b64encode)
        for offset in range(3)
    },
    "base64-mime": lambda value: base64.encodebytes(b"x" + value.encode()).decode(),
    "base64-pem": lambda value: _wrap(base64.b64encode(b"xy" + value.encode()).decode(), 64),
    "repr": repr,
    "repr-single": lambda value: repr(value + '"'),
    "repr-double": lambda value: repr(value + "'"),
    "ascii": ascii,
    "unicode-escape": lambda value: value.encode("unicode_escape").decode("ascii"),
    "node-id": lambda value: (
        f"tests/test_db.py::test_connect[{value.encode('unicode_escape').decode()}]"
    ),
    # What pytest renders: the assertion summary (a dozen characters from each end), its diff,
    # -vv's whole repr, -l's locals (cut at 240), and pprint wrapping a long value at spaces.
    "assert-summary": lambda value: "\n".join(
        assertrepr_compare(
            "==",
            value,
            "expected",
            verbose=0,
            highlighter=dummy_highlighter,
            assertion_text_diff_style="ndiff",
        )
    ),
    "assert-block-vv": lambda value: "\n".join(
        assertrepr_compare(
            "==",
            {"secret": value, "n": 1},
            {"secret": "expected", "n": 1},
            verbose=2,
            highlighter=dummy_highlighter,
            assertion_text_diff_style="block",
        )
    ),
    "saferepr-240": lambda value: f"secret     = {saferepr(value)}",
    "saferepr-cut": lambda value: saferepr({"secret": value}, maxsize=60),
    "saferepr-ascii": lambda value: saferepr_unlimited(value, use_ascii=True),
    "pformat-40": lambda value: pprint.pformat({"secret": value, "n": [1, 2]}, width=40),
    "pformat-80": lambda value: pprint.pformat([value, "other"], width=80),
}


def _written(value: str) -> set[str]:
    """Each stretch of MIN_FRAGMENT characters of `value` (but those mostly of white space) as
    each escaping writes it, and each MIN_FRAGMENT characters of its base64; written here
    independently of masking.py."""
    escapings: list[Callable[[str], str]] = [
        lambda text: text,
        lambda text: json.dumps(text)[1:-1],
        lambda text: json.dumps(text, ensure_ascii=False)[1:-1],
        lambda text: repr(text + '"')[1:-2],
        lambda text: ascii(text + '"')[1:-2],
        lambda text: text.encode("unicode_escape").decode(),
        quote,
        lambda text: quote(text, safe=""),
        quote_plus,
        lambda text: _xml_text(text)[9:-10],
        lambda text: _xml_attribute(text)[16:-4],
        lambda text: text.encode("ascii", "xmlcharrefreplace").decode(),
    ]
    if '"' not in value:
        escapings.append(lambda text: repr(text + "'")[1:-2])
    stretches = [
        value[i : i + MIN_FRAGMENT]
        for i in range(len(value) - MIN_FRAGMENT + 1)
        if len("".join(value[i : i + MIN_FRAGMENT].split())) >= MIN_FRAGMENT // 2
    ]
    written = {escape(stretch) for escape in escapings for stretch in stretches}
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(bytes(offset) + value.encode()).decode()
            # The first quartet mixes in the bytes before; the last one those after.
            encoded = encoded[4:-4] if offset else encoded[:-4]
            written |= {encoded[i : i + MIN_FRAGMENT] for i in range(len(encoded) - 7)}
    return written


def _leaks(value: str, text: str) -> list[str]:
    """Each stretch of `value` that `text` holds in a form, line breaks aside (a wrapped
    base64 blob)."""
    shown: dict[int, set[str]] = {}
    found = []
    for stretch in _written(value):
        if len(stretch) not in shown:
            shown[len(stretch)] = {
                shown_text[i : i + len(stretch)]
                for shown_text in (text, text.replace("\n", ""))
                for i in range(len(shown_text) - len(stretch) + 1)
            }
        if stretch in shown[len(stretch)]:
            found.append(stretch)
    return sorted(found)


@pytest.fixture(scope="module")
def every_canary() -> Scrubber:
    return Scrubber(CANARIES.values())


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("canary", CANARIES)
def test_no_fragment_of_a_secret_survives_in_any_form(
    canary: str, form: str, every_canary: Scrubber
) -> None:
    value = CANARIES[canary]
    rendered = FORMS[form](value)
    assert _leaks(value, rendered), "the form must show the secret for this test to mean it"
    scrubbed = every_canary.text(f"<<{rendered}>>")
    assert _leaks(value, scrubbed) == []
    assert MASK in scrubbed


@pytest.mark.parametrize("canary", CANARIES)
def test_every_fragment_of_n_characters_is_replaced_and_shorter_ones_stay(canary: str) -> None:
    value = CANARIES[canary]
    scrubber = Scrubber([value])
    middle = len(value) // 2
    fragment = value[middle : middle + MIN_FRAGMENT]
    assert scrubber.text(f"x|{fragment}|y") == f"x|{MASK}|y"
    shorter = value[middle : middle + MIN_FRAGMENT - 1]
    assert scrubber.text(f"x|{shorter}|y") == f"x|{shorter}|y"


def test_overlapping_and_adjacent_fragments_become_one_mask() -> None:
    value = CANARIES["token"]
    scrubber = Scrubber([value])
    assert scrubber.text(f"a {value}{value[10:30]}{value} b") == f"a {MASK} b"
    assert scrubber.text(f"a {value[:20]} {value[20:]} b") == f"a {MASK} {MASK} b"


def test_a_text_without_a_secret_is_unchanged_byte_for_byte() -> None:
    scrubber = Scrubber(CANARIES.values())
    text = (
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" '
        'errors="0" failures="1"><testcase classname="tests.test_shop" name="test_order[\\xfc]"'
        ' time="0.120"><failure message="assert 200 == 404">def test_order():\n'
        "&gt;       assert response.status_code == 404\nE       assert 200 == 404\n"
        "</failure><system-out>Grüße, 50% done: it's fine\r\n\t</system-out></testcase>"
        "</testsuite></testsuites>\n"
    )
    assert scrubber.text(text) == text
    assert scrubber.data(text.encode()) == text.encode()
    binary = bytes(range(256)) * 4
    assert scrubber.data(binary) == binary


def test_bytes_are_scrubbed_as_utf_8_text_and_binary_is_kept_around_a_fragment() -> None:
    value = CANARIES["unicode"]
    scrubber = Scrubber([value])
    assert scrubber.data(f"é {value} ü".encode()) == f"é {MASK} ü".encode()
    binary = b"\xff\xfe\x00" + value[2:12].encode() + b"\x80\x00"
    assert scrubber.data(binary) == b"\xff\xfe\x00" + MASK.encode() + b"\x80\x00"


def test_a_text_longer_than_one_search_piece_is_scrubbed_across_the_seams() -> None:
    value = CANARIES["pem"]
    scrubber = Scrubber([value])
    filler = "x" * ((1 << 20) - 100)
    text = (filler + value) * 3
    assert scrubber.text(text) == (filler + MASK) * 3


def test_a_short_value_is_replaced_only_whole_and_a_tiny_one_not_at_all() -> None:
    short = "shopdb7"
    assert len(short) < MIN_FRAGMENT
    scrubber = Scrubber([short])
    assert scrubber.text(f"db={short};") == f"db={MASK};"
    assert scrubber.text("db=shopdb;") == "db=shopdb;"
    tiny = "abc"
    assert len(tiny) < MIN_SCRUBBED
    assert not Scrubber([tiny])
    assert Scrubber([tiny]).text("abcdef") == "abcdef"


def test_a_value_added_later_is_scrubbed_by_the_next_text() -> None:
    scrubber = Scrubber()
    assert not scrubber
    assert scrubber.text("token eyJhbGciOiJSUzI1NiJ9.payload") == (
        "token eyJhbGciOiJSUzI1NiJ9.payload"
    )
    scrubber.add("eyJhbGciOiJSUzI1NiJ9.payload")
    assert scrubber
    assert scrubber.text("token eyJhbGciOiJSUzI1NiJ9.payload") == f"token {MASK}"


def test_indentation_in_a_secret_does_not_blank_the_layout_of_other_files() -> None:
    scrubber = Scrubber(['{\n        "key": "value-of-the-key"\n}'])
    text = '{\n        "name": "shop"\n}\n'
    assert scrubber.text(text) == text
    assert scrubber.text('{\n        "key": "value-of-the-key"\n}') == "{\n    " + MASK


def test_a_value_of_white_space_changes_nothing() -> None:
    scrubber = Scrubber([" \t" * 8])
    assert scrubber.text("a \t \t \t \t \t \t \t \t b") == "a \t \t \t \t \t \t \t \t b"
    assert scrubber.data(b"\xff \t \t") == b"\xff \t \t"
