"""What every HTTP adapter shares: one ``httpx.Client`` per provider (at most
PROVIDER_HTTP_MAX_CONNECTIONS calls in flight, each on a kept-alive connection of its own), and the
classification of what can go wrong on the wire into ``ProviderError``s (docs/PROVIDERS.md has the
fault matrix).

The one question that matters after a failure is whether the provider may have accepted the message:

- it certainly did not (the connection was refused or never established, or the provider answered an
  error it documents as "not accepted"): ``not_accepted=True``; the next provider of the channel may
  be tried at once;
- it may have (a timeout while waiting for the answer, a connection reset mid-answer, an answer that
  cannot be read): ``not_accepted=False``; only a retry with the same idempotency token, to the same
  provider, is safe.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.client
import json
import logging
import os
import socket
import ssl
import threading
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, cast
from urllib.parse import urlencode

import httpx
from django.conf import settings

from core.admission import waiting_outside
from core.sockets import IdleCheck
from providers.base import ProviderError, ProviderTimeout

logger = logging.getLogger(__name__)

HTTP = "http"
MOCK = "mock"
#: The settings that name each provider API's base URL.
BASE_URL_SETTINGS = ("TWILIO_BASE_URL", "SENDGRID_BASE_URL", "META_GRAPH_BASE_URL")

_clients: dict[tuple[str, int], httpx.Client] = {}
_clients_lock = threading.Lock()


def http_mode() -> bool:
    """True when sends go to the providers' HTTP APIs (``PROVIDER_MODE=http``), False for the mocks."""
    return bool(settings.PROVIDER_MODE == HTTP)


def simulator_environment(base_url: str) -> dict[str, str]:
    """Environment variables that run HTTP mode against the provider simulator at ``base_url``: every
    provider's base URL, and fresh credentials for every provider that the start-up check accepts.
    The simulator reads the same variables, so it takes the same environment (bench/run.py)."""
    return {
        "PROVIDER_MODE": HTTP,
        **dict.fromkeys(BASE_URL_SETTINGS, base_url),
        "TWILIO_ACCOUNT_SID": "AC" + uuid.uuid4().hex,
        "TWILIO_AUTH_TOKEN": uuid.uuid4().hex,
        "SENDGRID_API_KEY": "SG." + uuid.uuid4().hex,
        "META_ACCESS_TOKEN": uuid.uuid4().hex,
        "WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
    }


def client_for(provider: str) -> httpx.Client:
    """This process's client for one provider (created on first use, after any fork): its headers,
    timeouts and auth; its connections are ``_Connections``."""
    key = (provider, os.getpid())
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = _ProviderClient(
                    timeout=httpx.Timeout(
                        settings.PROVIDER_TIMEOUT_SECONDS, connect=settings.PROVIDER_CONNECT_TIMEOUT_SECONDS
                    ),
                    transport=_Connections(calls=settings.PROVIDER_HTTP_MAX_CONNECTIONS),
                    # Answers of a few hundred bytes: not compressed, so the direct path reads them as
                    # they come, and both paths send the same headers.
                    headers={"User-Agent": "messaging-service/1", "Accept-Encoding": "identity"},
                    follow_redirects=False,
                )
                _clients[key] = client
    return client


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing. Provider APIs authenticate every call by its credentials, and
    a cookie one answer set must not ride along with other messages; reading the cookies of every
    answer was also a sixth of a call's CPU (docs/PERFORMANCE.md, twenty-second round)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass


class _ProviderClient(httpx.Client):
    """An httpx client that keeps no cookies (``_NoCookies``), on a ``_Connections`` transport, with a
    direct path for ``http_post`` (``post_direct``)."""

    _no_cookies = _NoCookies()

    def __init__(self, *, transport: _Connections, **kwargs: Any) -> None:
        super().__init__(transport=transport, **kwargs)
        self.connections = transport

    def post_direct(self, url: httpx.URL, call: HttpCall) -> ProviderAnswer | None:
        """``call`` POSTed straight onto a ``_Connections`` connection, without httpx's request and
        answer objects, which were about half of a call's CPU (docs/PERFORMANCE.md, twenty-sixth
        round): what ``self.post`` would send (the client's headers, then the call's, the body
        encoded as httpx encodes it, basic auth as httpx writes it, from the call or else from the
        URL's user and password), the same failures (httpx's exceptions), the answer read whole.
        None when a proxy applies: that call goes through httpx."""
        if self.connections.proxy_for(url) is not None:
            return None
        body, content_type = _encoded_body(call)
        # Merged as httpx merges them (``Headers.update``): a name the call gives again moves to the end.
        headers: dict[bytes, tuple[bytes | str, bytes | str]] = {
            name.lower(): (name, value) for name, value in self.headers.raw
        }
        for key, text in call.headers.items():
            lower = key.lower().encode("ascii")
            headers.pop(lower, None)
            # ASCII, as httpx requires of a header given as text (UnicodeEncodeError before anything is sent).
            headers[lower] = (key, text.encode("ascii"))
        if content_type is not None:
            headers.setdefault(b"content-length", (b"Content-Length", str(len(body))))
            headers.setdefault(b"content-type", (b"Content-Type", content_type))
        first: list[tuple[bytes | str, bytes | str]] = []  # httpx puts these before the rest
        if b"host" not in headers:
            first.append((b"Host", url.netloc))
        if b"content-length" not in headers and b"transfer-encoding" not in headers:
            first.append((b"Content-Length", b"0"))
        # As httpx's ``_build_request_auth``: the call's credentials, else the URL's; either replaces
        # a header of that name where it stands.
        auth = call.auth
        if auth is None and (url.username or url.password):
            auth = (url.username, url.password)
        if auth is not None:
            headers[b"authorization"] = (b"Authorization", _basic_auth(*auth))
        return self.connections.post(url, [*first, *headers.values()], body, self.timeout.as_dict())

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise AttributeError("provider clients keep no cookies")


@functools.lru_cache(maxsize=256)
def _parsed_url(url: str) -> httpx.URL:
    """``url`` parsed once: an adapter calls a handful of URLs, and httpx's parsing of a URL's text
    checked it a character at a time on every call."""
    return httpx.URL(url)


def clients_close() -> None:
    """Closes every pooled client (tests change timeouts between cases)."""
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


#: How long an idle provider connection is kept for reuse (httpx's own default keep-alive expiry).
KEEPALIVE_SECONDS = 5.0


class _Connections(httpx.BaseTransport):
    """One provider's connections in one process: at most ``calls`` requests in flight, each on a
    connection of its own that no other request touches until its answer is closed; idle connections
    wait on a stack, and the most recently used is taken first, so a quiet period keeps a few warm
    connections instead of many cold ones. Connections idle longer than ``KEEPALIVE_SECONDS`` are
    closed, and one the server closed while it was idle is never used.

    httpx's default is one pool shared by every thread, and httpcore's pool walks all its
    connections and waiting requests, under one lock, when a request starts and when its answer is
    closed: with the outbox's 256 delivery threads that walk took most of a worker's CPU, the worker
    sent about 100 messages a second at 100-500 ms whatever its concurrency, and under load the pool
    closed connections under other threads' requests (docs/PERFORMANCE.md, sixteenth round). Here a
    request to the provider goes on a connection of the standard library's ``http.client``
    (``_Direct``), which costs less than half of httpcore's CPU per call (twenty-second round). A
    call waits up to the pool timeout for one of the ``calls`` slots, and raises
    ``httpx.PoolTimeout`` (nothing sent) when none frees.

    Proxies come from the environment as for any httpx client (``HTTP_PROXY``, ``HTTPS_PROXY``,
    ``ALL_PROXY``, ``NO_PROXY``, read by the standard library's rules), since a client given its own
    transport no longer reads them itself. A call through a proxy goes on a one-connection httpx
    transport, which speaks every kind of proxy httpx does."""

    def __init__(self, *, calls: int) -> None:
        self._slots = threading.BoundedSemaphore(calls)
        self._lock = threading.Lock()
        # Idle connections by where they lead: an origin (scheme, host, port) for direct ones, the
        # proxy's URL for those through a proxy.
        self._idle: dict[object, deque[tuple[float, _Direct | _Proxied]]] = {}
        self._closed = False
        self._ssl_context = httpx.create_ssl_context()  # the CA bundle loaded once, not per connection
        self._proxies = urllib.request.getproxies_environment()

    def proxy_for(self, url: httpx.URL) -> str | None:
        if not self._proxies or urllib.request.proxy_bypass(url.host):
            return None
        return self._proxies.get(url.scheme) or self._proxies.get("all")

    def _take(self, url: httpx.URL, proxy: str | None) -> tuple[object, _Direct | _Proxied]:
        where: object = proxy if proxy is not None else _origin(url)
        now = time.monotonic()
        while True:
            with self._lock:
                idle = self._idle.get(where)
                if not idle:
                    break
                since, transport = idle.pop()
                expired = []
                if now - since > KEEPALIVE_SECONDS:  # the most recently used is too old: so are the rest
                    expired = [transport, *(old for _, old in idle)]
                    idle.clear()
            if expired:
                for old in expired:
                    _close_quietly(old)
                break
            if transport.closed_by_server():
                _close_quietly(transport)
                continue
            return where, transport
        if proxy is None:
            return where, _Direct(url, self._ssl_context)
        return where, _Proxied(proxy, self._ssl_context)

    def _give_back(self, where: object, transport: _Direct | _Proxied) -> None:
        now = time.monotonic()
        stale = []
        with self._lock:
            if self._closed or not transport.reusable:
                stale.append(transport)
            else:
                idle = self._idle.setdefault(where, deque())
                idle.append((now, transport))
                while now - idle[0][0] > KEEPALIVE_SECONDS:
                    stale.append(idle.popleft()[1])
        for old in stale:
            _close_quietly(old)

    def _acquire(self, wait: float | None, request: httpx.Request | None = None) -> None:
        """Takes one of the ``calls`` slots, waiting up to ``wait`` seconds (``PoolTimeout``: nothing sent)."""
        if not self._slots.acquire(timeout=wait):
            raise httpx.PoolTimeout(f"No free connection within {wait}s.", request=request)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._acquire(request.extensions.get("timeout", {}).get("pool"), request)
        try:
            where, transport = self._take(request.url, self.proxy_for(request.url))
            try:
                response = transport.handle_request(request)
            except BaseException:
                # Not kept if it failed (``reusable``); httpx's proxy transport drops its own connection.
                self._give_back(where, transport)
                raise
        except BaseException:
            self._slots.release()
            raise

        def done() -> None:
            try:
                self._give_back(where, transport)
            finally:
                self._slots.release()

        response.stream = _Releasing(cast(httpx.SyncByteStream, response.stream), done)  # nothing read yet
        return response

    def post(
        self, url: httpx.URL, headers: list[tuple[bytes | str, bytes | str]], body: bytes, timeouts: Mapping[str, Any]
    ) -> ProviderAnswer:
        """A POST on a direct connection (no proxy), its answer read whole: ``handle_request``'s slot,
        connection and failures without httpx's request and answer objects. The exceptions carry no
        request (``http_post`` reads only their class and text)."""
        self._acquire(timeouts.get("pool"))
        try:
            where, transport = self._take(url, None)
            direct = cast(_Direct, transport)  # a direct call's stack holds only direct connections
            try:
                answer = direct.exchange("POST", url.raw_path.decode("ascii"), headers, body, timeouts)
                try:
                    with _reading(None):
                        content = answer.read()
                except BaseException:
                    # An answer that ends the connection holds its socket itself: closed here, not
                    # left to the garbage collector while the exception lives.
                    answer.close()
                    raise
                direct.answer_read(answer)
            finally:
                self._give_back(where, direct)  # kept only if the answer was read whole (``reusable``)
        finally:
            self._slots.release()
        if logger.isEnabledFor(logging.DEBUG):  # as httpx logs its own requests (at DEBUG here)
            version = _answer_extensions(answer)["http_version"].decode("ascii")
            logger.debug('HTTP Request: POST %s "%s %d %s"', url, version, answer.status, answer.reason)
        raw = _answer_headers(answer)
        encoding = answer.getheader("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            # Compressed although the request said identity: httpx decodes it as it did before.
            return httpx.Response(answer.status, headers=raw, content=content, extensions=_answer_extensions(answer))
        return Answer(answer.status, answer.reason, httpx.Headers(raw), content)

    def close(self) -> None:
        with self._lock:
            self._closed = True  # connections in use are closed when their answers are
            idle, self._idle = self._idle, {}
        for stack in idle.values():
            for _, transport in stack:
                transport.close()


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    """Where a direct call connects: the host as it goes on the wire (IDNA-encoded, as httpx writes
    it in the Host header), so the connection, the TLS server name and the Host header agree."""
    if url.scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{url.scheme}://'.")
    return url.scheme, url.raw_host.decode("ascii"), url.port or (443 if url.scheme == "https" else 80)


def _close_quietly(transport: _Direct | _Proxied) -> None:
    with contextlib.suppress(Exception):  # a connection being dropped: nothing left to tell anyone
        transport.close()


class _Proxied(httpx.HTTPTransport):
    """Calls through one proxy: httpx's own transport, holding one connection, which it checks, drops
    after a failure and reopens itself, so the pool may always keep it."""

    reusable = True

    def __init__(self, proxy: str, ssl_context: ssl.SSLContext) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=KEEPALIVE_SECONDS)
        super().__init__(verify=ssl_context, proxy=proxy, limits=limits)

    def closed_by_server(self) -> bool:
        return False  # httpx's transport looks itself, and opens a new connection if so


class _Direct:
    """One kept-alive HTTP/1.1 connection to one origin on ``http.client``, for one request at a time,
    with httpx's transport interface and httpx's exceptions, so that ``http_post`` tells the failures
    apart as before: nothing connected (``ConnectError``, ``ConnectTimeout``: nothing sent), a request
    it could not write (``LocalProtocolError``), the request not written (``WriteError``,
    ``WriteTimeout``), no full answer (``ReadTimeout``, ``ReadError``, ``RemoteProtocolError``, also
    for an interim 1xx answer, which ``http.client`` does not follow beyond 100). Answer headers go to
    httpx as the bytes that came. It connects on its first request; it is ``reusable`` once an answer
    was read to its end on a connection the server keeps open."""

    def __init__(self, url: httpx.URL, ssl_context: ssl.SSLContext) -> None:
        scheme, host, port = _origin(url)
        self._connection = (
            http.client.HTTPSConnection(host, port, context=ssl_context)
            if scheme == "https"
            else http.client.HTTPConnection(host, port)
        )
        self._idle_check: IdleCheck | None = None
        self.reusable = False

    def exchange(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[bytes | str, bytes | str]],
        body: bytes,
        timeouts: Mapping[str, Any],
        *,
        chunked: bool = False,
        request: httpx.Request | None = None,
    ) -> http.client.HTTPResponse:
        """Writes one request and reads its answer's status line and headers (the body is the
        caller's to read, then ``answer_read``). Failures are httpx's exceptions, for ``request``."""
        self.reusable = False
        connection = self._connection
        if connection.sock is None:
            connection.timeout = timeouts.get("connect")
            try:
                connection.connect()
            except TimeoutError as exc:
                raise httpx.ConnectTimeout(str(exc) or "Connect timed out.", request=request) from exc
            except (OSError, UnicodeError) as exc:  # refused, unreachable, a name that does not resolve, TLS
                raise httpx.ConnectError(str(exc), request=request) from exc
            self._idle_check = IdleCheck(cast(socket.socket, connection.sock))
        sock = cast(socket.socket, connection.sock)
        try:
            sock.settimeout(timeouts.get("write"))
            connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)
            connection.endheaders(body or None, encode_chunked=chunked)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(str(exc) or "Write timed out.", request=request) from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc), request=request) from exc
        except (ValueError, http.client.HTTPException) as exc:  # a header it cannot write: nothing was sent
            raise httpx.LocalProtocolError(str(exc), request=request) from exc
        sock.settimeout(timeouts.get("read"))
        with _reading(request):
            answer = connection.getresponse()
        if answer.status < 200:
            # An interim answer (103 Early Hints, say) that http.client hands back as the answer: the
            # final one is still to come on this connection, which is dropped unread.
            answer.close()
            raise httpx.RemoteProtocolError(f"Interim answer {answer.status} not followed.", request=request)
        return answer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        answer = self.exchange(
            request.method,
            request.url.raw_path.decode("ascii"),
            request.headers.raw,
            body,
            request.extensions.get("timeout", {}),
            # httpx says "chunked" for a body it streams (read whole above): it goes as one chunk.
            chunked=request.headers.get("Transfer-Encoding", "").lower() == "chunked",
            request=request,
        )
        return httpx.Response(
            answer.status,
            headers=_answer_headers(answer),
            stream=_DirectBody(self, answer, request),
            extensions=_answer_extensions(answer),
        )

    def answer_read(self, answer: http.client.HTTPResponse) -> None:
        self.reusable = not answer.will_close and self._connection.sock is not None

    def closed_by_server(self) -> bool:
        if self._idle_check is None or self._connection.sock is None:
            return True
        return self._idle_check.closed_by_server()

    def close(self) -> None:
        self.reusable = False
        self._connection.close()


def _answer_headers(answer: http.client.HTTPResponse) -> list[tuple[bytes, bytes]]:
    """An answer's headers as the bytes that came (``http.client`` decoded them as Latin-1): httpx
    would refuse a non-ASCII value given as text."""
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.getheaders()]


def _answer_extensions(answer: http.client.HTTPResponse) -> dict[str, bytes]:
    """The HTTP version and reason phrase of an answer, as httpx's answers carry them."""
    return {
        "http_version": b"HTTP/1.0" if answer.version == 10 else b"HTTP/1.1",
        "reason_phrase": answer.reason.encode("ascii", "replace"),
    }


@contextlib.contextmanager
def _reading(request: httpx.Request | None) -> Iterator[None]:
    """An answer's status line, headers or body read by ``http.client``, its failures as httpx's: the
    request went out, so each says the provider may have accepted it."""
    try:
        yield
    except TimeoutError as exc:
        raise httpx.ReadTimeout(str(exc) or "Read timed out.", request=request) from exc
    except http.client.HTTPException as exc:  # no status line, a malformed one, IncompleteRead, closed
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=request) from exc
    except OSError as exc:
        raise httpx.ReadError(str(exc), request=request) from exc


class _DirectBody(httpx.SyncByteStream):
    """A ``_Direct`` answer's body, read whole (providers answer a few hundred bytes)."""

    def __init__(self, direct: _Direct, answer: http.client.HTTPResponse, request: httpx.Request) -> None:
        self._direct = direct
        self._answer = answer
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        with _reading(self._request):
            body = self._answer.read()
        self._direct.answer_read(self._answer)
        if body:
            yield body

    def close(self) -> None:
        self._answer.close()


class _Releasing(httpx.SyncByteStream):
    """An answer's body; closing it (httpx does once the body is read) gives its connection and its
    slot back, once."""

    def __init__(self, stream: httpx.SyncByteStream, done: Callable[[], None]) -> None:
        self._stream = stream
        self._done: Callable[[], None] | None = done

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            done, self._done = self._done, None
            if done is not None:
                done()


@dataclass(frozen=True)
class HttpCall:
    """One provider API request, as the adapter builds it (kept plain so tests can read it)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    data: Mapping[str, Any] | None = None
    json: Any = None
    auth: tuple[str | bytes, str | bytes] | None = None


class ProviderAnswer(Protocol):
    """What the adapters read of an answer: an ``Answer`` (the direct path) or an ``httpx.Response``."""

    @property
    def status_code(self) -> int: ...

    @property
    def reason_phrase(self) -> str: ...

    @property
    def headers(self) -> httpx.Headers: ...

    @property
    def content(self) -> bytes: ...

    @property
    def is_success(self) -> bool: ...

    def json(self) -> Any: ...


class Answer:
    """A provider's answer read whole by the direct path (``_Connections.post``)."""

    __slots__ = ("content", "headers", "reason_phrase", "status_code")

    def __init__(self, status_code: int, reason_phrase: str, headers: httpx.Headers, content: bytes) -> None:
        self.status_code = status_code
        self.reason_phrase = reason_phrase
        self.headers = headers
        self.content = content

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        return json.loads(self.content)

    def __repr__(self) -> str:
        return f"<Answer [{self.status_code} {self.reason_phrase}]>"


def _form_value(value: Any) -> str:
    """A form value as httpx writes it (``primitive_value_to_str``)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


def _encoded_body(call: HttpCall) -> tuple[bytes, str | None]:
    """``call``'s body and its Content-Type as httpx encodes them: form data if there is any (a list
    or tuple value is one pair per item), else JSON (compact, not ASCII-escaped), else nothing."""
    if call.data:
        pairs: list[tuple[str, str]] = []
        for key, value in call.data.items():
            if isinstance(value, list | tuple):
                pairs.extend((key, _form_value(item)) for item in value)
            else:
                pairs.append((key, _form_value(value)))
        return urlencode(pairs, doseq=True).encode("utf-8"), "application/x-www-form-urlencoded"
    if call.json is not None:
        text = json.dumps(call.json, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8"), "application/json"
    return b"", None


@functools.lru_cache(maxsize=64)
def _basic_auth(username: str | bytes, password: str | bytes) -> bytes:
    """The Authorization header's value for HTTP basic auth, as httpx writes it (UTF-8, base64)."""
    user = username.encode("utf-8") if isinstance(username, str) else username
    secret = password.encode("utf-8") if isinstance(password, str) else password
    return b"Basic " + base64.b64encode(user + b":" + secret)


def http_post(*, provider: str, call: HttpCall) -> ProviderAnswer:
    """POSTs ``call``; any answer (2xx or not) is returned, transport failures raise ``ProviderError``.
    A call that no proxy applies to goes on the direct path (``_ProviderClient.post_direct``); any
    other (a proxy, a client a test swapped in) through httpx's client. The web process's next request
    runs meanwhile (core/admission.py)."""
    with waiting_outside():
        return _http_post(provider=provider, call=call)


def _http_post(*, provider: str, call: HttpCall) -> ProviderAnswer:
    try:
        client = client_for(provider)
        url = _parsed_url(call.url)
        if isinstance(client, _ProviderClient):
            answer = client.post_direct(url, call)
            if answer is not None:
                return answer
        if call.auth is None:
            return client.post(url, headers=dict(call.headers), data=call.data, json=call.json)
        return client.post(url, headers=dict(call.headers), data=call.data, json=call.json, auth=call.auth)
    except httpx.PoolTimeout:
        # Waiting for one of PROVIDER_HTTP_MAX_CONNECTIONS: the request never left this process.
        raise ProviderError(
            provider=provider,
            code="pool_timeout",
            message=(
                f"No free provider connection within {settings.PROVIDER_TIMEOUT_SECONDS:g}s"
                f" (PROVIDER_HTTP_MAX_CONNECTIONS={settings.PROVIDER_HTTP_MAX_CONNECTIONS})."
            ),
            retryable=True,
            not_accepted=True,
            local=True,
        ) from None
    except httpx.ConnectTimeout:
        # No connection, so no request: nothing can have been accepted.
        raise ProviderError(
            provider=provider,
            code="connect_timeout",
            message=f"No connection within {settings.PROVIDER_CONNECT_TIMEOUT_SECONDS:g}s.",
            retryable=True,
            not_accepted=True,
        ) from None
    except httpx.ConnectError as exc:
        raise ProviderError(
            provider=provider,
            code="connection_refused",
            message=f"Could not connect: {exc}",
            retryable=True,
            not_accepted=True,
        ) from None
    except httpx.TimeoutException:
        # The request went out (or may have): the provider may have accepted it.
        raise ProviderTimeout(provider=provider, seconds=settings.PROVIDER_TIMEOUT_SECONDS) from None
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        raise ProviderError(
            provider=provider,
            code="connection_lost",
            message=f"The connection broke before a full answer ({type(exc).__name__}: {exc}).",
            retryable=True,
        ) from None
    except httpx.HTTPError as exc:
        raise ProviderError(
            provider=provider, code="http_error", message=f"{type(exc).__name__}: {exc}", retryable=True
        ) from None


def retry_after(response: ProviderAnswer) -> float | None:
    """Retry-After as seconds (a number or an HTTP date); None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def json_or_none(response: ProviderAnswer) -> Any:
    """The body as JSON, or None when it is not JSON (an HTML error page from a proxy, a cut body)."""
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None


def unreadable_answer(*, provider: str, response: ProviderAnswer, what: str) -> ProviderError:
    """A 2xx whose body cannot be read: the provider accepted something, we cannot say what.
    Transient and never failed over: the retry carries the same idempotency token."""
    return ProviderError(
        provider=provider,
        code="invalid_response",
        message=f"HTTP {response.status_code} without {what}; the send may have been accepted.",
        retryable=True,
    )


def error_from_status(
    *,
    provider: str,
    response: ProviderAnswer,
    code: int | str,
    message: str,
    not_accepted_statuses: frozenset[int],
    retryable: bool | None = None,
    not_accepted: bool | None = None,
) -> ProviderError:
    """A provider's error answer: 429 and 5xx are transient unless ``retryable`` says otherwise;
    ``not_accepted_statuses`` are the statuses the provider documents as "nothing was accepted"."""
    status = response.status_code
    return ProviderError(
        provider=provider,
        code=code,
        message=message or response.reason_phrase or f"HTTP {status}",
        retryable=(status == 429 or status >= 500) if retryable is None else retryable,
        retry_after=retry_after(response),
        not_accepted=(status in not_accepted_statuses) if not_accepted is None else not_accepted,
    )


def text_snippet(response: ProviderAnswer, limit: int = 200) -> str:
    return response.content[:limit].decode("utf-8", errors="replace").strip()
