"""A loopback TCP proxy in front of a real server, to make the faults a network makes.

`cut_replies(n, marker)`: the next n replies to a request holding `marker` (the SHA of
apply.lua: a batch's write) are dropped with the connection, after the server has answered:
the write is done, the client never learns it. `freeze()`: every connection, old and new,
stops forwarding without closing (a half-open connection, a dead load balancer); `thaw()`.
`hold_requests(marker)`: the next connection to send a request holding `marker` has that
request and its later ones held back; once the client has given the connection up, they reach
the server at `release()` (a request delayed in the network, arriving after the client's retry).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from types import TracebackType


class Proxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port: int = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.to_cut = 0
        self.marker = b""
        self.then_all = False
        self.cut = 0  # replies dropped so far
        self.frozen = False
        self.hold_marker = b""  # hold_requests(): the next connection sending it is held
        self.released = threading.Event()
        self.delivered = threading.Event()  # the held requests reached the server
        self.stopped = threading.Event()
        self.threads: list[threading.Thread] = []
        self.sockets: list[socket.socket] = []
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self.threads.append(accept)

    def url(self, query: str = "") -> str:
        return f"redis://127.0.0.1:{self.port}/0{query}"

    def cut_replies(self, n: int, marker: bytes, *, then_all: bool = False) -> None:
        """Drop the next `n` replies to requests holding `marker`; `then_all`: after the first,
        every reply to every request (the server gone, as far as the client can tell)."""
        with self.lock:
            self.to_cut, self.marker, self.then_all = n, marker, then_all

    def hold_requests(self, marker: bytes) -> None:
        with self.lock:
            self.hold_marker = marker
            self.released.clear()
            self.delivered.clear()

    def release(self, timeout: float = 10.0) -> None:
        """The held requests go to the server once their client has let the connection go;
        returns when the server has answered them."""
        self.released.set()
        if not self.delivered.wait(timeout):
            raise TimeoutError("the held requests did not reach the server")

    def freeze(self) -> None:
        self.frozen = True

    def thaw(self) -> None:
        self.frozen = False

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            self.sockets += [client, server]
            pipe = threading.Thread(target=self._pipe, args=(client, server), daemon=True)
            pipe.start()
            self.threads.append(pipe)

    def _pipe(self, client: socket.socket, server: socket.socket) -> None:
        armed = False  # a marked request went to the server: its answer is to be dropped
        held: list[bytes] | None = None  # requests held back (hold_requests)
        try:
            while not self.stopped.is_set():
                ready, _, _ = select.select([client, server], [], [], 0.1)
                if self.frozen:
                    continue  # nothing read, nothing forwarded, nothing closed
                for sock in ready:
                    data = sock.recv(1 << 16)
                    if not data:
                        if held:
                            self._deliver_late(server, b"".join(held))
                        return
                    if sock is client:
                        with self.lock:
                            if held is None and self.hold_marker and self.hold_marker in data:
                                self.hold_marker, held = b"", []
                        if held is not None:
                            held.append(data)
                            continue
                        with self.lock:
                            if self.to_cut and self.marker and self.marker in data:
                                self.to_cut -= 1
                                armed = True
                                if self.then_all:
                                    self.to_cut, self.marker = 1 << 30, b"*"
                        server.sendall(data)
                    elif armed:
                        self.cut += 1
                        return  # the server answered; the client will never know
                    else:
                        client.sendall(data)
        except OSError:
            return
        finally:
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _deliver_late(self, server: socket.socket, requests: bytes) -> None:
        """Held requests sent once released, the server's answers awaited (and dropped)."""
        if not self.released.wait(10):
            return
        server.sendall(requests)
        server.settimeout(0.5)
        with contextlib.suppress(OSError):  # (until the server has said all it will)
            while server.recv(1 << 16):
                pass
        self.delivered.set()

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()
        for thread in self.threads:
            thread.join(timeout=2)

    def __enter__(self) -> Proxy:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
