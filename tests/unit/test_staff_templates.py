"""The staff-command templates, rendered from what the real workflow produces.

Every command of ``workflow.commands`` is run through ``workflow.commands.sms.run_command``
(as the webhook does) in Chinese and in English, for the commands that are carried out
and for each refusal reason; every notification it yields is rendered by the real
``Renderer`` as an SMS and as an email, with StrictUndefined catching a missing key.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from notifier.render import Renderer
from notifier.sms_text import is_gsm7, segments
from notifier.templates import BUILTIN_DIR, PARTS, Templates
from parsers.refs import format_ref
from parsers.sms_commands import parse_sms, usage_text
from workflow.calendar import build_calendar
from workflow.commands.base import (
    CheckInView,
    CommandResult,
    Facts,
    Inbound,
    Refusal,
    Rules,
    StaffView,
    TicketView,
    TripView,
)
from workflow.commands.sms import run_command
from workflow.settings import PolicySettings
from workflow.tickets import Notification, TicketState

ROOT = Path(__file__).resolve().parents[2]
COMMAND_MODULES = sorted((ROOT / "workflow" / "commands").glob("*.py"))
LANGUAGES = ("zh-CN", "en")
TEMPLATE_NAMES = (
    "sms_refused", "sms_usage", "sms_reply_accepted", "sms_reply_arrived", "sms_reply_eta",
    "sms_reply_done", "sms_reply_escalated", "sms_reply_checkin", "sms_reply_acknowledged",
    "sms_reply_assigned", "sms_reply_confirmed", "checkin_relay", "checkin_acknowledged",
    "arrival_relay", "ticket_resolved", "ticket_escalated", "ticket_assigned", "eta_to_customer",
)  # fmt: skip

RULES = Rules(build_calendar(), PolicySettings())
# Wednesday 2026-11-25, 10:00 in Shanghai: a working day, inside business hours.
NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
TODAY = date(2026, 11, 25)
RENDERER = Renderer(Templates(None, list(LANGUAGES)), max_sms_segments=3)


@dataclass(frozen=True)
class Team:
    """An engineer, a second engineer, their supervisor and a manager, all of one language."""

    language: str
    engineer: StaffView
    colleague: StaffView
    namesake: StaffView  # shares the start of ``engineer``'s name
    supervisor: StaffView
    manager: StaffView
    other_supervisor: StaffView
    sales: StaffView
    words: dict[str, str]  # the free text of each command, in the team's language

    @property
    def staff(self) -> tuple[StaffView, ...]:
        return (self.engineer, self.colleague, self.supervisor, self.manager,
                self.other_supervisor, self.sales)  # fmt: skip


ZH = Team(
    "zh-CN",
    engineer=StaffView(1, "王强", "engineer", "zh-CN", phone="+8613800000001", email="wq@ex.cn",
                       supervisor_id=3),
    colleague=StaffView(2, "李娜", "engineer", "zh-CN", phone="+8613800000002", email="ln@ex.cn",
                        supervisor_id=3),
    namesake=StaffView(7, "王丽", "engineer", "zh-CN", phone="+8613800000007"),
    supervisor=StaffView(3, "张主管", "supervisor", "zh-CN", phone="+8613800000003",
                         email="z@ex.cn"),
    manager=StaffView(4, "马经理", "manager", "zh-CN", phone="+8613800000004", email="m@ex.cn"),
    other_supervisor=StaffView(5, "孙主管", "supervisor", "zh-CN", phone="+8613800000005"),
    sales=StaffView(6, "赵销售", "sales_assistant", "zh-CN", phone="+8613800000006"),
    words={
        "accept": "接单", "checkin": "签到", "arrived": "到达", "eta": "预计", "done": "完成",
        "escalate": "上报", "ack": "收到", "assign": "派", "confirm": "确认", "help": "帮助",
        "tomorrow_10": "明天10点", "vague": "尽快", "note": "客户在门口等", "summary": "更换定影器",
        "reason": "缺少主板", "report": "今天更换定影器，明天调试 <&>", "more": "下午：更换主板",
        "remark": "注意安全", "free": "客户现场调试中", "gibberish": "今天开会吗",
        "nobody": "陈", "partial": "王",
    },
)  # fmt: skip
EN = Team(
    "en",
    engineer=StaffView(11, "Li Na", "engineer", "en", phone="+8613800000011", email="ln@ex.com",
                       supervisor_id=13),
    colleague=StaffView(12, "Tom Hu", "engineer", "en", phone="+8613800000012",
                        email="th@ex.com", supervisor_id=13),
    namesake=StaffView(17, "Li Wei", "engineer", "en", phone="+8613800000017"),
    supervisor=StaffView(13, "Sun Yu", "supervisor", "en", phone="+8613800000013",
                         email="sy@ex.com"),
    manager=StaffView(14, "Ma Jun", "manager", "en", phone="+8613800000014", email="mj@ex.com"),
    other_supervisor=StaffView(15, "Gao Fei", "supervisor", "en", phone="+8613800000015"),
    sales=StaffView(16, "Zhao Min", "sales_assistant", "en", phone="+8613800000016"),
    words={
        "accept": "ACCEPT", "checkin": "CHECKIN", "arrived": "ARRIVED", "eta": "ETA",
        "done": "DONE", "escalate": "ESCALATE", "ack": "OK", "assign": "ASSIGN",
        "confirm": "CONFIRM", "help": "HELP ME", "tomorrow_10": "10am tomorrow", "vague": "soon",
        "note": "customer waiting at the gate", "summary": "replaced the fuser",
        "reason": "need a new board", "report": "fuser replaced, testing tomorrow <&>",
        "more": "pm: board replaced", "remark": "stay safe", "free": "on site, still testing",
        "gibberish": "meeting today?", "nobody": "Chen", "partial": "Li",
    },
)  # fmt: skip
TEAMS = (ZH, EN)


def ticket(team: Team, ticket_id: int, state: TicketState, **kw: object) -> TicketView:
    fields: dict[str, object] = {
        "engineer_id": team.engineer.id, "supervisor_id": team.supervisor.id,
        "language": team.language,
    } | kw  # fmt: skip
    return TicketView(ticket_id, format_ref(ticket_id), state, **fields)  # type: ignore[arg-type]


def trip(team: Team, trip_id: int, ticket_id: int, **kw: object) -> TripView:
    fields: dict[str, object] = {
        "starts_on": TODAY - timedelta(days=1), "ends_on": TODAY + timedelta(days=2),
        "supervisor_id": team.supervisor.id,
    } | kw  # fmt: skip
    return TripView(trip_id, ticket_id, format_ref(ticket_id), team.engineer.id, **fields)  # type: ignore[arg-type]


def pending(team: Team) -> tuple[CheckInView, ...]:
    """Check-ins relayed to the team's supervisor and not yet answered."""
    eng, col, sup = team.engineer.id, team.colleague.id, team.supervisor.id
    return (
        CheckInView(31, 8, 42, eng, TODAY, "拆机", relayed_to_id=sup),
        CheckInView(30, 8, 42, eng, TODAY - timedelta(days=1), "到达", relayed_to_id=sup),
        CheckInView(32, 9, 43, col, TODAY, "replaced", relayed_to_id=sup),
    )


def dispatch(text: str, sender: StaffView, facts: Facts, channel: str = "sms") -> CommandResult:
    """An SMS text run the way the webhook runs it: parsed, then the workflow function."""
    message = Inbound(sender, NOW, "sms:100", channel)
    usage = usage_text(sender.role, sender.language)
    return run_command(parse_sms(text), message, facts, RULES, usage)


def notes_of(result: CommandResult) -> list[Notification]:
    found = [result.reply, *result.notify, *(result.decision.notify if result.decision else ())]
    return [note for note in found if note is not None]


@dataclass(frozen=True)
class Case:
    label: str
    text: str
    sender: StaffView
    facts: Facts
    refusal: Refusal | None = None
    channel: str = "sms"


def cases(team: Team) -> Iterator[Case]:
    w, eng, sup = team.words, team.engineer, team.supervisor
    staff = team.staff
    s42 = "SL-000042"

    def t(state: TicketState, ticket_id: int = 42, **kw: object) -> TicketView:
        return ticket(team, ticket_id, state, **kw)

    on_trip = Facts(tickets=(t(TicketState.ACCEPTED),), trips=(trip(team, 8, 42),), staff=staff)
    # Carried out.
    yield Case("accept", f"{w['accept']} {s42}", eng,
               Facts(tickets=(t(TicketState.ASSIGNED),), staff=staff))  # fmt: skip
    yield Case("accept by email", f"{w['accept']} {s42}", eng,
               Facts(tickets=(t(TicketState.ASSIGNED),), staff=staff), channel="email")  # fmt: skip
    yield Case("arrived", f"{w['arrived']} SL-42 {w['note']}", eng, on_trip)
    yield Case("arrived, no note", w["arrived"], eng, on_trip)
    upcoming = trip(team, 8, 42, starts_on=TODAY + timedelta(days=1))
    for how, contact in (
        ("sms", {"contact_phone": "+8613911112222"}),
        ("email", {"contact_email": "c@customer.cn"}),
    ):
        customer = ticket(team, 42, TicketState.ACCEPTED, **contact)
        yield Case(f"eta, customer by {how}", f"{w['eta']} SL-42 {w['tomorrow_10']}", eng,
                   Facts(tickets=(customer,), trips=(upcoming,), staff=staff))  # fmt: skip
    yield Case("eta in 2h", f"{w['eta']} +2h", eng, on_trip)
    yield Case("done", f"{w['done']} SL-42 {w['summary']}", eng, on_trip)
    yield Case("done, no summary", f"{w['done']} SL-42", eng, on_trip)
    yield Case("escalate", f"{w['escalate']} SL-42 {w['reason']}", eng, on_trip)
    lone = replace(eng, supervisor_id=None)
    unsupervised = t(TicketState.ACCEPTED, supervisor_id=None)
    yield Case("escalate, no supervisor", f"{w['escalate']} SL-42", lone,
               Facts(tickets=(unsupervised,), staff=(lone,)))  # fmt: skip
    yield Case("checkin", f"{w['checkin']} {w['report']}", eng, on_trip)
    earlier = CheckInView(31, 8, 42, eng.id, TODAY, w["report"], sup.id, acknowledged=True)
    yield Case("checkin update", w["more"], eng, replace(on_trip, checkins=(earlier,)))
    yield Case("checkin as free text", w["free"], eng, on_trip)
    no_phone = replace(sup, phone=None)
    yield Case("checkin to a supervisor by email", w["free"], eng,
               replace(on_trip, staff=(eng, no_phone)))  # fmt: skip
    yield Case("checkin, no supervisor", w["free"], lone,
               Facts(trips=(trip(team, 8, 42, supervisor_id=None),), staff=(lone,)))  # fmt: skip
    acks = Facts(checkins=pending(team), staff=staff)
    yield Case("ack all", w["ack"], sup, acks)
    yield Case("ack one, with a remark", f"{w['ack']} {eng.name} {w['remark']}", sup, acks)
    escalated = t(TicketState.ESCALATED, engineer_id=None)
    yield Case("assign", f"{w['assign']} SL-42 {eng.name}", sup,
               Facts(tickets=(escalated,), staff=staff))  # fmt: skip
    yield Case("confirm", f"{w['confirm']} SL-42", sup,
               Facts(tickets=(t(TicketState.RESOLVED),), staff=staff))  # fmt: skip
    yield Case("help", w["help"], eng, Facts(staff=staff))
    yield Case("unreadable", w["gibberish"], sup, Facts(staff=staff))
    yield Case("unreadable, sales", w["gibberish"], team.sales, Facts(staff=staff))
    # Refused, one reason after the other.
    R = Refusal
    resolved = Facts(tickets=(t(TicketState.RESOLVED),), checkins=pending(team), staff=staff)
    yield Case("engineer sends OK", w["ack"], eng, resolved, R.WRONG_ROLE)
    yield Case("supervisor accepts", f"{w['accept']} SL-42", sup, resolved, R.WRONG_ROLE)
    yield Case("sales confirms", f"{w['confirm']} SL-42", team.sales, resolved, R.WRONG_ROLE)
    yield Case("unknown ref", f"{w['accept']} SL-99", eng, resolved, R.UNKNOWN_TICKET)
    yield Case("unknown ref, done", f"{w['done']} SL-99 x", eng, resolved, R.UNKNOWN_TICKET)
    yield Case("nothing to accept", w["accept"], eng, Facts(staff=staff), R.NO_TICKET)
    yield Case("nothing to finish", f"{w['done']} ok", eng, Facts(staff=staff), R.NO_TICKET)
    yield Case("nothing to escalate", w["escalate"], eng, Facts(staff=staff), R.NO_TICKET)
    yield Case("nothing to assign", f"{w['assign']} {eng.name}", sup, Facts(staff=staff),
               R.NO_TICKET)  # fmt: skip
    yield Case("nothing to confirm", w["confirm"], sup, Facts(staff=staff), R.NO_TICKET)
    two = Facts(tickets=(t(TicketState.ASSIGNED), t(TicketState.ASSIGNED, 44)), staff=staff)
    yield Case("two to accept", w["accept"], eng, two, R.AMBIGUOUS_TICKET)
    two_trips = Facts(
        tickets=(t(TicketState.ACCEPTED), t(TicketState.ACCEPTED, 43)),
        trips=(trip(team, 8, 42), trip(team, 9, 43)), staff=staff,
    )  # fmt: skip
    yield Case("two trips today", w["arrived"], eng, two_trips, R.AMBIGUOUS_TICKET)
    theirs = Facts(tickets=(t(TicketState.ACCEPTED),), staff=staff)
    yield Case("someone else's", f"{w['done']} SL-42 x", team.colleague, theirs, R.NOT_YOURS)
    yield Case("another supervisor's", f"{w['confirm']} SL-42", team.other_supervisor, resolved,
               R.NOT_YOURS)  # fmt: skip
    yield Case("confirm too early", f"{w['confirm']} SL-42", sup, theirs, R.WRONG_STATE)
    yield Case("accept when resolved", f"{w['accept']} SL-42", eng, resolved, R.WRONG_STATE)
    yield Case("checkin at home", f"{w['checkin']} x", eng, Facts(staff=staff), R.NOT_ON_TRIP)
    yield Case("arrived without trip", f"{w['arrived']} SL-42", eng, theirs, R.NOT_ON_TRIP)
    yield Case("eta without trip", f"{w['eta']} 14:30", eng, theirs, R.NOT_ON_TRIP)
    yield Case("eta, no time", f"{w['eta']} SL-42 {w['vague']}", eng, on_trip, R.NO_TIME)
    yield Case("eta, blank time", f"{w['eta']} SL-42", eng, on_trip, R.NO_TIME)
    new = Facts(tickets=(t(TicketState.NEW, engineer_id=None),),
                staff=(*staff, team.namesake))  # fmt: skip
    yield Case("nobody by that name", f"{w['assign']} SL-42 {w['nobody']}", sup, new,
               R.UNKNOWN_ENGINEER)  # fmt: skip
    yield Case("no name", f"{w['assign']} SL-42", sup, new, R.UNKNOWN_ENGINEER)
    yield Case("two by that name", f"{w['assign']} SL-42 {w['partial']}", sup, new,
               R.AMBIGUOUS_ENGINEER)  # fmt: skip
    yield Case("assigned already", f"{w['assign']} SL-42 {eng.name}", sup, theirs,
               R.ALREADY_ASSIGNED)  # fmt: skip
    yield Case("no check-ins", w["ack"], sup, Facts(staff=staff), R.NOTHING_TO_ACKNOWLEDGE)
    yield Case("no check-ins from", f"{w['ack']} {eng.name}", sup, Facts(staff=staff),
               R.NOTHING_TO_ACKNOWLEDGE)  # fmt: skip


def run(case: Case) -> list[Notification]:
    result = dispatch(case.text, case.sender, case.facts, case.channel)
    assert result.refusal is case.refusal, (case.label, result)
    notes = notes_of(result)
    assert notes, case.label
    return notes


ALL_CASES = [(team, case) for team in TEAMS for case in cases(team)]
PRODUCED = [(team, case, note) for team, case in ALL_CASES for note in run(case)]


def _id(item: tuple[Team, Case, Notification]) -> str:
    team, case, note = item
    return f"{team.language}-{case.label}-{note.template}-{note.channel}"


def sms_of(note: Notification) -> str:
    return RENDERER.sms(note.template, note.language, note.context)


# -- the templates exist, for every name the workflow uses -----------------------------------


def _template_names_in_workflow() -> set[str]:
    """The template argument of every Notification(...), reply_to_sender(...) and
    notification_to_staff(...) in ``workflow/commands/``."""
    position = {"Notification": 1, "reply_to_sender": 1, "notification_to_staff": 2}
    names = set()
    trees = [ast.parse(path.read_text(encoding="utf-8")) for path in COMMAND_MODULES]
    for node in (node for tree in trees for node in ast.walk(tree)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            index = position.get(node.func.id)
            if index is not None and len(node.args) > index:
                argument = node.args[index]
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    names.add(argument.value)
    return names


def test_the_template_list_is_every_name_the_workflow_uses() -> None:
    assert _template_names_in_workflow() == set(TEMPLATE_NAMES)


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_every_template_has_all_four_parts_in_both_languages(name: str) -> None:
    for language in LANGUAGES:
        for part in PARTS:
            path = BUILTIN_DIR / name / language / part
            assert path.is_file(), path
            assert path.read_text(encoding="utf-8").strip(), path


def test_the_scenarios_produce_every_template_and_every_refusal_in_both_languages() -> None:
    for team in TEAMS:
        produced = [(case, note) for t, case, note in PRODUCED if t is team]
        assert {note.template for _, note in produced} == set(TEMPLATE_NAMES)
        assert {note.language for _, note in produced} == {team.language}
        assert {note.channel for _, note in produced} == {"sms", "email"}
        reasons = {note.context["reason"] for _, note in produced if note.template == "sms_refused"}
        assert reasons == {reason.value for reason in Refusal}


# -- every notification renders, as an SMS and as an email --------------------------------


@pytest.mark.parametrize("item", PRODUCED, ids=[_id(item) for item in PRODUCED])
def test_each_notification_renders_as_sms_and_email(
    item: tuple[Team, Case, Notification],
) -> None:
    team, case, note = item
    context = note.context
    sms = sms_of(note)
    email = RENDERER.email(note.template, note.language, context)
    assert sms and email.subject and email.text.strip() and "</html>" in email.html
    for text in (sms, email.subject, email.text, email.html):
        # Nothing leaks from a template: no raw Python values, no unrendered markup.
        for leak in ("None", "['", "{{", "{%", "Undefined"):
            assert leak not in text, (leak, text)
    assert "http" not in sms.lower()
    assert "\n" not in email.subject
    if "ref" in context:
        for text in (sms, email.subject, email.text, email.html):
            assert context["ref"] in text, text
    for ref in context.get("refs", []):
        assert ref in sms and ref in email.text and ref in email.html
    if note.language == "zh-CN":
        assert re.search(r"[\u4e00-\u9fff]", sms), sms  # answered in Chinese
    if note.template == "sms_usage":
        assert context["usage"] in sms and context["usage"] in email.text
        assert segments(sms) <= 2, sms
    else:
        # The variable content of every scenario is short: one segment, i.e. at most 70
        # characters of Chinese, or 160 GSM characters of English.
        assert segments(sms) == 1, (len(sms), sms)
    if team is EN and is_gsm7(" ".join(str(v) for v in context.values())):
        assert is_gsm7(sms), sms  # our own wording does not force UCS-2 on an English SMS


def test_the_zh_refusals_are_one_segment_each_and_say_what_to_send() -> None:
    refusals = {
        case.label: sms_of(note)
        for team, case, note in PRODUCED
        if team is ZH and note.template == "sms_refused"
    }
    assert "部门主管的命令" in refusals["engineer sends OK"]
    assert "技术支持工程师的命令" in refusals["supervisor accepts"]
    assert "仅供技术支持工程师和部门主管" in refusals["sales confirms"]
    assert refusals["unknown ref, done"].endswith("完成 单号 结果")
    assert "预计 SL-000042 14:30" in refusals["eta, no time"] and "尽快" in refusals["eta, no time"]
    assert "“陈”" in refusals["nobody by that name"]
    assert "王强、王丽" in refusals["two by that name"]
    assert refusals["assigned already"] == "SL-000042 已派给王强，无需重复派单。"
    assert "王强没有待您回复的签到" in refusals["no check-ins from"]
    assert "“处理中”" in refusals["confirm too early"]


# -- what a user would notice -------------------------------------------------------------


def _one(team: Team, label: str, template: str) -> Notification:
    (note,) = [
        n for t, c, n in PRODUCED if t is team and c.label == label and n.template == template
    ]
    return note


def test_the_checkin_relay_names_the_engineer_and_carries_their_text() -> None:
    for team in TEAMS:
        relay = _one(team, "checkin", "checkin_relay")
        assert relay.recipient == team.supervisor.phone
        sms = sms_of(relay)
        assert team.engineer.name in sms and team.words["report"] in sms  # "<&>" verbatim
        assert "&lt;&amp;&gt;" in RENDERER.email("checkin_relay", relay.language,
                                                 relay.context).html  # fmt: skip
        assert "<&>" in RENDERER.email("checkin_relay", relay.language, relay.context).text
    zh = sms_of(_one(ZH, "checkin", "checkin_relay"))
    fixed = "王强签到（SL-000042，2026-11-25），请回复“收到 王强”："
    assert zh == fixed + "今天更换定影器，明天调试 <&>"
    assert "签到补充" in sms_of(_one(ZH, "checkin update", "checkin_relay"))


def test_a_long_checkin_is_shortened_after_the_fixed_part() -> None:
    relay = _one(ZH, "checkin", "checkin_relay")
    long_text = "今天拆机检查，发现定影器老化、搓纸轮磨损，已更换定影器，明天调试并培训。" * 5
    sms = RENDERER.sms("checkin_relay", "zh-CN", {**relay.context, "text": long_text})
    assert sms.startswith("王强签到（SL-000042，2026-11-25），请回复“收到 王强”：今天拆机检查")
    assert sms.endswith("…（内容过长，详见邮件）") and segments(sms) == 3
    email = RENDERER.email("checkin_relay", "zh-CN", {**relay.context, "text": long_text})
    assert long_text in email.text  # the email carries it all


def test_the_refusal_for_an_ambiguous_ticket_lists_both_refs() -> None:
    zh = sms_of(_one(ZH, "two to accept", "sms_refused"))
    assert zh == "有多张单：SL-000042、SL-000044。请带单号重发，如：接单 SL-000042"
    en = sms_of(_one(EN, "two trips today", "sms_refused"))
    assert "SL-000042, SL-000043" in en and "ARRIVED SL-000042" in en


def test_spot_checks_in_both_languages() -> None:
    accepted = sms_of(_one(ZH, "accept", "sms_reply_accepted"))
    assert "SL-000042" in accepted and "2026-11-25 14:00" in accepted
    by_email = _one(ZH, "accept by email", "sms_reply_accepted")
    assert by_email.channel == "email"
    assert "2026-11-25 14:00" in RENDERER.email(by_email.template, "zh-CN", by_email.context).text

    eta = _one(ZH, "eta, customer by sms", "eta_to_customer")
    assert sms_of(eta) == (
        "您的技术支持请求 SL-000042：技术支持工程师王强预计 2026-11-26 10:00 到达现场，"
        "请安排人员接待。"
    )
    assert "Li Na" in sms_of(_one(EN, "eta, customer by email", "eta_to_customer"))

    resolved = sms_of(_one(ZH, "done", "ticket_resolved"))
    assert resolved == "王强已完成 SL-000042，请回复“确认 SL-000042”。结果：更换定影器"
    assert sms_of(_one(EN, "done, no summary", "ticket_resolved")).endswith("CONFIRM SL-000042.")
    assert "缺少主板" in sms_of(_one(ZH, "escalate", "ticket_escalated"))
    assert "电话联系" in sms_of(_one(ZH, "escalate, no supervisor", "sms_reply_escalated"))
    assert "张主管" in sms_of(_one(ZH, "assign", "ticket_assigned"))
    assert "客户在门口等" in sms_of(_one(ZH, "arrived", "arrival_relay"))

    acked = [n for t, c, n in PRODUCED if t is ZH and c.label == "ack all"]
    to_wang = next(n for n in acked if n.recipient == ZH.engineer.phone)
    assert sms_of(to_wang) == "张主管已收到您 2026-11-24、2026-11-25 的签到。"
    reply = next(n for n in acked if n.template == "sms_reply_acknowledged")
    assert sms_of(reply) == "已回复 3 条签到（王强、李娜），已通知工程师。"
    remark = _one(EN, "ack one, with a remark", "checkin_acknowledged")
    expected = "Sun Yu acknowledged your check-ins of 2026-11-24, 2026-11-25: stay safe"
    assert sms_of(remark) == expected

    usage = _one(EN, "unreadable", "sms_usage")
    assert sms_of(usage) == "Not understood. " + usage_text("supervisor", "en")
