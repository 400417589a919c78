"""A real SMTP server for tests (aiosmtpd in a thread): it keeps every message it receives.

The test app is configured to send through it (``smtp_host``/``smtp_port`` in the test settings),
so mail goes over a real SMTP conversation; ``refuse_next`` makes it answer with an error to
exercise retries.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class SmtpSink:
    """Receives mail on ``host:port``; ``messages`` are parsed ``EmailMessage`` objects, oldest first."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        self.messages: list[EmailMessage] = []
        self._refusals: list[str] = []
        self._lock = threading.Lock()
        self._controller = Controller(self, hostname=host, port=self.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    # aiosmtpd handler hook (runs in the server's thread)
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        with self._lock:
            if self._refusals:
                return self._refusals.pop(0)
            message = email.message_from_bytes(
                envelope.original_content or envelope.content, policy=email.policy.default
            )
            assert isinstance(message, EmailMessage)
            self.messages.append(message)
        return "250 Message accepted"

    def refuse_next(self, count: int = 1, reply: str = "451 4.3.0 Try again later") -> None:
        """Answer the next ``count`` messages with ``reply`` (4xx: the sender retries; 5xx: it gives up)."""
        with self._lock:
            self._refusals.extend([reply] * count)

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self._refusals.clear()

    def to(self, address: str) -> list[EmailMessage]:
        """Messages addressed to ``address``."""
        with self._lock:
            return [m for m in self.messages if address.lower() in str(m["To"]).lower()]
