# pyright: strict
"""The in-sandbox forwarder: TCP on 127.0.0.1 to the body's proxy unix socket, then the command itself.

This file is not imported by the sandbox: its source is run inside the network namespace by an exposed
interpreter (`python -I -S -c SOURCE SOCKET HOST PORT ARGV...`), so it uses the standard library only and
works on any Python 3.9+. It listens first, then spawns the command and relays every connection until the
command exits, exiting with the command's status (128+N for signal N), like a shell would.

One thread and a selector: every thread and process counts against the run's pids limit.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import sys

_BUFFER = 64 * 1024
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


class _Link:
    """One client connection and its upstream: two directions, each with a bounded buffer."""

    def __init__(self, selector: selectors.BaseSelector, client: socket.socket, upstream: socket.socket) -> None:
        self.selector = selector
        self.socks = (client, upstream)
        self.buffers = (bytearray(), bytearray())  # buffers[i]: read from socks[i], to be sent to the other
        self.eof = [False, False]
        self.shut = [False, False]
        self.registered = [False, False]
        self.closed = False
        for sock in self.socks:
            sock.setblocking(False)
        self._update()

    def on_event(self, side: int, mask: int) -> None:
        other = 1 - side
        sock = self.socks[side]
        try:
            if mask & _READ:
                data = sock.recv(_BUFFER)
                if data:
                    self.buffers[side].extend(data)
                else:
                    self.eof[side] = True
            if mask & _WRITE and self.buffers[other]:
                sent = sock.send(self.buffers[other])
                del self.buffers[other][:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.close()
            return
        for direction in (0, 1):
            target = 1 - direction
            # Pass a half-close on once everything before it has been delivered (HTTP clients rely on it).
            if self.eof[direction] and not self.buffers[direction] and not self.shut[target]:
                self.shut[target] = True
                with contextlib.suppress(OSError):
                    self.socks[target].shutdown(socket.SHUT_WR)
        if all(self.shut):
            self.close()
        else:
            self._update()

    def _update(self) -> None:
        for side in (0, 1):
            events = 0
            if not self.eof[side] and len(self.buffers[side]) < _BUFFER:
                events |= _READ
            if self.buffers[1 - side]:
                events |= _WRITE
            sock = self.socks[side]
            if events and self.registered[side]:
                self.selector.modify(sock, events, (self, side))
            elif events:
                self.selector.register(sock, events, (self, side))
                self.registered[side] = True
            elif self.registered[side]:
                self.selector.unregister(sock)
                self.registered[side] = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for side, sock in enumerate(self.socks):
            if self.registered[side]:
                self.selector.unregister(sock)
            sock.close()


def _accept(selector: selectors.BaseSelector, listener: socket.socket, upstream_path: str) -> None:
    try:
        client, _ = listener.accept()
    except (BlockingIOError, InterruptedError):
        return
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(upstream_path)
    except OSError as error:
        sys.stderr.write(f"swarm proxy forwarder: cannot reach the proxy: {error}\n")
        upstream.close()
        client.close()
        return
    _Link(selector, client, upstream)


def main(args: list[str]) -> int:
    upstream_path, host, port, argv = args[0], args[1], int(args[2]), args[3:]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(128)
    listener.setblocking(False)
    try:
        pid = os.posix_spawnp(argv[0], argv, dict(os.environ))
    except OSError as error:
        sys.stderr.write(f"{argv[0]}: {error.strerror}\n")
        return 127
    selector = selectors.DefaultSelector()
    selector.register(listener, _READ, None)
    child = os.pidfd_open(pid)
    selector.register(child, _READ, "child")
    while True:
        for key, mask in selector.select():
            if key.data == "child":
                _, status = os.waitpid(pid, 0)
                code = os.waitstatus_to_exitcode(status)
                return 128 - code if code < 0 else code
            if key.data is None:
                _accept(selector, listener, upstream_path)
            else:
                link, side = key.data
                link.on_event(side, mask)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
