"""Health-code benchmark: what showing a resident's code costs the server, piece by piece —
issuing (signing) a code, rendering its QR as the code page does, verifying a code as a gate
does — each timed in a loop of its own on one core. Prints one JSON line.

    .venv/bin/python bench/bench_codes.py [--codes 300] [--database-url URL]

A resident's code is issued afresh every time the code page (or its refresh) is shown. The
page draws the QR in the browser (static/code-qr.js), so ``issue`` is the per-view cost of the
code itself at the morning peak (``code_view_ms``); a browser without script gets the server's
drawing, ``issue`` and ``qr_svg`` together (``code_view_no_script_ms``). ``qr_symbol`` is
the symbol alone as citybrain makes it (the mask chosen with numpy),
``qr_symbol_segno`` the same symbol with segno choosing the mask itself, as before.
``issue`` includes the active key's lookup in the database (a fresh SQLite file in a
temporary data directory unless --database-url is given). The same loop figures are not what a
busy server pays: there every part finds its caches cold and costs about twice as much (see
docs/benchmarks.md, gate scans).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable


def _per_call_ms(call: Callable[[int], object], count: int, repeats: int = 3) -> dict[str, float]:
    """Median and best of ``repeats`` loops of ``count`` calls, in ms per call."""
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(count):
            call(i)
        runs.append((time.perf_counter() - started) * 1000 / count)
    return {"median_ms": round(statistics.median(runs), 3), "best_ms": round(min(runs), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--codes", type=int, default=300)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    from benchdb import empty_database

    database = empty_database(args.database_url, prefix="citybrain-bench-codes-")
    import segno

    from citybrain.healthcode.codes import issue_code, verify_code
    from citybrain.healthcode.keys import trust_list
    from citybrain.healthcode.qr import ERROR_CORRECTION, qr, qr_svg

    refs = [f"{i:016x}" for i in range(args.codes)]
    with database.unit_of_work() as session:
        issue_code(session, refs[0], "green")  # the first key is made here, not timed
    with database.unit_of_work() as session:
        texts: list[str] = []
        issue = _per_call_ms(
            lambda i: texts.append(issue_code(session, refs[i], "green").text), args.codes
        )
        trust = trust_list(session)
    verify = _per_call_ms(lambda i: verify_code(texts[i], trust), args.codes)
    qr_count = max(10, args.codes // 10)
    svg = _per_call_ms(lambda i: qr_svg(texts[i]), qr_count)
    symbol = _per_call_ms(lambda i: qr(texts[i]), qr_count)
    symbol_segno = _per_call_ms(
        lambda i: segno.make_qr(
            texts[i], error=ERROR_CORRECTION, mode="alphanumeric", boost_error=False
        ),
        qr_count,
    )
    database.dispose()
    print(
        json.dumps(
            {
                "bench": "codes",
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": f"{platform.machine()} {os.cpu_count()} cores, "
                f"Python {platform.python_version()}",
                "codes": args.codes,
                "code_chars": round(statistics.mean(len(t) for t in texts)),
                "issue": issue,
                "verify": verify,
                "qr_svg": svg,
                "qr_symbol": symbol,
                "qr_symbol_segno": symbol_segno,
                "code_view_ms": issue["median_ms"],
                "code_view_no_script_ms": round(issue["median_ms"] + svg["median_ms"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
