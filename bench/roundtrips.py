"""Counting TCP proxies for PostgreSQL and Redis: how many client-server round trips a request costs.

The benchmark points a full-stack server at these proxies (``INOPSIO_DATABASE_APP_URL`` and
``INOPSIO_REDIS_URL``), sends requests one at a time, and reads the counters. A *round trip* is a
turn of the conversation: the client sends after having received data from the server (or sends
first). Pipelined messages sent in one go are one turn, so this counts exactly the waits that cost
latency. The proxies also decode what the client sent (PostgreSQL frontend messages, Redis
commands) so the report can show which statements make up a request.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from typing import Literal

Protocol = Literal["postgres", "redis"]


@dataclass
class Tally:
    """What went over one proxy since the last :meth:`reset`."""

    turns: int = 0
    #: PostgreSQL: frontend message types (``Q`` query, ``P`` parse, ``B`` bind, ``E`` execute, ``S`` sync).
    messages: dict[str, int] = field(default_factory=dict)
    #: The SQL of each ``Q``/``P`` message, or each Redis command name, in order.
    statements: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.turns = 0
        self.messages.clear()
        self.statements.clear()


class _Connection:
    def __init__(self, proxy: CountingProxy) -> None:
        self.proxy = proxy
        self.awaiting_reply = False  # the client has sent and not heard back yet
        self.started = proxy.protocol == "redis"  # PostgreSQL: the first message has no type byte
        self.buffer = b""
        #: PostgreSQL prepared statements of this connection: name -> SQL, to name what a Bind runs.
        self.prepared: dict[str, str] = {}

    def client_data(self, data: bytes) -> None:
        if self.proxy.counting and not self.awaiting_reply:
            self.proxy.tally.turns += 1
        self.awaiting_reply = True
        if self.proxy.protocol == "postgres":
            # Always parsed: a statement prepared before counting started is bound while counting.
            self.buffer += data
            self._parse_postgres()
        elif self.proxy.counting:
            self.buffer += data
            self._parse_redis()
        else:
            self.buffer = b""

    def server_data(self) -> None:
        self.awaiting_reply = False

    def _parse_postgres(self) -> None:
        tally = self.proxy.tally
        while True:
            if not self.started:
                if len(self.buffer) < 4:
                    return
                (length,) = struct.unpack("!I", self.buffer[:4])
                if len(self.buffer) < length:
                    return
                self.buffer = self.buffer[length:]
                self.started = True
                continue
            if len(self.buffer) < 5:
                return
            kind = chr(self.buffer[0])
            (length,) = struct.unpack("!I", self.buffer[1:5])
            if len(self.buffer) < 1 + length:
                return
            body = self.buffer[5 : 1 + length]
            self.buffer = self.buffer[1 + length :]
            if kind == "P":
                name, _, rest = body.partition(b"\0")
                sql = " ".join(rest.split(b"\0", 1)[0].decode().split())
                self.prepared[name.decode()] = sql
            if not self.proxy.counting:
                continue
            tally.messages[kind] = tally.messages.get(kind, 0) + 1
            if kind == "Q":
                tally.statements.append("Q " + " ".join(body.rstrip(b"\0").decode().split()))
            elif kind == "P":
                name = body.split(b"\0", 1)[0].decode()
                tally.statements.append(f"P[{name or 'unnamed'}] {self.prepared[name]}")
            elif kind == "B":
                name = body.split(b"\0", 2)[1].decode()
                sql = self.prepared.get(name, "?") if name else "(the statement parsed just before)"
                tally.statements.append(f"B[{name or 'unnamed'}] {sql}")

    def _parse_redis(self) -> None:
        # Just enough RESP to name each command: ``*<n>\r\n`` then n bulk strings ``$<len>\r\n<data>\r\n``.
        tally = self.proxy.tally
        while self.buffer.startswith(b"*"):
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            count, pos, parts = int(self.buffer[1:end]), end + 2, []
            for _ in range(count):
                end = self.buffer.find(b"\r\n", pos)
                if end < 0:
                    return
                size = int(self.buffer[pos + 1 : end])
                if len(self.buffer) < end + 2 + size + 2:
                    return
                parts.append(self.buffer[end + 2 : end + 2 + size])
                pos = end + 2 + size + 2
            self.buffer = self.buffer[pos:]
            name = parts[0].decode().upper() if parts else "?"
            tally.messages[name] = tally.messages.get(name, 0) + 1
            tally.statements.append(name)


class CountingProxy:
    """Forward ``listen_port`` to ``target``; count turns and messages while :attr:`counting` is on."""

    def __init__(self, protocol: Protocol, target_host: str, target_port: int) -> None:
        self.protocol = protocol
        self.target = (target_host, target_port)
        self.tally = Tally()
        self.counting = False
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self.target)
        connection = _Connection(self)

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, from_client: bool) -> None:
            try:
                while data := await reader.read(65536):
                    # Record before forwarding: the reply cannot overtake the request in the tally.
                    if from_client:
                        connection.client_data(data)
                    else:
                        connection.server_data()
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        await asyncio.gather(
            pump(client_reader, server_writer, True),
            pump(server_reader, client_writer, False),
        )
