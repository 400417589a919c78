"""Following a Redis pub/sub channel for the life of a process: the one way processes tell each other
that something changed (a tenant, a role, a revoked key), so per-process caches stay correct."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("inopsio.pubsub")


async def follow_channel(
    redis: Redis,
    channel: str,
    on_message: Callable[[str], Awaitable[None] | None],
    *,
    on_subscribed: Callable[[], Awaitable[None] | None],
    what: str,
    on_idle: Callable[[], Awaitable[None] | None] | None = None,
) -> None:
    """Call ``on_message(text)`` for each message on ``channel`` until cancelled.

    ``on_subscribed`` runs after every (re)subscription: messages may have been missed while the
    feed was down, so it should drop or reload what the messages keep fresh. ``on_idle`` runs about
    once a second. Reconnects every second while Redis is away.
    """
    while True:
        try:
            async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(channel)
                await _maybe_await(on_subscribed())
                while True:
                    # Not pubsub.listen(): its blocking read ends with the client's socket_timeout
                    # after a few quiet seconds, dropping the feed (and the caches it keeps fresh).
                    message: Any = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        data = message.get("data")
                        await _maybe_await(on_message(data.decode() if isinstance(data, bytes) else str(data)))
                    if on_idle is not None:
                        await _maybe_await(on_idle())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("%s feed lost; retrying in 1 s", what, exc_info=True)
            await asyncio.sleep(1)


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if result is not None:
        await result
