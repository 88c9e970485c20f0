"""A TCP proxy that can be cut and frozen, for database fault drills.

    python -m tests.fault_proxy --listen 127.0.0.1:8151 --target 127.0.0.1:5432 --control 127.0.0.1:8152
    printf 'cut\\n' | nc 127.0.0.1 8152       # or: freeze, pass

Modes:
- ``pass``: forwards bytes both ways.
- ``cut``: closes every open connection and closes each new one at once (the server is gone).
- ``freeze``: keeps every connection open and accepts new ones, but moves no byte in either direction
  (the server's processes are stopped, or the network drops packets while sockets stay up).

Also used in-process by the tests (``FaultProxy(...).start()``).
"""

from __future__ import annotations

import argparse
import contextlib
import select
import socket
import threading

PASS, CUT, FREEZE = "pass", "cut", "freeze"


class FaultProxy:
    def __init__(self, *, target: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.target = target
        self._server = socket.create_server(listen, backlog=256)
        self.address = self._server.getsockname()[:2]
        self._mode = PASS
        self._changed = threading.Condition()
        self._sockets: set[socket.socket] = set()
        self._closing = False

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def mode(self) -> str:
        return self._mode

    def start(self) -> FaultProxy:
        threading.Thread(target=self._accept_loop, daemon=True, name="fault-proxy").start()
        return self

    def set_mode(self, mode: str) -> None:
        if mode not in (PASS, CUT, FREEZE):
            raise ValueError(mode)
        with self._changed:
            self._mode = mode
            self._changed.notify_all()
            if mode == CUT:
                for sock in list(self._sockets):
                    _close(sock)
                self._sockets.clear()

    def close(self) -> None:
        self._closing = True
        _close(self._server)
        self.set_mode(CUT)

    def _accept_loop(self) -> None:
        while not self._closing:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _wait_while_frozen(self) -> str:
        with self._changed:
            while self._mode == FREEZE and not self._closing:
                self._changed.wait()
            return self._mode

    def _serve(self, client: socket.socket) -> None:
        if self._wait_while_frozen() == CUT:
            _close(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _close(client)
            return
        with self._changed:
            if self._mode == CUT:
                _close(client)
                _close(upstream)
                return
            self._sockets |= {client, upstream}
        try:
            self._pump(client, upstream)
        finally:
            with self._changed:
                self._sockets -= {client, upstream}
            _close(client)
            _close(upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        while True:
            if self._wait_while_frozen() == CUT:
                return
            try:
                readable, _, _ = select.select(list(peers), [], [], 0.05)
            except (OSError, ValueError):
                return
            for sock in readable:
                if self._mode != PASS:
                    break  # frozen or cut since select returned: move nothing
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                try:
                    peers[sock].sendall(data)
                except OSError:
                    return


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=_address, required=True)
    parser.add_argument("--target", type=_address, required=True)
    parser.add_argument("--control", type=_address, required=True, help="a port taking lines: pass, cut, freeze")
    args = parser.parse_args()
    proxy = FaultProxy(target=args.target, listen=args.listen).start()
    control = socket.create_server(args.control)
    print(f"fault proxy {proxy.address[0]}:{proxy.port} -> {args.target[0]}:{args.target[1]}", flush=True)
    while True:
        conn, _ = control.accept()
        with conn, conn.makefile("rw") as stream:
            for line in stream:
                try:
                    proxy.set_mode(line.strip())
                except ValueError:
                    stream.write(f"unknown mode {line.strip()!r}; pass, cut or freeze\n")
                else:
                    stream.write(f"ok {proxy.mode}\n")
                stream.flush()


if __name__ == "__main__":
    main()
