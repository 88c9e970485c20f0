#!/usr/bin/env python3
"""Shows that clients stalled mid-body cannot slow the service down behind nginx (deploy/nginx.conf).

Opens --stalled connections that each send headers and half of a declared body, then stall; while
they hang on, times --samples requests to GET /health and to a send (POST /api/messages/sms), and
prints the median and worst, first without stalled connections (the baseline), then with them. Exits 1
if, with them, a request fails or the median is over --limit-ms (100 by default). The worst case is
printed beside the baseline's worst: on a busy machine both are set by the load, not by the stalls.

    bin/slow_clients.py --url http://127.0.0.1:8000            # through nginx (bin/proxy.sh)
    bin/slow_clients.py --url http://127.0.0.1:8080            # straight at gunicorn, to compare
Only the standard library; sends come from numbers of their own so rate limits are not met.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid


def stall(host: str, port: int, count: int) -> list[socket.socket]:
    stalled = []
    body = json.dumps({"from": "+12016660000", "to": "+18045550000", "body": "x" * 2000})
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=5)
        head = (
            "POST /api/messages/sms HTTP/1.1\r\n"
            f"Host: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body[: len(body) // 2].encode())
        stalled.append(sock)
    return stalled


def timed(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, float]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError:
        status = 0
    return status, (time.monotonic() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--stalled", type=int, default=100)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--limit-ms", type=float, default=100.0)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args()
    target = urllib.parse.urlsplit(args.url)

    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["Authorization"] = f"Bearer {args.api_key}"
    baseline = measure(args.url, args.samples, headers)
    stalled = stall(target.hostname, target.port or 80, args.stalled)
    time.sleep(1)  # let the server pick them up
    loaded = measure(args.url, args.samples, headers)
    for sock in stalled:
        sock.close()

    failed = False
    print(f"{args.url}: {args.samples} samples each, limit {args.limit_ms:g} ms on the median")
    for name in loaded:
        for label, results in (("no stalled connections", baseline), (f"{args.stalled} stalled mid-body", loaded)):
            samples = results[name]
            statuses = sorted({status for status, _ in samples})
            times = [ms for _, ms in samples]
            median = statistics.median(times)
            ok = median < args.limit_ms and all(200 <= status < 300 for status, _ in samples)
            if results is loaded:
                failed |= not ok
            print(
                f"  {name:<24} {label:<24} statuses {statuses}  median {median:7.1f} ms  "
                f"worst {max(times):7.1f} ms  {'ok' if ok else 'FAIL'}"
            )
    return 1 if failed else 0


def measure(url: str, samples: int, headers: dict) -> dict[str, list[tuple[int, float]]]:
    results: dict[str, list[tuple[int, float]]] = {"GET /health": [], "POST /api/messages/sms": []}
    for _ in range(samples):
        results["GET /health"].append(timed(url + "/health"))
        send = {"from": f"+1201555{uuid.uuid4().int % 10000:04d}", "to": "+18045551234", "body": "slow-client drill"}
        results["POST /api/messages/sms"].append(timed(url + "/api/messages/sms", json.dumps(send).encode(), headers))
    return results


if __name__ == "__main__":
    sys.exit(main())
