"""How stored rows look to operators and scripts (the ``--json`` contract of DESIGN.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from parsers.refs import format_ref
from storage.models import InboundMessage, OutboxMessage, Ticket


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def ticket_summary(ticket: Ticket) -> dict[str, Any]:
    return {
        "ref": format_ref(ticket.id),
        "state": ticket.state,
        "channel": ticket.channel,
        "subject": ticket.subject,
        "requester_name": ticket.requester_name,
        "company": ticket.company,
        "contact_email": ticket.contact_email,
        "contact_phone": ticket.contact_phone,
        "machine_model": ticket.machine_model,
        "serial": ticket.serial,
        "fault_type": ticket.fault_type,
        "language": ticket.language,
        "created_at": iso(ticket.created_at),
    }


def ticket_detail(ticket: Ticket) -> dict[str, Any]:
    detail = ticket_summary(ticket)
    detail.update(
        identity=ticket.identity,
        problem=ticket.problem,
        request=ticket.request,
        promises=ticket.promises,
        related_ref=format_ref(ticket.related_ticket_id) if ticket.related_ticket_id else None,
        messages=[
            {
                "direction": m.direction,
                "channel": m.channel,
                "sender": m.sender,
                "subject": m.subject,
                "body": m.body,
                "created_at": iso(m.created_at),
                "attachments": [
                    {"filename": a.filename, "content_type": a.content_type, "size": a.size}
                    for a in m.attachments
                ],
            }
            for m in ticket.messages
        ],
        deadlines=[
            {"kind": d.kind, "due_at": iso(d.due_at), "state": d.state} for d in ticket.deadlines
        ],
    )
    detail["attachments"] = [a for m in detail["messages"] for a in m["attachments"]]
    return detail


def inbound_summary(row: InboundMessage) -> dict[str, Any]:
    return {
        "id": row.id,
        "channel": row.channel,
        "source": row.source,
        "message_id": row.message_id,
        "size": len(row.raw),
        "received_at": iso(row.received_at),
        "state": row.state,
        "result": row.result,
        "error": row.error,
        "attempts": row.attempts,
        "processed_at": iso(row.processed_at),
    }


def outbox_summary(row: OutboxMessage) -> dict[str, Any]:
    """An outbox row as DESIGN.md names it, plus what an operator needs to act on it."""
    return {
        "id": row.id,
        "channel": row.channel,
        "to": row.to_address,
        "subject": row.subject,
        "body": row.body,
        "template": row.template,
        "language": row.language,
        "status": row.status,
        "idempotency_key": row.idempotency_key,
        "ticket_ref": format_ref(row.ticket_id) if row.ticket_id else None,
        "message_id": row.message_id,
        "attempts": row.attempts,
        "next_attempt_at": iso(row.next_attempt_at),
        "provider_id": row.provider_id,
        "delivery_status": row.delivery_status,
        "last_error": row.last_error,
        "created_at": iso(row.created_at),
        "sent_at": iso(row.sent_at),
    }
