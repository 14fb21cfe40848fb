"""Hostile stand-ins for a Redis server, on free loopback ports, for the probes' deadline tests.

Each FaultPeer reads RESP commands and misbehaves in one way when answering each of them:
  drip      sends the reply one byte every `interval` seconds
  slow      sends the whole reply, but only `interval` seconds after the command
  silent    accepts the connection, reads, never answers
  truncate  sends the start of a bulk reply, then closes the connection
Use it as a context manager: it starts on enter and stops (closing every connection) on exit.
"""
from __future__ import annotations

import socket
import threading

MODES = ("drip", "slow", "silent", "truncate")
TRUNCATED_REPLY = b"$100\r\nabc"


def _command_end(buffer: bytes) -> int | None:
    """Where the first complete RESP command in the buffer ends, or None while it is incomplete."""
    if not buffer:
        return None
    if not buffer.startswith(b"*"):  # an inline command or a TLS hello: whatever arrived is one command
        return len(buffer)
    header_end = buffer.find(b"\r\n")
    if header_end < 0:
        return None
    position = header_end + 2
    for _argument in range(int(buffer[1:header_end])):
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        position = line_end + 2 + int(buffer[position + 1:line_end]) + 2
        if position > len(buffer):
            return None
    return position


def split_commands(buffer: bytes) -> tuple[int, bytes]:
    """The number of complete commands in the buffer, and what is left after them."""
    count = 0
    while True:
        end = _command_end(buffer)
        if end is None:
            return count, buffer
        count += 1
        buffer = buffer[end:]


class FaultPeer:
    def __init__(self, mode: str, *, interval: float = 1.0, reply: bytes = b"+OK\r\n", host: str = "127.0.0.1"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode, self.interval, self.reply, self.host = mode, interval, reply, host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.bind((host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connections: list[socket.socket] = []
        self.commands_seen = 0
        self.first_command = threading.Event()

    def __enter__(self) -> FaultPeer:
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopped.set()
        self._listener.close()
        for connection in list(self._connections):
            try:
                connection.close()
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=10)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _address = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._connections.append(connection)
            self._spawn(self._serve, connection)

    def _serve(self, connection: socket.socket) -> None:
        connection.settimeout(0.1)
        pending = b""
        try:
            while not self._stopped.is_set():
                try:
                    data = connection.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    return
                count, pending = split_commands(pending + data)
                for _command in range(count):
                    self.commands_seen += 1
                    self.first_command.set()
                    if not self._answer(connection):
                        return
        except OSError:
            return
        finally:
            connection.close()

    def _answer(self, connection: socket.socket) -> bool:
        """Answers one command the faulty way; False when the connection is done."""
        if self.mode == "silent":
            return True
        if self.mode == "truncate":
            connection.sendall(TRUNCATED_REPLY)
            return False
        if self.mode == "slow":
            if self._stopped.wait(self.interval):
                return False
            connection.sendall(self.reply)
            return True
        for byte in self.reply:  # drip
            if self._stopped.wait(self.interval):
                return False
            connection.sendall(bytes([byte]))
        return True
