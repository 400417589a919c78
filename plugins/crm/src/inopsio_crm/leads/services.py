"""Lead operations: every write goes through :class:`LeadService`, in the caller's transaction.

The service knows who acts (:class:`Viewer`): members see their own and unassigned leads, holders of
``crm.leads.read_all`` see all; a lead a viewer may not see answers exactly like a lead that does not
exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID, uuid5

import msgspec
from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from inopsio.db.base import utcnow
from inopsio.errors import Problem
from inopsio.identity.models import Membership
from inopsio.tenancy.schemas import TenantInfo
from inopsio_crm.access import Viewer
from inopsio_crm.events import LeadAssigned, LeadCreated, LeadMerged, LeadUpdated
from inopsio_crm.leads.duplicates import Duplicate, find_duplicates
from inopsio_crm.leads.listing import lead_out, visible_to
from inopsio_crm.leads.models import AssignmentRule, CustomField, Lead, LeadActivity, LeadImport
from inopsio_crm.leads.schemas import ActivityOut, DuplicateMatch, LeadIn, LeadPatch
from inopsio_crm.leads.validation import (
    FieldErrors,
    check_custom,
    check_money,
    clean_tags,
    default_phone_region,
    normalise_email,
    normalise_phone,
)

#: Deleted leads stay restorable this long, then the purge job removes them.
UNDO_DAYS = 30


def activity_out(activity: LeadActivity) -> ActivityOut:
    return ActivityOut(
        id=activity.id,
        lead_id=activity.lead_id,
        kind=activity.kind,
        actor_id=activity.actor_id,
        body=activity.body,
        data=dict(activity.data),
        created_at=activity.created_at,
    )


class LeadService:
    def __init__(self, kernel: Any, session: AsyncSession, tenant: TenantInfo, viewer: Viewer) -> None:
        self.kernel = kernel
        self.session = session
        self.tenant = tenant
        self.viewer = viewer

    # -- reading ---------------------------------------------------------------------------------

    def visible(self) -> list[ColumnElement[bool]]:
        return visible_to(self.viewer)

    async def get(self, lead_id: UUID, *, deleted: bool = False, for_update: bool = False) -> Lead:
        """A live lead (or, with ``deleted``, one in the bin) the viewer may see; else 404."""
        statement = select(Lead).where(Lead.id == lead_id, *self.visible())
        statement = statement.where(Lead.deleted_at.is_not(None) if deleted else Lead.deleted_at.is_(None))
        if deleted:
            statement = statement.where(Lead.merged_into_id.is_(None))
        if for_update:
            statement = statement.with_for_update().execution_options(populate_existing=True)
        lead = (await self.session.execute(statement)).scalar_one_or_none()
        if lead is None:
            raise Problem(404, "not-found", "No such lead.")
        return lead

    async def custom_fields(self) -> dict[str, CustomField]:
        rows = (await self.session.execute(select(CustomField).order_by(CustomField.position))).scalars()
        return {field.key: field for field in rows}

    async def timeline(self, lead_id: UUID) -> list[ActivityOut]:
        lead = await self.get(lead_id)
        rows = await self.session.execute(
            select(LeadActivity)
            .where(LeadActivity.lead_id == lead_id)
            .order_by(LeadActivity.created_at.desc(), LeadActivity.id.desc())
        )
        timeline = [activity_out(a) for a in rows.scalars()]
        # An imported lead has no "created" row of its own (a "created" entry here came with a lead
        # merged into it): its creation is the import's, and the oldest entry.
        if lead.import_id is not None:
            timeline.append(await self.imported_entry(lead))
        return timeline

    async def imported_entry(self, lead: Lead) -> ActivityOut:
        """An imported lead's "created" entry, from the lead and its import (no activity row is
        written per imported lead); its id is derived from the lead's, so it is the same every time."""
        assert lead.import_id is not None
        found = (
            await self.session.execute(
                select(LeadImport.created_by, LeadImport.filename).where(LeadImport.id == lead.import_id)
            )
        ).first()
        data: dict[str, Any] = {"how": "import", "import_id": str(lead.import_id)}
        if found is not None and found.filename:
            data["filename"] = found.filename
        return ActivityOut(
            id=uuid5(lead.id, "created"),
            lead_id=lead.id,
            kind="created",
            actor_id=found.created_by if found is not None else None,
            body="",
            data=data,
            created_at=lead.created_at,
        )

    # -- writing ---------------------------------------------------------------------------------

    async def require_member(self, user_id: UUID, pointer: str, errors: FieldErrors) -> None:
        found = (
            await self.session.execute(
                select(Membership.user_id).where(Membership.tenant_id == self.tenant.id, Membership.user_id == user_id)
            )
        ).first()
        if found is None:
            errors.add(pointer, "is not a member of this tenant")

    def _check_owner_change(self, owner_id: UUID | None) -> None:
        if owner_id is not None and owner_id == self.viewer.user_id:
            return
        if not self.viewer.can_assign:
            raise Problem(
                403,
                "forbidden",
                "Only members allowed to assign leads may give one to someone else.",
                permission="crm.leads.assign",
            )

    async def duplicates_of(self, lead: Lead | LeadIn, exclude: Sequence[UUID] = ()) -> list[Duplicate]:
        return await find_duplicates(
            self.session, name=lead.name, company=lead.company, email=lead.email, phone=lead.phone, exclude=exclude
        )

    def duplicate_problem(self, matches: list[Duplicate]) -> Problem:
        """409 listing the matches the viewer may see, and how many others there are."""
        visible = [m for m in matches if self.viewer.read_all or m.lead.owner_id in (None, self.viewer.user_id)]
        shown = [
            msgspec.to_builtins(DuplicateMatch(lead=lead_out(m.lead), reasons=m.reasons, score=round(m.score, 1)))
            for m in visible
        ]
        return Problem(
            409,
            "possible-duplicate",
            "This lead looks like one that exists already. Merge it, change it, or send it again with "
            "?allow_duplicate=true.",
            matches=shown,
            hidden_matches=len(matches) - len(visible),
        )

    async def create(self, data: LeadIn, *, allow_duplicate: bool = False, how: str = "manual") -> Lead:
        errors = FieldErrors()
        email = normalise_email(data.email, errors)
        phone = normalise_phone(data.phone, default_phone_region(self.tenant.settings.locale), errors)
        currency = check_money(data.estimated_value, data.currency, errors)
        custom = check_custom(await self.custom_fields(), data.custom, errors)
        if data.owner_id is not None:
            self._check_owner_change(data.owner_id)
            await self.require_member(data.owner_id, "/owner_id", errors)
        errors.raise_if_any()
        lead = Lead(
            name=data.name.strip(),
            email=email,
            phone=phone,
            company=data.company.strip(),
            title=data.title.strip(),
            source=data.source.strip(),
            status=data.status,
            owner_id=data.owner_id,
            estimated_value=data.estimated_value,
            currency=currency,
            tags=clean_tags(data.tags),
            custom=custom,
        )
        if not allow_duplicate:
            matches = await self.duplicates_of(lead)
            if matches:
                raise self.duplicate_problem(matches)
        round_robin = lead.owner_id is None and await self.next_round_robin_owner()
        if round_robin:
            lead.owner_id = round_robin
        self.session.add(lead)
        await self.session.flush()
        self.record_activity(lead.id, "created", data={"source": lead.source, "how": how})
        if data.notes.strip():
            self.record_activity(lead.id, "note", body=data.notes.strip())
        await self.kernel.events.publish(
            self.session,
            "crm.lead.created",
            LeadCreated(
                lead_id=lead.id,
                name=lead.name,
                email=lead.email,
                company=lead.company,
                source=lead.source,
                status=lead.status,
                owner_id=lead.owner_id,
            ),
        )
        if lead.owner_id is not None:
            self.record_activity(
                lead.id, "assigned", data={"owner_id": str(lead.owner_id), "how": "round_robin" if round_robin else how}
            )
            await self.kernel.events.publish(
                self.session,
                "crm.lead.assigned",
                LeadAssigned(
                    lead_id=lead.id,
                    owner_id=lead.owner_id,
                    previous_owner_id=None,
                    how="round_robin" if round_robin else how,
                ),
            )
        return lead

    async def update(self, lead_id: UUID, patch: LeadPatch, *, allow_duplicate: bool = False) -> Lead:
        lead = await self.get(lead_id, for_update=True)
        errors = FieldErrors()
        given = {f: getattr(patch, f) for f in patch.__struct_fields__ if getattr(patch, f) is not msgspec.UNSET}
        changes: dict[str, Any] = {}
        if "name" in given:
            changes["name"] = given["name"].strip()
        if "email" in given:
            changes["email"] = normalise_email(given["email"], errors)
        if "phone" in given:
            changes["phone"] = normalise_phone(
                given["phone"], default_phone_region(self.tenant.settings.locale), errors
            )
        for name in ("company", "title", "source"):
            if name in given:
                changes[name] = given[name].strip()
        if "status" in given:
            changes["status"] = given["status"]
        if "estimated_value" in given or "currency" in given:
            value = given.get("estimated_value", lead.estimated_value)
            currency = check_money(value, given.get("currency", lead.currency), errors)
            changes["estimated_value"], changes["currency"] = value, currency
        if "tags" in given:
            changes["tags"] = clean_tags(given["tags"])
        if "custom" in given:
            changes["custom"] = check_custom(await self.custom_fields(), given["custom"], errors, current=lead.custom)
        new_owner = lead.owner_id
        if "owner_id" in given and given["owner_id"] != lead.owner_id:
            new_owner = given["owner_id"]
            self._check_owner_change(new_owner)
            if new_owner is not None:
                await self.require_member(new_owner, "/owner_id", errors)
        errors.raise_if_any()
        changed = sorted(k for k, v in changes.items() if getattr(lead, k) != v)
        if not allow_duplicate and {"name", "company", "email", "phone"} & set(changed):
            probe = Lead(**{**{k: getattr(lead, k) for k in ("name", "company", "email", "phone")}, **changes})
            matches = await self.duplicates_of(probe, exclude=[lead.id])
            if matches:
                raise self.duplicate_problem(matches)
        old_status = lead.status
        for name in changed:
            setattr(lead, name, changes[name])
        if "status" in changed:
            self.record_activity(lead.id, "status_changed", data={"from": old_status, "to": lead.status})
        other = [c for c in changed if c != "status"]
        if other:
            self.record_activity(lead.id, "updated", data={"fields": other})
        if changed:
            lead.updated_at = utcnow()
            await self.kernel.events.publish(
                self.session,
                "crm.lead.updated",
                LeadUpdated(lead_id=lead.id, changed=changed, status=lead.status, owner_id=new_owner),
            )
        if new_owner != lead.owner_id:
            await self._set_owner(lead, new_owner, "manual")
        await self.session.flush()
        return lead

    async def add_note(self, lead_id: UUID, body: str) -> LeadActivity:
        lead = await self.get(lead_id)
        activity = self.record_activity(lead.id, "note", body=body.strip())
        await self.session.flush()
        return activity

    def record_activity(
        self, lead_id: UUID, kind: str, *, body: str = "", data: dict[str, Any] | None = None
    ) -> LeadActivity:
        activity = LeadActivity(lead_id=lead_id, kind=kind, actor_id=self.viewer.user_id, body=body, data=data or {})
        self.session.add(activity)
        return activity

    # -- bin -------------------------------------------------------------------------------------

    async def delete(self, lead_id: UUID) -> Lead:
        lead = await self.get(lead_id, for_update=True)
        lead.deleted_at = utcnow()
        await self.session.flush()
        return lead

    async def restore(self, lead_id: UUID) -> Lead:
        lead = await self.get(lead_id, deleted=True, for_update=True)
        lead.deleted_at = None
        self.record_activity(lead.id, "restored")
        await self.session.flush()
        return lead

    # -- merging ---------------------------------------------------------------------------------

    async def merge(self, survivor_id: UUID, duplicate_id: UUID) -> Lead:
        """Fold ``duplicate_id`` into ``survivor_id``: empty fields filled, tags and custom values joined,
        the timeline moved; the duplicate is kept (deleted, ``merged_into_id`` set) so links to it resolve."""
        if survivor_id == duplicate_id:
            raise Problem(
                422,
                "invalid-merge",
                "A lead cannot be merged into itself.",
                errors=[{"pointer": "/duplicate_id", "detail": "same as the surviving lead"}],
            )
        survivor = await self.get(survivor_id, for_update=True)
        try:
            duplicate = await self.get(duplicate_id, for_update=True)
        except Problem:
            raise Problem(
                422,
                "invalid-merge",
                "There is no such lead to merge.",
                errors=[{"pointer": "/duplicate_id", "detail": "no such lead"}],
            ) from None
        filled = []
        for name in ("email", "phone", "company", "title", "source", "owner_id"):
            if not getattr(survivor, name) and getattr(duplicate, name):
                setattr(survivor, name, getattr(duplicate, name))
                filled.append(name)
        if survivor.estimated_value is None and duplicate.estimated_value is not None:
            survivor.estimated_value, survivor.currency = duplicate.estimated_value, duplicate.currency
            filled.append("estimated_value")
        survivor.tags = clean_tags([*survivor.tags, *duplicate.tags])
        survivor.custom = {**duplicate.custom, **survivor.custom}
        survivor.updated_at = utcnow()
        await self.session.execute(
            update(LeadActivity).where(LeadActivity.lead_id == duplicate.id).values(lead_id=survivor.id)
        )
        duplicate.deleted_at = utcnow()
        duplicate.merged_into_id = survivor.id
        self.record_activity(
            survivor.id,
            "merged",
            body=f"Merged {duplicate.name}" + (f" ({duplicate.email})" if duplicate.email else ""),
            data={"merged_id": str(duplicate.id), "filled": filled, "merged_lead": _snapshot(duplicate)},
        )
        await self.session.flush()
        await self.kernel.events.publish(
            self.session,
            "crm.lead.merged",
            LeadMerged(survivor_id=survivor.id, merged_id=duplicate.id, owner_id=survivor.owner_id),
        )
        return survivor

    # -- assignment ------------------------------------------------------------------------------

    async def assign(self, lead_id: UUID, owner_id: UUID | None, how: str = "manual") -> Lead:
        lead = await self.get(lead_id, for_update=True)
        errors = FieldErrors()
        if owner_id is not None:
            await self.require_member(owner_id, "/owner_id", errors)
        errors.raise_if_any()
        if lead.owner_id != owner_id:
            await self._set_owner(lead, owner_id, how)
        return lead

    async def bulk_assign(self, lead_ids: Sequence[UUID], owner_id: UUID | None) -> int:
        """Assign every listed lead, or none: an unknown id fails the whole request."""
        errors = FieldErrors()
        if owner_id is not None:
            await self.require_member(owner_id, "/owner_id", errors)
        errors.raise_if_any()
        unique = list(dict.fromkeys(lead_ids))
        leads = list(
            (
                await self.session.execute(
                    select(Lead)
                    .where(Lead.id.in_(unique), Lead.deleted_at.is_(None), *self.visible())
                    .order_by(Lead.id)
                    .with_for_update()
                    .execution_options(populate_existing=True)
                )
            ).scalars()
        )
        missing = set(unique) - {lead.id for lead in leads}
        if missing:
            raise Problem(
                422,
                "invalid-leads",
                "Some leads do not exist; nothing was assigned.",
                errors=[
                    {"pointer": f"/lead_ids/{i}", "detail": "no such lead"}
                    for i, lead_id in enumerate(lead_ids)
                    if lead_id in missing
                ],
            )
        changed = 0
        for lead in leads:
            if lead.owner_id != owner_id:
                await self._set_owner(lead, owner_id, "bulk")
                changed += 1
        return changed

    async def _set_owner(self, lead: Lead, owner_id: UUID | None, how: str) -> None:
        previous = lead.owner_id
        lead.owner_id = owner_id
        lead.updated_at = utcnow()
        self.record_activity(
            lead.id,
            "assigned",
            data={
                "owner_id": str(owner_id) if owner_id else None,
                "previous_owner_id": str(previous) if previous else None,
                "how": how,
            },
        )
        await self.session.flush()
        await self.kernel.events.publish(
            self.session,
            "crm.lead.assigned",
            LeadAssigned(lead_id=lead.id, owner_id=owner_id, previous_owner_id=previous, how=how),
        )

    async def next_round_robin_owner(self) -> UUID | None:
        """The member whose turn it is (and advance the turn), when the tenant's rule is on."""
        rule = (
            await self.session.execute(
                select(AssignmentRule).with_for_update().execution_options(populate_existing=True)
            )
        ).scalar_one_or_none()
        if rule is None or not rule.enabled or not rule.member_ids:
            return None
        # Skip members who have left since the rule was written.
        members = {
            str(m)
            for m in (
                await self.session.execute(select(Membership.user_id).where(Membership.tenant_id == self.tenant.id))
            ).scalars()
        }
        for step in range(len(rule.member_ids)):
            index = (rule.next_index + step) % len(rule.member_ids)
            candidate = rule.member_ids[index]
            if candidate in members:
                rule.next_index = (index + 1) % len(rule.member_ids)
                return UUID(candidate)
        return None


def _snapshot(lead: Lead) -> dict[str, Any]:
    """What the merged lead held, kept in the survivor's timeline."""
    return msgspec.to_builtins(lead_out(lead))
