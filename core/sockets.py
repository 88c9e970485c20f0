"""What the service's own pooled connections (the Redis scripts' in ``core.redis_cache``, the provider
calls' in ``providers.http``) share about their sockets."""

from __future__ import annotations

import select
import socket


class IdleCheck:
    """Tells whether the server closed a connection while it sat idle in a pool (a restart, an idle
    timeout, ``CLIENT KILL``): an idle connection has nothing to read unless it was closed, or holds
    stray data, which is as bad. One ``poll`` with no wait, before the connection is used again."""

    def __init__(self, sock: socket.socket) -> None:
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)

    def closed_by_server(self) -> bool:
        try:
            return bool(self._poller.poll(0))
        except OSError:
            return True
