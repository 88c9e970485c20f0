"""Reads a py-spy ``--format raw`` profile (collapsed stacks) of the gunicorn workers under load.

`make bench` records one while wrk measures the service's write scenarios. ``--gil`` keeps only
threads holding the GIL, so the samples show where the workers spend CPU in Python, not where they
wait. The file stays beside the run's other outputs (render it with speedscope or flamegraph.pl).
This summary gives the share of samples by area (the innermost frame's package) and the service
functions that are on the stack most (inclusive).

    python -m bench.pyspy bench/results/<run>.d/service-ingest_unique.pyspy
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

APPS = ("conversations", "messaging", "webhooks", "core", "providers", "apikeys", "config")
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")
AREAS = [
    ("psycopg", "psycopg driver"),
    ("django/db/", "Django ORM"),
    ("rest_framework", "DRF"),
    ("gunicorn", "gunicorn"),
    ("django/", "Django request, middleware, URLs, cache"),
    ("redis/", "redis-py"),
    ("phonenumbers", "phonenumbers"),
]


def _parse(frame: str) -> tuple[str, str]:
    match = FRAME.match(frame)
    if not match:
        return frame, ""
    return match["function"], match["file"]


def _area(file: str) -> str:
    for needle, area in AREAS:
        if needle in file:
            return area
    if file.split("/")[0] in APPS:
        return "service code"
    return "Python standard library, other"


def summarize(path: Path, top: int = 12) -> dict:
    areas: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [_parse(frame) for frame in stack.split(";")]
        frames = [(function, file) for function, file in frames if file]  # drop process/thread labels
        if not frames:
            continue
        areas[_area(frames[-1][1])] += samples
        seen = set()
        for function, file in frames:
            if file.split("/")[0] in APPS and (function, file) not in seen:
                seen.add((function, file))
                inclusive[f"{file}:{function}"] += samples
    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "self_share_by_area": {area: round(100 * n / total, 1) for area, n in areas.most_common()},
        "service_functions_inclusive_share": {
            name: round(100 * n / total, 1) for name, n in inclusive.most_common(top)
        },
    }


if __name__ == "__main__":
    print(json.dumps(summarize(Path(sys.argv[1])), indent=2))
