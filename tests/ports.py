"""A free TCP port on 127.0.0.1, for a server a test starts or for an address nothing listens on."""

import socket


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
