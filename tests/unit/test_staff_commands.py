"""Staff commands decided: who may, on which ticket, what changes and who is told."""

from __future__ import annotations

import inspect
from dataclasses import fields, replace
from datetime import UTC, date, datetime, timedelta
from typing import get_args

import pytest

from parsers.refs import format_ref
from parsers.sms_commands import (
    Ack,
    SmsCommand,
    Verb,
    parse_sms,
    usage_text,
)
from workflow.calendar import build_calendar
from workflow.commands.base import (
    CheckInView,
    CommandOutcome,
    CommandResult,
    Facts,
    Inbound,
    Refusal,
    Rules,
    StaffView,
    TicketView,
    TripView,
)
from workflow.commands.sms import (
    COMMANDS,
    SmsRoute,
    consent_keyword,
    route_sms,
    run_command,
    unrecognised_text,
    usage_reply,
)
from workflow.commands.tickets import (
    accept_ticket,
    assign_ticket,
    confirm_ticket,
    escalate_ticket,
    resolve_ticket,
)
from workflow.commands.trips import (
    acknowledge_checkins,
    record_arrival,
    record_checkin,
    report_eta,
    resolve_eta,
)
from workflow.reach import sms_or_email
from workflow.settings import PolicySettings
from workflow.tickets import DeadlineKind, Notification, TicketState

RULES = Rules(build_calendar(), PolicySettings())
# Wednesday 2026-11-25, 10:00 in Shanghai: a working day, inside business hours.
NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
TODAY = date(2026, 11, 25)

WANG = StaffView(1, "王强", "engineer", "zh-CN", phone="+8613800000001", email="wq@ex.cn",
                 supervisor_id=3)  # fmt: skip
LI = StaffView(2, "Li Na", "engineer", "en", phone="+8613800000002", email="ln@ex.cn",
               supervisor_id=3)  # fmt: skip
ZHANG = StaffView(3, "张主管", "supervisor", "zh-CN", phone="+8613800000003", email="z@ex.cn")
MA = StaffView(4, "马经理", "manager", "zh-CN", phone="+8613800000004", email="m@ex.cn")
SUN = StaffView(5, "Sun Supervisor", "supervisor", "en", phone="+8613800000005")
SALES = StaffView(6, "赵销售", "sales_assistant", "zh-CN", phone="+8613800000006")
STAFF = (WANG, LI, ZHANG, MA, SUN, SALES)


def ticket(ticket_id: int, state: TicketState, **kw: object) -> TicketView:
    fields: dict[str, object] = {"engineer_id": WANG.id, "supervisor_id": ZHANG.id} | kw
    return TicketView(ticket_id, format_ref(ticket_id), state, **fields)  # type: ignore[arg-type]


def trip(trip_id: int, ticket_id: int, engineer: StaffView = WANG, **kw: object) -> TripView:
    fields: dict[str, object] = {
        "starts_on": TODAY - timedelta(days=1), "ends_on": TODAY + timedelta(days=2),
        "supervisor_id": ZHANG.id,
    } | kw  # fmt: skip
    return TripView(trip_id, ticket_id, format_ref(ticket_id), engineer.id, **fields)  # type: ignore[arg-type]


def inbound(sender: StaffView, now: datetime = NOW, key: str = "sms:100") -> Inbound:
    return Inbound(sender, now, key)


def assert_refused(result: CommandResult, reason: Refusal) -> None:
    """A refusal changes nothing and still answers the sender."""
    assert result.outcome is CommandOutcome.REFUSED
    assert result.refusal is reason
    assert result.decision is None and result.checkin is None and result.acknowledgement is None
    assert result.reply is not None and result.reply.template == "sms_refused"
    assert result.reply.context["reason"] == reason.value


# -- ACCEPT ---------------------------------------------------------------------------------


def test_accept_starts_handling_and_stops_triage() -> None:
    facts = Facts(tickets=(ticket(42, TicketState.ASSIGNED),), staff=STAFF)
    result = accept_ticket(inbound(WANG), facts, RULES, 42)
    assert result.outcome is CommandOutcome.APPLIED and result.ticket_id == 42
    assert result.decision is not None
    assert result.decision.state is TicketState.ACCEPTED
    assert DeadlineKind.TRIAGE in result.decision.stop
    (handling,) = result.decision.start
    assert handling.kind is DeadlineKind.HANDLING
    assert handling.due_at == datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # 14:00 local, 4 h on
    assert result.reply is not None
    assert (result.reply.channel, result.reply.recipient) == ("sms", WANG.phone)
    assert result.reply.template == "sms_reply_accepted" and result.reply.language == "zh-CN"
    assert result.reply.context["ref"] == "SL-000042"
    assert result.reply.context["due_local"] == "2026-11-25 14:00"


def test_accept_of_a_new_ticket_makes_the_engineer_its_first_receiver() -> None:
    facts = Facts(tickets=(ticket(7, TicketState.NEW, engineer_id=None, owner_id=None),))
    result = accept_ticket(inbound(WANG), facts, RULES, 7)
    assert result.ticket_update is not None
    assert (result.ticket_update.engineer_id, result.ticket_update.owner_id) == (1, 1)


def test_accept_without_ref_takes_the_only_assigned_ticket_and_asks_when_there_are_two() -> None:
    one = Facts(tickets=(ticket(42, TicketState.ASSIGNED), ticket(43, TicketState.ACCEPTED)))
    assert accept_ticket(inbound(WANG), one, RULES, None).ticket_id == 42

    two = Facts(tickets=(ticket(42, TicketState.ASSIGNED), ticket(44, TicketState.ASSIGNED)))
    result = accept_ticket(inbound(WANG), two, RULES, None)
    assert_refused(result, Refusal.AMBIGUOUS_TICKET)
    assert result.reply is not None
    assert result.reply.context["refs"] == ["SL-000042", "SL-000044"]

    assert_refused(accept_ticket(inbound(WANG), Facts(), RULES, None), Refusal.NO_TICKET)


def test_accept_refuses_the_wrong_person_and_the_wrong_ticket() -> None:
    facts = Facts(tickets=(ticket(42, TicketState.ASSIGNED), ticket(50, TicketState.RESOLVED)))
    assert_refused(accept_ticket(inbound(ZHANG), facts, RULES, 42), Refusal.WRONG_ROLE)
    assert_refused(accept_ticket(inbound(SALES), facts, RULES, 42), Refusal.WRONG_ROLE)
    assert_refused(accept_ticket(inbound(LI), facts, RULES, 42), Refusal.NOT_YOURS)
    assert_refused(accept_ticket(inbound(WANG), facts, RULES, 99), Refusal.UNKNOWN_TICKET)
    result = accept_ticket(inbound(WANG), facts, RULES, 50)
    assert_refused(result, Refusal.WRONG_STATE)
    assert result.reply is not None and result.reply.context["state"] == "resolved"


def test_a_command_by_email_is_answered_by_email() -> None:
    facts = Facts(tickets=(ticket(42, TicketState.ASSIGNED),))
    result = accept_ticket(Inbound(WANG, NOW, "email:5", channel="email"), facts, RULES, 42)
    assert result.reply is not None
    assert (result.reply.channel, result.reply.recipient) == ("email", "wq@ex.cn")


def test_an_english_speaker_is_answered_in_english() -> None:
    facts = Facts(tickets=(ticket(42, TicketState.ASSIGNED, engineer_id=LI.id),))
    result = accept_ticket(inbound(LI), facts, RULES, 42)
    assert result.reply is not None and result.reply.language == "en"
    refused = accept_ticket(inbound(LI), facts, RULES, 99)
    assert refused.reply is not None and refused.reply.language == "en"


# -- DONE, CONFIRM, ESCALATE, ASSIGN --------------------------------------------------------------


def test_done_resolves_and_asks_the_supervisor_to_confirm_by_the_next_business_day() -> None:
    friday_5pm = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # 17:00 in Shanghai
    facts = Facts(tickets=(ticket(42, TicketState.ONSITE),), trips=(trip(8, 42),), staff=STAFF)
    result = resolve_ticket(inbound(WANG, friday_5pm), facts, RULES, None, "更换定影器")
    assert result.decision is not None
    assert result.decision.state is TicketState.RESOLVED
    assert DeadlineKind.HANDLING in result.decision.stop
    (confirmation,) = result.decision.start
    assert confirmation.kind is DeadlineKind.CONFIRMATION
    assert confirmation.due_at == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # Monday 17:00
    (to_supervisor,) = result.decision.notify
    assert (to_supervisor.recipient, to_supervisor.template) == (ZHANG.phone, "ticket_resolved")
    assert to_supervisor.context["summary"] == "更换定影器"
    assert result.trip_update is not None and result.trip_update.state == "completed"
    assert result.ticket_update is not None and result.ticket_update.resolved_at == friday_5pm


def test_done_on_someone_elses_ticket_is_refused() -> None:
    facts = Facts(tickets=(ticket(42, TicketState.ACCEPTED),), staff=STAFF)
    assert_refused(resolve_ticket(inbound(LI), facts, RULES, 42, "x"), Refusal.NOT_YOURS)
    assert_refused(resolve_ticket(inbound(ZHANG), facts, RULES, 42, "x"), Refusal.WRONG_ROLE)


def test_confirm_by_the_supervisor_stops_the_confirmation_clock() -> None:
    facts = Facts(tickets=(ticket(42, TicketState.RESOLVED),), staff=STAFF)
    result = confirm_ticket(inbound(ZHANG), facts, RULES, None)
    assert result.decision is not None
    assert result.decision.state is TicketState.CONFIRMED
    assert result.decision.stop == (DeadlineKind.CONFIRMATION,)
    assert result.ticket_update is not None and result.ticket_update.confirmed_at == NOW
    # A manager may confirm any ticket; another supervisor may not confirm Zhang's.
    assert confirm_ticket(inbound(MA), facts, RULES, 42).outcome is CommandOutcome.APPLIED
    assert_refused(confirm_ticket(inbound(SUN), facts, RULES, 42), Refusal.NOT_YOURS)
    assert_refused(confirm_ticket(inbound(WANG), facts, RULES, 42), Refusal.WRONG_ROLE)


def test_confirm_of_an_unresolved_ticket_is_refused() -> None:
    facts = Facts(tickets=(ticket(42, TicketState.ACCEPTED),))
    assert_refused(confirm_ticket(inbound(ZHANG), facts, RULES, 42), Refusal.WRONG_STATE)


def test_escalate_tells_the_supervisor_why() -> None:
    facts = Facts(tickets=(ticket(42, TicketState.ACCEPTED, supervisor_id=None),), staff=STAFF)
    result = escalate_ticket(inbound(WANG), facts, RULES, 42, "缺少主板")
    assert result.decision is not None
    assert result.decision.state is TicketState.ESCALATED
    assert result.decision.stop == (DeadlineKind.HANDLING,)
    (note,) = result.decision.notify
    assert (note.recipient, note.template, note.context["reason"]) == (
        ZHANG.phone, "ticket_escalated", "缺少主板",
    )  # fmt: skip
    assert result.ticket_update is not None and result.ticket_update.supervisor_id == ZHANG.id


@pytest.mark.parametrize(
    ("name", "phone"), [("王强", None), ("王", None), ("+8613800000001", "+8613800000001")]
)
def test_assign_by_name_or_phone_tells_the_engineer(name: str, phone: str | None) -> None:
    facts = Facts(tickets=(ticket(42, TicketState.ESCALATED, engineer_id=None),), staff=STAFF)
    result = assign_ticket(inbound(ZHANG), facts, RULES, 42, name, phone)
    assert result.decision is not None
    assert result.decision.state is TicketState.ASSIGNED
    assert result.ticket_update is not None and result.ticket_update.engineer_id == WANG.id
    (note,) = result.decision.notify
    assert (note.recipient, note.template) == (WANG.phone, "ticket_assigned")
    assert note.language == "zh-CN" and note.context["supervisor_name"] == "张主管"


def test_assign_refuses_unknown_and_ambiguous_engineers_and_the_wrong_person() -> None:
    wang_li = StaffView(7, "王丽", "engineer", "zh-CN", phone="+8613800000007")
    new = Facts(tickets=(ticket(42, TicketState.NEW, engineer_id=None),), staff=(*STAFF, wang_li))
    zhang = inbound(ZHANG)
    assert_refused(assign_ticket(zhang, new, RULES, 42, "王"), Refusal.AMBIGUOUS_ENGINEER)
    assert_refused(assign_ticket(zhang, new, RULES, 42, "陈"), Refusal.UNKNOWN_ENGINEER)
    # A sales assistant is not an engineer, even if named exactly.
    assert_refused(assign_ticket(zhang, new, RULES, 42, "赵销售"), Refusal.UNKNOWN_ENGINEER)
    assert_refused(assign_ticket(inbound(WANG), new, RULES, 42, "王强"), Refusal.WRONG_ROLE)
    accepted = Facts(tickets=(ticket(42, TicketState.ACCEPTED),), staff=STAFF)
    assert_refused(assign_ticket(zhang, accepted, RULES, 42, "王强"), Refusal.ALREADY_ASSIGNED)


# -- trips: ARRIVED, ETA ------------------------------------------------------------------------


def test_arrival_is_recorded_and_reported_to_the_supervisor_first() -> None:
    facts = Facts(tickets=(ticket(42, TicketState.ACCEPTED),), trips=(trip(8, 42),), staff=STAFF)
    result = record_arrival(inbound(WANG), facts, RULES, None)
    assert result.decision is not None
    assert result.decision.state is TicketState.ONSITE
    assert result.trip_update is not None
    assert (result.trip_update.trip_id, result.trip_update.arrived_at) == (8, NOW)
    (relay,) = result.decision.notify
    assert (relay.recipient, relay.template) == (ZHANG.phone, "arrival_relay")
    assert relay.context["at_local"] == "2026-11-25 10:00"


def test_arrival_with_two_trips_today_asks_which() -> None:
    facts = Facts(
        tickets=(ticket(42, TicketState.ACCEPTED), ticket(43, TicketState.ACCEPTED)),
        trips=(trip(8, 42), trip(9, 43)),
    )
    result = record_arrival(inbound(WANG), facts, RULES, None)
    assert_refused(result, Refusal.AMBIGUOUS_TICKET)
    assert result.reply is not None
    assert result.reply.context["refs"] == ["SL-000042", "SL-000043"]
    assert record_arrival(inbound(WANG), facts, RULES, 43).ticket_id == 43


def test_arrival_without_a_trip_is_refused() -> None:
    facts = Facts(tickets=(ticket(42, TicketState.ACCEPTED),))
    assert_refused(record_arrival(inbound(WANG), facts, RULES, None), Refusal.NOT_ON_TRIP)
    assert_refused(record_arrival(inbound(WANG), facts, RULES, 42), Refusal.NOT_ON_TRIP)
    assert_refused(record_arrival(inbound(LI), facts, RULES, 42), Refusal.NOT_YOURS)


def test_eta_is_resolved_in_the_engineers_zone_and_the_customer_is_told() -> None:
    facts = Facts(
        tickets=(ticket(42, TicketState.ACCEPTED, contact_phone="+8613911112222"),),
        trips=(trip(8, 42, starts_on=TODAY + timedelta(days=1)),),
    )
    result = report_eta(inbound(WANG), facts, RULES, None, "明天10点", (1, 10, 0))
    eta = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)  # 10:00 tomorrow in Shanghai
    assert result.trip_update is not None and result.trip_update.eta == eta
    assert result.decision is not None
    assert result.decision.state is TicketState.ACCEPTED  # an ETA changes no state
    (to_customer,) = result.decision.notify
    assert (to_customer.channel, to_customer.recipient) == ("sms", "+8613911112222")
    assert to_customer.context["eta_local"] == "2026-11-26 10:00"


def test_eta_that_names_no_time_is_sent_back() -> None:
    facts = Facts(tickets=(ticket(42, TicketState.ACCEPTED),), trips=(trip(8, 42),))
    result = report_eta(inbound(WANG), facts, RULES, 42, "soon", None)
    assert_refused(result, Refusal.NO_TIME)
    assert result.reply is not None and result.reply.context["when_text"] == "soon"


@pytest.mark.parametrize(
    ("at", "after", "expected"),
    [
        ((None, 9, 0), None, datetime(2026, 11, 26, 1, 0, tzinfo=UTC)),  # 09:00 at 22:00: tomorrow
        ((None, 21, 30), None, datetime(2026, 11, 25, 13, 30, tzinfo=UTC)),  # a little late
        ((0, 23, 0), None, datetime(2026, 11, 25, 15, 0, tzinfo=UTC)),
        (None, timedelta(hours=2), datetime(2026, 11, 25, 16, 0, tzinfo=UTC)),
        (None, None, None),
        ((None, 24, 0), None, None),  # only the SMS parser checks the hour; an email may not
    ],
)
def test_resolve_eta_from_a_message_sent_at_22_local(
    at: tuple[int | None, int, int] | None, after: timedelta | None, expected: datetime | None
) -> None:
    at_ten_pm = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
    assert resolve_eta(at_ten_pm, "Asia/Shanghai", at, after) == expected


# -- check-ins ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("utc", "expected_day"),
    [
        (datetime(2026, 11, 25, 15, 30, tzinfo=UTC), date(2026, 11, 25)),  # 23:30 local
        (datetime(2026, 11, 25, 16, 30, tzinfo=UTC), date(2026, 11, 26)),  # 00:30 local
    ],
)
def test_checkin_is_for_the_engineers_local_date(utc: datetime, expected_day: date) -> None:
    facts = Facts(trips=(trip(8, 42),), staff=STAFF)
    result = record_checkin(inbound(WANG, utc), facts, RULES, "今天更换定影器")
    assert result.checkin is not None and result.checkin.local_date == expected_day


def test_checkin_is_stored_relayed_and_starts_the_supervisors_reply_clock() -> None:
    facts = Facts(trips=(trip(8, 42),), staff=STAFF)
    result = record_checkin(inbound(WANG), facts, RULES, "今天更换定影器，明天调试😀 <&>")
    checkin = result.checkin
    assert checkin is not None
    assert (checkin.checkin_id, checkin.trip_id, checkin.engineer_id) == (None, 8, WANG.id)
    assert checkin.body == "今天更换定影器，明天调试😀 <&>"
    assert checkin.relayed_to_id == ZHANG.id and checkin.relayed_at == NOW
    assert checkin.reply_clock is not None
    assert checkin.reply_clock.kind is DeadlineKind.SUPERVISOR_REPLY
    assert checkin.reply_clock.due_at == NOW + timedelta(hours=2)
    (relay,) = result.notify
    assert (relay.channel, relay.recipient, relay.template) == ("sms", ZHANG.phone, "checkin_relay")
    assert relay.context["text"] == "今天更换定影器，明天调试😀 <&>"
    assert relay.context["engineer_name"] == "王强" and relay.context["ref"] == "SL-000042"
    assert result.reply is not None and result.reply.template == "sms_reply_checkin"


def test_a_second_checkin_the_same_day_updates_that_days_row() -> None:
    earlier = CheckInView(31, 8, 42, WANG.id, TODAY, "上午：拆机检查", ZHANG.id, acknowledged=True)
    facts = Facts(trips=(trip(8, 42),), checkins=(earlier,), staff=STAFF)
    later = NOW + timedelta(hours=6)
    result = record_checkin(inbound(WANG, later, "sms:101"), facts, RULES, "下午：更换主板")
    assert result.checkin is not None
    assert result.checkin.checkin_id == 31
    assert result.checkin.body == "上午：拆机检查\n下午：更换主板"
    (relay,) = result.notify
    assert relay.context["update"] is True and relay.context["text"] == "下午：更换主板"


def test_checkin_outside_a_trip_is_refused() -> None:
    yesterday = TODAY - timedelta(days=1)
    ended = Facts(trips=(trip(8, 42, starts_on=yesterday - timedelta(days=2), ends_on=yesterday),))
    assert_refused(record_checkin(inbound(WANG), ended, RULES, "x"), Refusal.NOT_ON_TRIP)
    completed = Facts(trips=(trip(8, 42, state="completed"),))
    assert_refused(record_checkin(inbound(WANG), completed, RULES, "x"), Refusal.NOT_ON_TRIP)
    on_trip = Facts(trips=(trip(8, 42),))
    assert_refused(record_checkin(inbound(ZHANG), on_trip, RULES, "x"), Refusal.WRONG_ROLE)


def test_free_text_is_a_checkin_only_for_an_engineer_on_a_trip() -> None:
    usage = usage_text("engineer", "zh-CN")
    on_trip = Facts(trips=(trip(8, 42),), staff=STAFF)
    result = unrecognised_text(inbound(WANG), on_trip, RULES, "客户现场调试中", usage)
    assert result.checkin is not None and result.checkin.body == "客户现场调试中"

    at_home = unrecognised_text(inbound(WANG), Facts(staff=STAFF), RULES, "客户现场调试中", usage)
    assert at_home.outcome is CommandOutcome.REPLIED and at_home.checkin is None
    assert at_home.reply is not None and at_home.reply.template == "sms_usage"
    assert at_home.reply.context["usage"] == usage

    supervisor = unrecognised_text(inbound(ZHANG), on_trip, RULES, "今天开会", "…")
    assert supervisor.reply is not None and supervisor.reply.template == "sms_usage"


# -- acknowledgements ---------------------------------------------------------------------------


def _pending() -> tuple[CheckInView, ...]:
    return (
        CheckInView(31, 8, 42, WANG.id, TODAY, "拆机", relayed_to_id=ZHANG.id),
        CheckInView(32, 9, 43, LI.id, TODAY, "replaced", relayed_to_id=ZHANG.id),
        CheckInView(30, 8, 42, WANG.id, TODAY - timedelta(days=1), "到达", relayed_to_id=ZHANG.id),
        CheckInView(29, 8, 42, WANG.id, TODAY - timedelta(days=2), "出发", ZHANG.id, True),
        CheckInView(33, 10, 44, 8, TODAY, "other team", relayed_to_id=SUN.id),
    )


def test_ok_acknowledges_every_unanswered_checkin_relayed_to_the_supervisor() -> None:
    facts = Facts(checkins=_pending(), staff=STAFF)
    result = acknowledge_checkins(inbound(ZHANG), facts, RULES, None, "")
    assert result.acknowledgement is not None
    assert result.acknowledgement.checkin_ids == (30, 31, 32)
    assert result.acknowledgement.by_id == ZHANG.id
    assert result.acknowledgement.stops == (DeadlineKind.SUPERVISOR_REPLY,)
    # Each engineer is told once, in their own language, about each day answered.
    told = {n.recipient: n for n in result.notify}
    wang, li = told["+8613800000001"], told["+8613800000002"]
    assert len(told) == 2
    assert wang.context["dates"] == ["2026-11-24", "2026-11-25"]
    assert wang.template == "checkin_acknowledged" and wang.language == "zh-CN"
    assert li.language == "en"
    assert result.reply is not None and result.reply.context["count"] == 3


def test_ok_with_a_name_acknowledges_only_that_engineer() -> None:
    facts = Facts(checkins=_pending(), staff=STAFF)
    result = acknowledge_checkins(inbound(ZHANG), facts, RULES, None, "王强 注意安全")
    assert result.acknowledgement is not None
    assert result.acknowledgement.checkin_ids == (30, 31)
    (note,) = result.notify
    assert note.recipient == WANG.phone and note.context["remark"] == "注意安全"

    by_ref = acknowledge_checkins(inbound(ZHANG), facts, RULES, 43, "")
    assert by_ref.acknowledgement is not None and by_ref.acknowledgement.checkin_ids == (32,)


def test_a_remark_that_names_no_one_acknowledges_all_and_is_passed_on() -> None:
    facts = Facts(checkins=_pending(), staff=STAFF)
    result = acknowledge_checkins(inbound(ZHANG), facts, RULES, None, "辛苦了")
    assert result.acknowledgement is not None
    assert result.acknowledgement.checkin_ids == (30, 31, 32)
    assert {n.context["remark"] for n in result.notify} == {"辛苦了"}


def test_nothing_to_acknowledge_is_said_so() -> None:
    facts = Facts(checkins=_pending(), staff=STAFF)
    answered = Facts(checkins=_pending()[3:4], staff=STAFF)
    assert_refused(
        acknowledge_checkins(inbound(ZHANG), answered, RULES, None, ""),
        Refusal.NOTHING_TO_ACKNOWLEDGE,
    )
    # Li Na's check-ins were relayed to Zhang, not to Sun.
    assert_refused(
        acknowledge_checkins(inbound(SUN), facts, RULES, None, "Li Na"),
        Refusal.NOTHING_TO_ACKNOWLEDGE,
    )


def test_a_manager_naming_an_engineer_may_answer_for_an_absent_supervisor() -> None:
    facts = Facts(checkins=_pending(), staff=STAFF)
    result = acknowledge_checkins(inbound(MA), facts, RULES, None, "Li Na")
    assert result.acknowledgement is not None and result.acknowledgement.checkin_ids == (32,)
    # Without a name, only what was relayed to the manager: nothing.
    assert_refused(
        acknowledge_checkins(inbound(MA), facts, RULES, None, ""), Refusal.NOTHING_TO_ACKNOWLEDGE
    )


def test_an_engineers_ok_acknowledges_nothing() -> None:
    facts = Facts(checkins=_pending(), staff=STAFF)
    assert_refused(acknowledge_checkins(inbound(WANG), facts, RULES, None, ""), Refusal.WRONG_ROLE)


# -- from the text to the decision, as the webhook will do it -----------------------------------


def dispatch(text: str, sender: StaffView, facts: Facts, now: datetime = NOW) -> CommandResult:
    """Runs an SMS text the way the webhook does: parsed, then the workflow function."""
    usage = usage_text(sender.role, sender.language)
    return run_command(parse_sms(text), inbound(sender, now), facts, RULES, usage)


@pytest.mark.parametrize(
    ("text", "sender", "before", "after"),
    [
        ("接单 SL-000042", WANG, TicketState.ASSIGNED, TicketState.ACCEPTED),
        ("ＡＣＣＥＰＴ　ＳＬ－０００４２", WANG, TicketState.ASSIGNED, TicketState.ACCEPTED),
        ("accept", WANG, TicketState.ASSIGNED, TicketState.ACCEPTED),
        ("完成：SL-42 更换定影器", WANG, TicketState.ACCEPTED, TicketState.RESOLVED),
        ("DONE replaced the fuser", WANG, TicketState.ONSITE, TicketState.RESOLVED),
        ("上报 SL-42 缺配件", WANG, TicketState.ACCEPTED, TicketState.ESCALATED),
        ("escalate need a board", WANG, TicketState.ACCEPTED, TicketState.ESCALATED),
        ("到达", WANG, TicketState.ACCEPTED, TicketState.ONSITE),
        ("ARRIVED SL-42", WANG, TicketState.ACCEPTED, TicketState.ONSITE),
        ("预计：SL-42 明天上午10点", WANG, TicketState.ACCEPTED, TicketState.ACCEPTED),
        ("ETA +2h", WANG, TicketState.ACCEPTED, TicketState.ACCEPTED),
        ("派 SL-42 Li Na", ZHANG, TicketState.ESCALATED, TicketState.ASSIGNED),
        ("ASSIGN SL-42 王强", MA, TicketState.NEW, TicketState.ASSIGNED),
        ("确认SL-42", ZHANG, TicketState.RESOLVED, TicketState.CONFIRMED),
        ("confirm", ZHANG, TicketState.RESOLVED, TicketState.CONFIRMED),
    ],
)
def test_commands_from_the_right_person_change_the_ticket(
    text: str, sender: StaffView, before: TicketState, after: TicketState
) -> None:
    engineer = None if before in (TicketState.NEW, TicketState.ESCALATED) else WANG.id
    facts = Facts(
        tickets=(ticket(42, before, engineer_id=engineer),),
        trips=(trip(8, 42, starts_on=TODAY),),
        staff=STAFF,
    )
    result = dispatch(text, sender, facts)
    assert result.outcome is CommandOutcome.APPLIED, result
    assert result.decision is not None and result.decision.state is after
    assert result.reply is not None and result.reply.recipient == sender.phone


@pytest.mark.parametrize(
    ("text", "sender"),
    [
        ("接单 SL-42", ZHANG), ("ACCEPT SL-42", SALES), ("完成 SL-42 好了", LI),
        ("签到 在路上", ZHANG), ("收到", WANG), ("OK", LI), ("派 SL-42 王强", WANG),
        ("CONFIRM SL-42", WANG), ("确认 SL-42", SALES),
    ],
)  # fmt: skip
def test_commands_from_the_wrong_person_are_refused_with_a_reply(
    text: str, sender: StaffView
) -> None:
    facts = Facts(tickets=(ticket(42, TicketState.RESOLVED),), checkins=_pending(), staff=STAFF)
    result = dispatch(text, sender, facts)
    assert result.outcome is CommandOutcome.REFUSED
    assert result.decision is None and result.acknowledgement is None
    assert result.reply is not None and result.reply.recipient == sender.phone


def test_full_width_ok_with_a_name_from_a_supervisor() -> None:
    facts = Facts(checkins=_pending(), staff=STAFF)
    result = dispatch("ＯＫ　王强", ZHANG, facts)
    assert result.acknowledgement is not None and result.acknowledgement.checkin_ids == (30, 31)


def test_unreadable_staff_messages_get_the_usage_in_their_language() -> None:
    for sender, fragment in ((ZHANG, "收到"), (SUN, "OK"), (LI, "ACCEPT")):
        result = dispatch("blah blah", sender, Facts(staff=STAFF))
        assert result.reply is not None and result.reply.template == "sms_usage"
        assert fragment in result.reply.context["usage"]
        assert result.reply.language == sender.language


def test_the_command_table_takes_every_verb_and_every_field_of_the_parser() -> None:
    """The table is keyed by verb (workflow does not import parsers): a verb or a field
    renamed on one side only fails here, not on a live SMS."""
    assert set(COMMANDS) == {verb.value for verb in Verb}
    for command in get_args(SmsCommand):
        function = COMMANDS[command.verb]
        if function is usage_reply:
            continue  # HELP and a carrier keyword: the usage, whatever their fields
        parameters = inspect.signature(function).parameters
        assert {field.name for field in fields(command)} <= set(parameters), command


def test_a_customers_ok_is_a_customer_message_not_an_acknowledgement() -> None:
    assert isinstance(parse_sms("OK"), Ack)  # the words are the same…
    route = route_sms(sender_is_staff=False, consent_keyword=False)
    assert route is SmsRoute.CUSTOMER_MESSAGE  # …but only staff numbers send commands
    assert route_sms(sender_is_staff=True, consent_keyword=False) is SmsRoute.STAFF_COMMAND
    assert route_sms(sender_is_staff=False, consent_keyword=True) is SmsRoute.CONSENT


# -- keys, consent, opted-out numbers ---------------------------------------------------------


def _keys(result: CommandResult) -> list[str]:
    notes = [result.reply, *result.notify, *(result.decision.notify if result.decision else ())]
    return [n.key for n in notes if n is not None]


def test_notification_keys_come_from_the_inbound_message_so_a_replay_sends_nothing_new() -> None:
    facts = Facts(checkins=_pending(), staff=STAFF)
    first = acknowledge_checkins(inbound(ZHANG, key="sms:7"), facts, RULES, None, "")
    again = acknowledge_checkins(inbound(ZHANG, key="sms:7"), facts, RULES, None, "")
    other = acknowledge_checkins(inbound(ZHANG, key="sms:8"), facts, RULES, None, "")
    assert _keys(first) == _keys(again)
    assert len(set(_keys(first))) == len(_keys(first)) == 3
    assert not set(_keys(first)) & set(_keys(other))
    assert all(key.startswith("sms:7:") for key in _keys(first))


def test_stop_and_start_record_consent_without_a_reply() -> None:
    stop = consent_keyword("+8613911112222", "opt_out", "退订", NOW, key="sms:9")
    assert stop.change is not None and stop.change.opted_out is True and stop.reply is None
    start = consent_keyword("+8613911112222", "opt_in", "START", NOW, key="sms:10")
    assert start.change is not None and start.change.opted_out is False


def test_help_answers_staff_with_the_usage_and_leaves_customers_to_the_carrier() -> None:
    staff = consent_keyword(WANG.phone or "", "help", "HELP", NOW, key="sms:11", sender=WANG,
                            usage=usage_text("engineer", "zh-CN"))  # fmt: skip
    assert staff.change is None
    assert staff.reply is not None and staff.reply.template == "sms_usage"
    customer = consent_keyword("+8613911112222", "help", "HELP", NOW, key="sms:12")
    assert customer == type(customer)(None, None)


def test_sms_to_an_opted_out_number_goes_by_email_instead() -> None:
    note = Notification("k", "checkin_relay", "sms", "+8613800000003", "zh-CN")
    assert sms_or_email(note, False, "z@ex.cn") == note
    email = replace(note, channel="email", recipient="z@ex.cn")
    assert sms_or_email(note, True, "z@ex.cn") == email
    assert sms_or_email(note, True, None) is None
    assert sms_or_email(email, True, "z@ex.cn") == email


def test_a_supervisor_without_a_phone_gets_the_relay_by_email() -> None:
    no_phone = replace(ZHANG, phone=None)
    facts = Facts(trips=(trip(8, 42),), staff=(WANG, no_phone))
    result = record_checkin(inbound(WANG), facts, RULES, "进展顺利")
    (relay,) = result.notify
    assert (relay.channel, relay.recipient) == ("email", "z@ex.cn")
