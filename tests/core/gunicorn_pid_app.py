"""A WSGI application that answers with the id of the process serving it (tests/core/test_gunicorn_worker.py);
with the query ``slow`` it answers after 0.5 s, holding its thread meanwhile."""

import os
import time


def application(environ, start_response):
    if environ.get("QUERY_STRING") == "slow":
        time.sleep(0.5)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
