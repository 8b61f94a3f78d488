"""The ``supportline`` command: operators' interface of DESIGN.md.

Commands build their services from the settings, do one thing, and print either a
short human summary or one JSON document (``--json``). Errors an operator can fix are
one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, selectinload

from gateway.bootstrap import (
    LOG_FORMAT,
    Services,
    build_services,
    read_settings,
    system_clock,
)
from gateway.channels.store import Stored, store_email, store_sms
from gateway.cli.views import inbound_summary, outbox_summary, ticket_detail, ticket_summary
from parsers.refs import parse_ref
from storage.models import InboundMessage, Message, OutboxMessage, PhoneFlag, Ticket
from storage.uow import unit_of_work
from workflow.clock import fixed_clock, parse_instant
from workflow.roles import STAFF_ROLES
from workflow.settings import LANGUAGES, SettingsError

# Migrations (alembic), the intake pipeline (the mail parsers) and the file importers are
# imported by the commands that use them: `serve`'s listener process runs this module
# and needs none of them (about 15 MB of its memory).
if TYPE_CHECKING:
    from parsers.roster import RowError


class Context:
    """What the global options decided; services are built on first use."""

    def __init__(self, config_path: str | None, now: str | None) -> None:
        self.config_path = config_path
        self.now = now
        self._services: Services | None = None

    @property
    def services(self) -> Services:
        if self._services is None:
            settings = read_settings(self.config_path, os.environ)
            clock = system_clock
            if self.now:
                try:
                    clock = fixed_clock(parse_instant(self.now, settings.timezone))
                except ValueError as exc:
                    raise click.BadParameter(str(exc), param_hint="--now") from None
            self._services = build_services(settings, clock)
        return self._services

    def close(self) -> None:
        if self._services is not None:
            self._services.close()


class OperatorError(click.ClickException):
    """A problem the operator can fix: one line on stderr, no traceback, exit 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"supportline: {self.format_message()}", err=True, file=file)


class SetupError(OperatorError):
    """Wrong settings or options: exit 2, like a usage error."""

    exit_code = 2


def fail(message: str, code: int = 1) -> NoReturn:
    raise (SetupError if code == 2 else OperatorError)(message)


class SupportlineGroup(click.Group):
    """Turns configuration and database failures into operator errors."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            raise SetupError(f"configuration error: {exc}") from None
        except OperationalError as exc:
            hint = "is it reachable, and upgraded with `supportline db upgrade`?"
            raise OperatorError(f"database error: {exc.orig} ({hint})") from None
        except IntegrityError as exc:  # a conflict no check above foresaw: say, not crash
            raise OperatorError(f"refused by the database, nothing changed: {exc.orig}") from None


def emit_json(document: Any) -> None:
    click.echo(json.dumps(document, ensure_ascii=False, indent=2))


def list_rows(
    ctx: Context,
    query: Select[Any],
    summary: Callable[[Any], dict[str, Any]],
    as_json: bool,
    line: Callable[[dict[str, Any]], str],
    nothing: str,
) -> None:
    """Prints the rows of ``query``: one JSON document, or one line each."""
    with session_for(ctx) as session:
        rows = [summary(row) for row in session.scalars(query)]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(line(row))
    if not rows:
        click.echo(nothing)


@contextmanager
def session_for(ctx: Context) -> Iterator[Session]:
    with unit_of_work(ctx.services.sessions) as session:
        yield session


pass_context = click.make_pass_decorator(Context)


@click.group(cls=SupportlineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="PATH", help="TOML settings file.")
@click.option(
    "--now",
    envvar="SUPPORTLINE_NOW",
    metavar="ISO8601",
    help="Fix the clock for this run (without an offset: the department's time zone).",
)
@click.pass_context
def cli(click_ctx: click.Context, config_path: str | None, now: str | None) -> None:
    """Supportline: support tickets by email and SMS, with the policy's clocks."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    ctx = Context(config_path, now)
    click_ctx.obj = ctx
    click_ctx.call_on_close(ctx.close)


@cli.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@pass_context
def db_upgrade(ctx: Context) -> None:
    """Create or migrate the schema to the newest revision."""
    from storage import migrate

    migrate.upgrade(ctx.services.engine)
    click.echo(f"database at revision {migrate.current_revision(ctx.services.engine)}")


def _report_rejection(what: str, errors: list[RowError]) -> NoReturn:
    for error in errors:
        click.echo(f"  {error}", err=True)
    fail(f"{what} refused, nothing imported: {len(errors)} error(s) above")


def _import(
    ctx: Context,
    what: str,
    rows_and_errors: tuple[list[Any], list[RowError]],
    apply: Callable[[Session, list[Any], Any], Any],
) -> None:
    from gateway.cli.imports import ImportRejected

    rows, errors = rows_and_errors
    if errors:
        _report_rejection(what, errors)
    with session_for(ctx) as session:
        try:
            counts = apply(session, rows, ctx.services.clock())
        except ImportRejected as rejected:
            _report_rejection(what, rejected.errors)
        session.commit()
    summary = ", ".join(f"{v} new {k}" for k, v in counts.details.items())
    if not summary:
        summary = f"{counts.created} created, {counts.updated} updated"
    click.echo(f"{what}: {len(rows)} row(s) imported ({summary})")


@cli.group()
def staff() -> None:
    """The department's people."""


@staff.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_context
def staff_import(ctx: Context, csv_file: Path) -> None:
    """Import name,role,email,phone,supervisor_email,language,timezone rows."""
    from gateway.cli.imports import import_staff
    from parsers.roster import parse_staff_csv

    settings = ctx.services.settings
    parsed = parse_staff_csv(
        csv_file.read_bytes(), STAFF_ROLES, LANGUAGES, settings.language, settings.timezone
    )
    _import(ctx, f"staff file {csv_file}", parsed, import_staff)


@cli.group()
def customers() -> None:
    """The customer file (客户档案)."""


@customers.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_context
def customers_import(ctx: Context, csv_file: Path) -> None:
    """Import customer,contact,email,phone,language,model,serial,shipped_on,special rows."""
    from gateway.cli.imports import import_customers
    from parsers.roster import parse_customer_csv

    parsed = parse_customer_csv(csv_file.read_bytes(), LANGUAGES)
    _import(ctx, f"customer file {csv_file}", parsed, import_customers)


@cli.group()
def tickets() -> None:
    """Intake records (电话接听处理单)."""


@tickets.command("list")
@click.option("--status", help="Only tickets in this state.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@pass_context
def tickets_list(ctx: Context, status: str | None, as_json: bool) -> None:
    """Tickets, newest first."""
    query = select(Ticket).order_by(Ticket.id.desc())
    if status:
        query = query.where(Ticket.state == status)
    list_rows(ctx, query, ticket_summary, as_json, _ticket_line, "no tickets")


def _ticket_line(row: dict[str, Any]) -> str:
    who = row["requester_name"] or row["contact_email"] or row["contact_phone"] or ""
    return f"{row['ref']}  {row['state']:<16} {row['channel']:<5} {who:<24} {row['subject']}"


@tickets.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@pass_context
def tickets_show(ctx: Context, ref: str, as_json: bool) -> None:
    """One ticket with its messages, attachments and deadlines."""
    ticket_id = parse_ref(ref)
    if ticket_id is None:
        fail(f"{ref!r} is not a ticket reference (like SL-000042)")
    with session_for(ctx) as session:
        ticket = session.get(
            Ticket,
            ticket_id,
            options=[
                selectinload(Ticket.messages).selectinload(Message.attachments),
                selectinload(Ticket.deadlines),
            ],
        )
        if ticket is None:
            fail(f"no ticket {ref}")
        detail = ticket_detail(ticket)
    if as_json:
        emit_json(detail)
        return
    for key in (
        "ref",
        "state",
        "channel",
        "subject",
        "requester_name",
        "company",
        "contact_email",
        "contact_phone",
        "machine_model",
        "serial",
        "fault_type",
        "language",
        "created_at",
    ):
        click.echo(f"{key:>15}: {detail[key] if detail[key] is not None else ''}")
    for d in detail["deadlines"]:
        click.echo(f"       deadline: {d['kind']} due {d['due_at']} ({d['state']})")
    for m in detail["messages"]:
        click.echo(f"\n--- {m['direction']} {m['channel']} {m['sender']} {m['created_at']}")
        click.echo(m["body"])
        for a in m["attachments"]:
            click.echo(f"    [attachment] {a['filename']} ({a['content_type']}, {a['size']} bytes)")


@cli.group()
def ingest() -> None:
    """Feed messages through the same pipeline as the gateways."""


@ingest.command("email")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@pass_context
def ingest_email(ctx: Context, files: tuple[Path, ...]) -> None:
    """Store and process .eml files, as if they had arrived by SMTP."""
    services = ctx.services
    failed = 0
    for path in files:
        stored = store_email(
            services.engine, path.read_bytes(), source="cli", received_at=services.clock()
        )
        result = _process_stored(ctx, stored)
        failed += result.startswith("failed")
        click.echo(f"{path}: inbound #{stored.inbound_id}: {result}")
    if failed:
        fail(f"{failed} message(s) quarantined; see `supportline inbound list --failed`")


@ingest.command("sms")
@click.option("--from", "sender", required=True, metavar="NUMBER", help="The sender's phone.")
@click.option("--body", required=True, metavar="TEXT", help="The message text.")
@click.option("--to", "to", default="", metavar="NUMBER", help="Our number it was sent to.")
@click.option("--sid", default="", help="Twilio's MessageSid; the same SID twice is one SMS.")
@pass_context
def ingest_sms(ctx: Context, sender: str, body: str, to: str, sid: str) -> None:
    """Store and process one SMS, as if Twilio had posted it to the webhook."""
    services = ctx.services
    form = {"From": sender, "To": to, "Body": body, "MessageSid": sid or f"CLI{uuid.uuid4().hex}"}
    stored = store_sms(services.engine, form, source="cli", received_at=services.clock())
    result = _process_stored(ctx, stored)
    click.echo(f"inbound #{stored.inbound_id}: {result}")
    if result.startswith("failed"):
        fail("the SMS was quarantined; see `supportline inbound list --failed`")


def _process_stored(ctx: Context, stored: Stored) -> str:
    """Processes a row this command stored; a row stored before (or taken meanwhile by a
    running ``serve``) is reported as it stands."""
    from gateway.intake.runner import NotProcessable, process_inbound
    from gateway.intake.service import build_intake

    if stored.created:
        try:
            return process_inbound(build_intake(ctx.services), stored.inbound_id).result
        except NotProcessable:
            return "processed meanwhile by the service; " + _inbound_state(ctx, stored.inbound_id)
    return "already stored; " + _inbound_state(ctx, stored.inbound_id)


def _inbound_state(ctx: Context, inbound_id: int) -> str:
    with session_for(ctx) as session:
        row = session.get_one(InboundMessage, inbound_id)
        return f"{row.state}: {row.result or ''}"


@cli.group()
def inbound() -> None:
    """Raw messages as they arrived, and what became of them."""


@inbound.command("list")
@click.option("--failed", is_flag=True, help="Only quarantined messages.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@pass_context
def inbound_list(ctx: Context, failed: bool, as_json: bool) -> None:
    """Stored inbound messages, newest first."""
    query = select(InboundMessage).order_by(InboundMessage.id.desc())
    if failed:
        query = query.where(InboundMessage.state == "failed")
    list_rows(ctx, query, inbound_summary, as_json, _inbound_line, "no inbound messages")


def _inbound_line(row: dict[str, Any]) -> str:
    outcome = row["result"] if row["state"] != "failed" else row["error"].splitlines()[0]
    return (
        f"#{row['id']:<6} {row['received_at'][:19]} {row['source']:<12} "
        f"{row['state']:<9} {outcome or ''}"
    )


@inbound.command("replay")
@click.argument("inbound_id", type=int)
@pass_context
def inbound_replay(ctx: Context, inbound_id: int) -> None:
    """Process a quarantined (or still pending) message again."""
    from gateway.intake.runner import NotProcessable, process_inbound
    from gateway.intake.service import build_intake

    try:
        outcome = process_inbound(build_intake(ctx.services), inbound_id)
    except NotProcessable as exc:
        fail(str(exc))
    click.echo(f"inbound #{inbound_id}: {outcome.result}")
    if outcome.result.startswith("failed"):
        fail("still failing; the message stays quarantined")


# --- outbox (notifier, issue 4) -------------------------------------------------------
OUTBOX_STATUSES = ("queued", "sending", "sent", "failed", "dead", "bounced")


@cli.group()
def outbox() -> None:
    """Everything the service sends, and what became of it."""


@outbox.command("list")
@click.option("--status", type=click.Choice(OUTBOX_STATUSES), help="Only rows in this state.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@pass_context
def outbox_list(ctx: Context, status: str | None, as_json: bool) -> None:
    """Outbox rows, newest first."""
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc())
    if status:
        query = query.where(OutboxMessage.status == status)
    list_rows(ctx, query, outbox_summary, as_json, _outbox_line, "no outbox rows")


def _outbox_line(row: dict[str, Any]) -> str:
    note = row["last_error"] if row["status"] != "sent" else row["provider_id"]
    return (
        f"#{row['id']:<6} {row['created_at'][:19]} {row['channel']:<5} {row['status']:<7} "
        f"{row['template']:<12} {row['to']:<28} {(note or '').splitlines()[0] if note else ''}"
    )


@outbox.command("send")
@pass_context
def outbox_send(ctx: Context) -> None:
    """Send what is due now (one pass of the dispatcher) and exit."""
    report = ctx.services.dispatcher().run_pass()
    click.echo(f"outbox: {report.summary()}")


@outbox.command("retry")
@click.argument("outbox_id", type=int)
@pass_context
def outbox_retry(ctx: Context, outbox_id: int) -> None:
    """Queue a failed, dead or waiting row again, with a fresh retry budget."""
    now = ctx.services.clock()
    with session_for(ctx) as session:
        row = session.get(OutboxMessage, outbox_id)
        if row is None:
            fail(f"no outbox row #{outbox_id}")
        if row.status in ("sent", "bounced"):
            fail(f"outbox #{outbox_id} was sent at {row.sent_at}; not sending it twice")
        if row.status == "sending" and row.lease_until and row.lease_until > now:
            fail(f"outbox #{outbox_id} is being sent right now")
        was = row.status
        if was == "sending":
            # A worker died with it: it may have left. The dispatcher asks the provider
            # before sending again (email keeps its Message-ID either way).
            row.in_doubt = True
        row.status, row.attempts, row.next_attempt_at, row.lease_until = "queued", 0, now, None
        if row.channel == "sms":  # the operator vouches for the number again
            flag = session.get(PhoneFlag, row.to_address)
            if flag is not None:
                session.delete(flag)
        session.commit()
    click.echo(f"outbox #{outbox_id} queued again (was {was}); the next dispatcher pass sends it")


@cli.command()
@pass_context
def serve(ctx: Context) -> None:
    """Run the service: SMTP, IMAP pollers, HTTP (health, Twilio), intake, outbox."""
    if ctx.now:
        fail("serve always runs on the real clock; drop --now / SUPPORTLINE_NOW", 2)
    from gateway.serving import serve as serving

    serving.run(ctx.services)


def main() -> None:
    cli.main(prog_name="supportline")


if __name__ == "__main__":
    main()
