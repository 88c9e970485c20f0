"""A WSGI application that reports how many requests were in it at once (tests/core/test_admission.py).

``/``: each request stays 50 ms; ``/outside``: the same 50 ms spent in ``waiting_outside()``, as a
provider call is. Each answer is the most requests seen inside at once so far on that path. A POST
reads its body first, as Django does."""

import threading
import time

from core.admission import waiting_outside

_lock = threading.Lock()
_inside = {"/": 0, "/outside": 0}
_most = {"/": 0, "/outside": 0}


def _stay(path: str) -> None:
    with _lock:
        _inside[path] += 1
        _most[path] = max(_most[path], _inside[path])
    try:
        time.sleep(0.05)
    finally:
        with _lock:
            _inside[path] -= 1


def application(environ, start_response):
    if environ["REQUEST_METHOD"] == "POST":
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    path = environ["PATH_INFO"] if environ["PATH_INFO"] in _inside else "/"
    if path == "/outside":
        with waiting_outside():
            _stay(path)
    else:
        _stay(path)
    body = str(_most[path]).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
