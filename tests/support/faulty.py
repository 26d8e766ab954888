"""A TCP proxy in front of a test registry that can be taken down, made to hang, and
brought back, on the same ``host:port`` throughout.

- ``up``: every connection is forwarded to the registry.
- ``down``: nothing listens (connection refused), as for a registry that is stopped.
- ``hang``: connections are taken and never answered, as for a registry stuck on a
  dead disk or behind a black-holing firewall.

Used as ``with FaultyProxy(registry.host) as proxy: ...``; ``proxy.ref(image)`` puts
an image reference of the registry behind the proxy.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Self


class FaultyProxy:
    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.mode = "up"
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._held: list[socket.socket] = []
        self._closed = False
        self._listen(0)
        assert self._listener is not None
        self.port = int(self._listener.getsockname()[1])
        self.host = f"127.0.0.1:{self.port}"

    def ref(self, reference: str) -> str:
        """``reference`` (``HOST:PORT/name:tag`` of the target) through this proxy."""
        _, _, rest = reference.partition("/")
        return f"{self.host}/{rest}"

    def set(self, mode: str) -> None:
        """Switch to ``up``, ``down`` or ``hang``."""
        if mode not in ("up", "down", "hang"):
            raise ValueError(mode)
        with self._lock:
            self.mode = mode
            if mode == "down":
                self._stop_listening()
                for sock in self._held:
                    with contextlib.suppress(OSError):
                        sock.close()
                self._held.clear()
        if mode != "down" and self._listener is None:
            self._listen(self.port)

    def _listen(self, port: int) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self.mode
                if mode == "hang":
                    self._held.append(client)  # read nothing, answer nothing
                    continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.set("down")
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
