"""A fake Redis server on loopback that answers RESP commands from a table of replies."""

from __future__ import annotations

import contextlib
import socket
import threading


class FakeRedisServer:
    """A loopback TCP server that answers RESP commands from a fixed table of replies."""

    def __init__(self, replies: dict[str, bytes]) -> None:
        self.replies = replies
        self.commands: list[list[str]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        with conn.makefile("rb") as reader:
            while header := reader.readline():
                count = int(header[1:])
                args: list[str] = []
                for _ in range(count):
                    length = int(reader.readline()[1:])
                    args.append(reader.read(length + 2)[:-2].decode())
                self.commands.append(args)
                conn.sendall(self.replies.get(args[0].upper(), b"-ERR unknown command\r\n"))
