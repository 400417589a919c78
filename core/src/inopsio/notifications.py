"""In-app notifications: any module alerts a user (or everyone in a tenant) in the web shell.

``await notify(kernel, session, title, recipient_id=user_id, body=..., link="/crm/leads/...")``
publishes a ``kernel.notification.created`` event in the caller's transaction. The shell's
notification area follows that topic over the WebSocket; the event type's row-level rule
(:func:`for_its_recipient`) passes on only notifications addressed to the reader or to everyone, in
the feed and on the socket alike, and ``GET /api/v1/me/notifications`` lists the recent ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

import msgspec

from inopsio.site_paths import is_site_path

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from inopsio.events.schemas import EventReader
    from inopsio.kernel import Kernel

NOTIFICATION_TYPE = "kernel.notification.created"
NOTIFICATION_TOPICS = frozenset({NOTIFICATION_TYPE, "kernel.notification.*"})


class Notification(msgspec.Struct, kw_only=True):
    """An alert shown in the shell: to one user (``recipient_id``) or to every member (``None``)."""

    title: str
    body: str = ""
    link: str | None = None
    level: Literal["info", "success", "warning", "error"] = "info"
    recipient_id: UUID | None = None
    module: str = "kernel"


async def notify(
    kernel: Kernel,
    session: AsyncSession,
    title: str,
    *,
    recipient_id: UUID | None = None,
    body: str = "",
    link: str | None = None,
    level: Literal["info", "success", "warning", "error"] = "info",
    module: str = "kernel",
) -> None:
    if link is not None and not is_site_path(link):
        raise ValueError("a notification's link is a path on this site (not //host, a backslash, %5c or a line break)")
    note = Notification(
        title=title[:200], body=body[:1000], link=link, level=level, recipient_id=recipient_id, module=module
    )
    await kernel.events.publish(session, NOTIFICATION_TYPE, note)


def for_its_recipient(data: Mapping[str, Any], reader: EventReader) -> bool:
    """Visible to its recipient only (to every member when it has none)."""
    if "recipient_id" not in data:
        return False  # not a notification this code wrote: show it to nobody rather than everybody
    recipient = data["recipient_id"]
    user_id = reader.user_id
    return recipient is None or (user_id is not None and str(recipient) == str(user_id))
