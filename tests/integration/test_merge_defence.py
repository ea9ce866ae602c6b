"""The merge job's second line of defence (issue 13, item 6): knowing no secret, it still
blanks what it can recognise by shape (tokens, private keys, signatures) in everything it
writes, when a shard's JUnit file arrives unscrubbed."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest

from azpytest.masking import scrub_shapes

Step = Callable[..., Any]


def jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJlLWJ5dGVzLTEyMw"


TOKEN = jwt({"aud": "https://vault.azure.net", "oid": "b7c6d5e4"})
KEY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{KEY}\n-----END RSA PRIVATE KEY-----"
SAS = "https://acct.blob.core.windows.net/c?sv=2024-11-04&sig=Zm9vYmFyYmF6cXV4MTIz%3D&se=x"
CONNECTION = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5LWJ5dGVzLTQ1Ng==;"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"token {TOKEN} refused", "token *** refused"),
        (f"key:\n{PEM}\n", "key:\n-----BEGIN ***-----END RSA PRIVATE KEY-----\n"),
        (SAS, SAS.replace("Zm9vYmFyYmF6cXV4MTIz%3D", "***")),
        (CONNECTION, CONNECTION.replace("a2V5LWJ5dGVzLTQ1Ng==", "***")),
        ("assert total == 3, see https://example.net/?q=1&page=2", None),
        ("eyJust a word", None),
    ],
    ids=["jwt", "pem", "sas", "connection-string", "plain", "eyJ-prefix"],
)
def test_shapes_that_need_no_secret(text: str, shown: str | None) -> None:
    assert scrub_shapes(text) == (text if shown is None else shown)


JUNIT = f"""<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="1" skipped="0" tests="2" time="1.0">
<testcase classname="tests.test_a" name="test_ok" time="0.1"/>
<testcase classname="tests.test_a" name="test_token" time="0.2" file="tests/test_a.py" line="3">
<failure message="assert '{TOKEN}' == 'x'">E   AssertionError: the broker gave {TOKEN}
{PEM}
E   {escape(SAS)}</failure>
<system-out>{CONNECTION}</system-out>
</testcase></testsuite></testsuites>
"""


def test_the_merge_job_blanks_tokens_and_keys_from_an_unscrubbed_shard(
    tmp_path: Path, actions_step: Step
) -> None:
    shard = tmp_path / "azpytest-test-0-1" / "junit.xml"
    shard.parent.mkdir()
    shard.write_text(JUNIT)
    merged = tmp_path / "merged.xml"
    # The merge job: no run folder, no prepared value, no mask registered.
    result = actions_step(None, "report", "--merge", str(merged), str(shard))
    assert result.returncode in (0, 1), result.stderr
    assert "test_token" in result.summary
    written = "\n".join(
        [
            result.stdout,
            result.stderr,
            result.summary,
            json.dumps(result.outputs),
            merged.read_text(),
        ]
    )
    for secret in (
        TOKEN,
        TOKEN.split(".")[1],
        *KEY.splitlines(),
        "Zm9vYmFyYmF6cXV4MTIz",
        "a2V5LWJ5dGVzLTQ1Ng",
    ):
        assert secret not in written
    assert "AccountKey=***" in merged.read_text()
