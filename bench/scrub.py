"""The scrubber on a 100 MB JUnit-like text with 100 secrets of 20 to 4096 characters.

Prints the automaton's build time, the time to scrub the text and the peak memory of each
scrubber (each runs in a process of its own; peak RSS less that of the text alone), for the
fragment scrubber and the whole-form one it replaced (`str.replace` of each form).
    .venv/bin/python bench/scrub.py [MEGABYTES]
"""

from __future__ import annotations

import base64
import json
import math
import random
import resource
import string
import subprocess
import sys
import time

from azpytest.masking import MASK, MIN_SCRUBBED, Scrubber, mask_forms

MEGABYTES = 100
SECRETS = 100
PLANTED = 2000
SEED = 13

CASE = (
    '<testcase classname="tests.test_orders_{m}" name="test_total[{n}]" time="0.{n:03}">'
    '<failure message="assert Decimal(&apos;{n}.01&apos;) == Decimal(&apos;{n}.00&apos;)">'
    "rows = fetch_orders(connection, customer_id={n})\n"
    "&gt;       assert total == expected\n"
    "E       AssertionError: assert Decimal('{n}.01') == Decimal('{n}.00')\n"
    "tests/test_orders_{m}.py:{n}: AssertionError</failure>"
    "<system-out>GET https://shop.example.net/orders/{n} 200 in {n} ms\n</system-out>"
    "</testcase>\n"
)


def secrets(rng: random.Random) -> list[str]:
    """Log-uniform lengths from 20 to 4096: passwords, connection strings, tokens, PEM keys."""
    values = []
    alphabet = string.ascii_letters + string.digits + "-_.~+/=!%&'\"<> "
    for _ in range(SECRETS):
        length = int(math.exp(rng.uniform(math.log(20), math.log(4096))))
        if length > 1000:
            body = base64.b64encode(rng.randbytes(length * 3 // 4)).decode()
            values.append("\n".join(body[i : i + 64] for i in range(0, len(body), 64)))
        else:
            values.append("".join(rng.choices(alphabet, k=length)))
    return values


def junit(values: list[str], megabytes: int, rng: random.Random) -> str:
    """Test cases up to `megabytes`, with PLANTED secrets (whole, cut as pytest cuts a repr,
    JSON-escaped or base64) among them."""
    count = megabytes * 1_000_000 // len(CASE.format(m=399, n=99_999))
    cases = [CASE.format(m=n % 400, n=n) for n in range(count)]
    for _ in range(PLANTED):
        value = rng.choice(values)
        planted = rng.choice(
            [
                value,
                repr(value)[:13] + "..." + repr(value)[-13:],
                json.dumps(value)[1:-1],
                base64.b64encode(value.encode()).decode(),
            ]
        )
        cases[rng.randrange(len(cases))] += f"<system-err>{planted}</system-err>\n"
    return "".join(cases)


class WholeFormScrubber:
    """The scrubber before fragments: each whole form of 4 or more characters, longest first,
    one str.replace each."""

    def __init__(self, values: list[str]) -> None:
        forms = {f for v in values for f in mask_forms(v, encoded=True) if len(f) >= MIN_SCRUBBED}
        self._forms = sorted(forms, key=len, reverse=True)

    def text(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(which: str, megabytes: int) -> dict[str, float]:
    rng = random.Random(SEED)
    values = secrets(rng)
    text = junit(values, megabytes, rng)
    base = peak_mb()
    figures = {"megabytes": len(text.encode()) / 1e6, "chars": sum(map(len, values))}
    started = time.perf_counter()
    if which == "fragments":
        scrubber = Scrubber(values)
        scrubber.text("warm up: builds the automaton")
        figures["build_s"] = time.perf_counter() - started
        figures["build_mb"] = peak_mb() - base
        scrub = scrubber.text
    else:
        scrub = WholeFormScrubber(values).text
    started = time.perf_counter()
    clean = scrub(text)
    figures["scrub_s"] = time.perf_counter() - started
    figures["peak_mb"] = peak_mb() - base
    figures["masks"] = clean.count(MASK)
    return figures


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--run":
        print(json.dumps(run(sys.argv[2], int(sys.argv[3]))))
        return 0
    megabytes = int(sys.argv[1]) if len(sys.argv) > 1 else MEGABYTES
    results = {}
    for which in ("fragments", "whole-forms"):
        child = [sys.executable, __file__, "--run", which, str(megabytes)]
        output = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        results[which] = json.loads(output)
    new, old = results["fragments"], results["whole-forms"]
    print(
        f"{new['megabytes']:.0f} MB JUnit-like text, {SECRETS} secrets of 20-4096 characters "
        f"({new['chars']:.0f} in all), {PLANTED} planted"
    )
    print(
        f"fragments:   build {new['build_s']:.2f} s (+{new['build_mb']:.0f} MB), "
        f"scrub {new['scrub_s']:.2f} s, peak +{new['peak_mb']:.0f} MB, {new['masks']:.0f} masks"
    )
    print(
        f"whole forms: scrub {old['scrub_s']:.2f} s, peak +{old['peak_mb']:.0f} MB, "
        f"{old['masks']:.0f} masks"
    )
    ratio = (new["build_s"] + new["scrub_s"]) / old["scrub_s"]
    print(f"fragments / whole forms, build and scrub: {ratio:.2f}x the time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
