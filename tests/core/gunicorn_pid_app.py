"""A WSGI application that answers with the id of the process serving it (tests/core/test_gunicorn_worker.py);
with the query ``slow`` it answers after 0.5 s, holding its thread meanwhile; with ``http_date`` it
says whether the process formats gunicorn's ``Date`` header once a second (core/gunicorn_worker.py)."""

import os
import time

import gunicorn.util


def application(environ, start_response):
    if environ.get("QUERY_STRING") == "slow":
        time.sleep(0.5)
    body = str(os.getpid()).encode()
    if environ.get("QUERY_STRING") == "http_date":
        once = getattr(gunicorn.util.http_date, "formatted_once_a_second", False)
        body = b"formatted once a second" if once else b"formatted for each answer"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
