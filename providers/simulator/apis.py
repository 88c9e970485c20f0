"""What the three fake provider APIs share: the request they read, the send they accept, and the
interface the server's pipeline drives (authenticate, parse, accept, error, status callbacks)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from providers.simulator.callbacks import Callback
from providers.simulator.config import SimulatorConfig
from providers.simulator.state import Answer


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    #: Looked up case-insensitively (``header``).
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def media_type(self) -> str:
        return (self.header("content-type") or "").split(";", 1)[0].strip().lower()

    def json(self) -> Any:
        """The body as JSON; raises ValueError."""
        return json.loads(self.body.decode("utf-8"))

    def form(self) -> list[tuple[str, str]]:
        return parse_qsl(self.body.decode("utf-8", errors="replace"), keep_blank_values=True)


@dataclass(frozen=True)
class SendRequest:
    """A valid send, as one fake API read it."""

    token: str | None
    fields: dict[str, Any]


@dataclass(frozen=True)
class Accepted:
    """A message the fake accepted: what its status callbacks need."""

    api: str
    channel: str
    message_id: str
    fields: dict[str, Any]


class FakeApi:
    name: str
    path: re.Pattern[str]

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.credentials = config.credentials

    def authenticate(self, request: Request) -> Answer | None:
        """An error answer when the credentials are missing or wrong, else None."""
        raise NotImplementedError

    def parse(self, request: Request, match: re.Match[str]) -> SendRequest | Answer:
        """The send to accept, or the provider's validation error answer."""
        raise NotImplementedError

    def accept(self, send: SendRequest) -> Answer:
        """The success answer, carrying ``Accepted`` for the callbacks."""
        raise NotImplementedError

    def error(
        self, status: int, *, code: str | None = None, retry_after: int | None = None, send: SendRequest | None = None
    ) -> Answer:
        """The provider's error answer for an HTTP status (faults and rate limits); ``send`` when parsed."""
        raise NotImplementedError

    def status_callbacks(self, accepted: Accepted, *, delivered: bool) -> list[Callback]:
        """The status callbacks for an accepted message, in the order the provider would send them."""
        raise NotImplementedError

    # Shared helpers

    def delivery_url(self, signed_url: str) -> str:
        """Where to post a callback signed for ``signed_url``: a URL under the service's public base
        is reached through the callback base (e.g. the public host is not reachable from here)."""
        signed_base = self.config.signed_base
        if signed_base != self.config.callback_base_url and signed_url.startswith(signed_base + "/"):
            return self.config.callback_base_url + signed_url[len(signed_base) :]
        return signed_url


def json_answer(status: int, body: Any, headers: tuple[tuple[str, str], ...] = (), accepted: Any = None) -> Answer:
    data = json.dumps(body).encode()
    return Answer(status, data, (("Content-Type", "application/json"), *headers), accepted)


def retry_after_headers(status: int, retry_after: int | None) -> tuple[tuple[str, str], ...]:
    if retry_after is None and status == 429:
        retry_after = 1
    return (("Retry-After", str(retry_after)),) if retry_after is not None else ()


def bearer_token(request: Request) -> str | None:
    scheme, _, token = (request.header("authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None
