#!/usr/bin/env python3
"""Load a running service with concurrent sends and report throughput and latency.

    bin/bench.py --url http://127.0.0.1:8080 --requests 200 --concurrency 16

Stdlib only; sends only to the URL given (keep it on this machine). Each request is a new SMS
between distinct pairs, so conversations do not serialise on one row.
"""

import argparse
import json
import statistics
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def send(url: str, index: int) -> tuple[int, float]:
    body = json.dumps({"from": f"+1201555{index % 10000:04d}", "to": "+18045551234", "body": f"bench {index}"})
    request = urllib.request.Request(
        f"{url}/api/messages/sms", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    return status, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        results = list(pool.map(lambda i: send(args.url, i), range(args.requests)))
    elapsed = time.perf_counter() - started

    latencies = sorted(latency for _, latency in results)
    statuses: dict[int, int] = {}
    for status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    print(
        json.dumps(
            {
                "requests": args.requests,
                "concurrency": args.concurrency,
                "seconds": round(elapsed, 2),
                "requests_per_second": round(args.requests / elapsed, 1),
                "p50_ms": round(statistics.median(latencies) * 1000),
                "p95_ms": round(latencies[int(len(latencies) * 0.95) - 1] * 1000),
                "statuses": statuses,
            }
        )
    )


if __name__ == "__main__":
    main()
