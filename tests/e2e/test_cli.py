"""The operators' CLI end to end: imports, ticket listings, global --now, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from gateway.cli.commands import cli
from storage.models import Contact, Customer, Machine, Message, Staff, Ticket
from storage.uow import unit_of_work
from tests.conftest import FIXED_NOW, make_services

STAFF_CSV = """name,role,email,phone,supervisor_email,language,timezone
李经理,manager,li@support.example.com,13800138000,,zh-CN,Asia/Shanghai
王强,engineer,wq@support.example.com,+86 139 1234 5678,li@support.example.com,zh-CN,
Anna Berg,sales_assistant,anna@support.example.com,,li@support.example.com,en,Europe/Berlin
"""

CUSTOMER_CSV = """customer,contact,email,phone,language,model,serial,shipped_on,special
华东机械有限公司,张伟,zw@huadong.example.cn,021-6234 5678,zh-CN,XP-3000,SN1001,2024-05-31,no
华东机械有限公司,张伟,zw@huadong.example.cn,,zh-CN,XP-5000,SN1002,2025-01-10,是
Globex,Homer,homer@globex.example.com,+1 650 253 0000,en,,,,
"""


@pytest.fixture
def run(db_url: str, tmp_path: Path):
    """Runs ``supportline`` with a config file on the test database."""
    make_services(db_url).close()  # migrated
    config = tmp_path / "supportline.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n', encoding="utf-8")

    def invoke(*args: str, input_files: dict[str, str] | None = None) -> Result:
        for name, text in (input_files or {}).items():
            (tmp_path / name).write_bytes(text.encode("utf-8"))
        return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)

    invoke.tmp_path = tmp_path  # type: ignore[attr-defined]
    invoke.db_url = db_url  # type: ignore[attr-defined]
    return invoke


def _staff(db_url: str) -> dict[str, Staff]:
    services = make_services(db_url)
    with unit_of_work(services.sessions) as session:
        people = {s.email: s for s in session.scalars(select(Staff))}
        for person in people.values():
            _ = person.supervisor
    services.close()
    return people


def test_staff_import_normalises_phones_and_links_supervisors(run) -> None:
    result = run(
        "staff", "import", str(run.tmp_path / "staff.csv"), input_files={"staff.csv": STAFF_CSV}
    )
    assert result.exit_code == 0, result.output
    assert "3 row(s) imported" in result.output
    people = _staff(run.db_url)
    assert people["wq@support.example.com"].phone == "+8613912345678"
    assert people["li@support.example.com"].phone == "+8613800138000"
    assert people["wq@support.example.com"].supervisor.email == "li@support.example.com"
    assert people["wq@support.example.com"].timezone == "Asia/Shanghai"  # the default
    assert people["anna@support.example.com"].timezone == "Europe/Berlin"
    assert people["anna@support.example.com"].language == "en"


def test_staff_file_with_one_bad_phone_is_refused_whole(run) -> None:
    bad = STAFF_CSV.replace("+86 139 1234 5678", "12345")
    result = run("staff", "import", str(run.tmp_path / "staff.csv"), input_files={"staff.csv": bad})
    assert result.exit_code == 1
    assert "line 3: phone '12345' is not a valid mobile number" in result.output
    assert "nothing imported" in result.output
    assert _staff(run.db_url) == {}


@pytest.mark.parametrize(
    ("csv_text", "expected"),
    [
        (STAFF_CSV.replace("engineer", "wizard"), "line 3: role 'wizard' is not one of"),
        (STAFF_CSV.replace("anna@support", "anna-at-support"), "line 4: email"),
        (STAFF_CSV.replace(",en,Europe/Berlin", ",en,Mars/Base"), "line 4: timezone 'Mars/Base'"),
        (STAFF_CSV.replace("+86 139 1234 5678", "021-6234 5678"), "not a valid mobile number"),
        (
            STAFF_CSV.replace("anna@support.example.com,,li@", "anna@support.example.com,,x@"),
            "line 4: supervisor x@support.example.com is not in the staff list",
        ),
        (
            STAFF_CSV.replace("wq@support", "li@support"),
            "line 3: email li@support.example.com repeats line 2",
        ),
        ("name,role\nx,engineer\n", "line 1: missing column(s) email"),
    ],
)
def test_every_bad_staff_row_is_named(run, csv_text: str, expected: str) -> None:
    result = run("staff", "import", str(run.tmp_path / "s.csv"), input_files={"s.csv": csv_text})
    assert result.exit_code == 1
    assert expected in result.output
    assert _staff(run.db_url) == {}


def test_reimporting_staff_updates_instead_of_duplicating(run) -> None:
    run("staff", "import", str(run.tmp_path / "a.csv"), input_files={"a.csv": STAFF_CSV})
    renamed = STAFF_CSV.replace("王强", "王强（现场）")
    result = run("staff", "import", str(run.tmp_path / "b.csv"), input_files={"b.csv": renamed})
    assert result.exit_code == 0, result.output
    assert "0 created, 3 updated" in result.output
    people = _staff(run.db_url)
    assert len(people) == 3
    assert people["wq@support.example.com"].name == "王强（现场）"


def test_staff_file_saved_by_chinese_excel_in_gbk(run) -> None:
    path = run.tmp_path / "gbk.csv"
    path.write_bytes(STAFF_CSV.encode("gbk"))
    result = run("staff", "import", str(path))
    assert result.exit_code == 0, result.output
    assert _staff(run.db_url)["li@support.example.com"].name == "李经理"


def test_customer_file_import_and_reimport(run) -> None:
    files = {"c.csv": CUSTOMER_CSV}
    first = run("customers", "import", str(run.tmp_path / "c.csv"), input_files=files)
    assert first.exit_code == 0, first.output
    second = run("customers", "import", str(run.tmp_path / "c.csv"))
    assert second.exit_code == 0, second.output
    services = make_services(run.db_url)
    with unit_of_work(services.sessions) as session:
        assert [c.name for c in session.scalars(select(Customer).order_by(Customer.name))] == [
            "Globex",
            "华东机械有限公司",
        ]
        machines = {m.serial: m for m in session.scalars(select(Machine))}
        assert set(machines) == {"SN1001", "SN1002"}
        assert machines["SN1002"].special is True
        contacts = {c.email: c for c in session.scalars(select(Contact))}
        assert len(contacts) == 2
        assert contacts["zw@huadong.example.cn"].phone == "+862162345678"
        assert contacts["homer@globex.example.com"].phone == "+16502530000"
    services.close()


def test_customer_file_errors_are_all_reported(run) -> None:
    bad = CUSTOMER_CSV.replace("2024-05-31", "31/05/2024").replace("+1 650 253 0000", "555")
    result = run("customers", "import", str(run.tmp_path / "c.csv"), input_files={"c.csv": bad})
    assert result.exit_code == 1
    assert "line 2: shipped_on '31/05/2024' is not a date" in result.output
    assert "line 4: phone '555' is not a valid number" in result.output


def _add_ticket(db_url: str) -> None:
    services = make_services(db_url)
    with unit_of_work(services.sessions) as session:
        ticket = Ticket(
            state="new",
            channel="email",
            subject="打印机不开机",
            language="zh-CN",
            requester_name="张伟",
            contact_email="zw@huadong.example.cn",
            machine_model="XP-3000",
            created_at=FIXED_NOW,
            updated_at=FIXED_NOW,
        )
        session.add(ticket)
        session.flush()
        session.add(
            Message(
                ticket_id=ticket.id,
                direction="in",
                channel="email",
                sender="zw@huadong.example.cn",
                body="按电源键没有反应",
                created_at=FIXED_NOW,
            )
        )
        session.commit()
    services.close()


def test_tickets_list_json_is_one_document(run) -> None:
    empty = run("tickets", "list", "--json")
    assert json.loads(empty.output) == []
    _add_ticket(run.db_url)
    listed = json.loads(run("tickets", "list", "--json").output)
    assert [t["ref"] for t in listed] == ["SL-000001"]
    assert listed[0]["subject"] == "打印机不开机"
    assert listed[0]["created_at"] == "2026-11-27T02:00:00+00:00"
    assert json.loads(run("tickets", "list", "--status", "closed", "--json").output) == []


def test_tickets_show_has_the_thread(run) -> None:
    _add_ticket(run.db_url)
    shown = json.loads(run("tickets", "show", "sl-1", "--json").output)
    assert shown["ref"] == "SL-000001"
    assert shown["messages"][0]["body"] == "按电源键没有反应"
    assert shown["attachments"] == [] and shown["deadlines"] == []
    human = run("tickets", "show", "SL-000001")
    assert "按电源键没有反应" in human.output
    missing = run("tickets", "show", "SL-000099")
    assert missing.exit_code == 1 and "no ticket SL-000099" in missing.output


def test_bad_config_stops_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[smtp]\nlisten = "nowhere"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "tickets", "list"])
    assert result.exit_code == 2
    assert "configuration error" in result.output and "smtp.listen" in result.output
    assert "Traceback" not in result.output


def test_bad_now_is_refused(run) -> None:
    result = run("--now", "yesterday", "tickets", "list")
    assert result.exit_code == 2
    assert "--now" in result.output and "ISO 8601" in result.output


def test_unmigrated_database_says_what_to_do(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/empty.db"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "tickets", "list"])
    assert result.exit_code == 1
    assert "supportline db upgrade" in result.output


def test_global_now_fixes_the_clock_of_a_run(run) -> None:
    mail = run.tmp_path / "m.eml"
    mail.write_bytes(
        b"From: zw@huadong.example.cn\r\nTo: support@support.example.com\r\n"
        b"Subject: no power\r\nMessage-ID: <now-test@huadong.example.cn>\r\n\r\nXP-3000 is dead\r\n"
    )
    # Saturday night in Shanghai: triage waits for Monday 09:00 + 1 business hour.
    result = run("--now", "2026-11-28T22:00", "ingest", "email", str(mail))
    assert result.exit_code == 0, result.output
    shown = json.loads(run("tickets", "show", "SL-000001", "--json").output)
    assert shown["created_at"] == "2026-11-28T14:00:00+00:00"
    assert shown["deadlines"] == [
        {"kind": "triage", "due_at": "2026-11-30T02:00:00+00:00", "state": "open"}
    ]


def test_ingest_and_inbound_commands(run) -> None:
    good = run.tmp_path / "good.eml"
    good.write_bytes(b"From: a@example.org\r\nSubject: help\r\n\r\nThe machine beeps.\r\n")
    first = run("ingest", "email", str(good))
    assert "inbound #1: ticket SL-000001 opened" in first.output
    again = run("ingest", "email", str(good))
    assert "already stored; processed: ticket SL-000001 opened" in again.output
    listed = json.loads(run("inbound", "list", "--json").output)
    assert [(r["id"], r["state"]) for r in listed] == [(1, "processed")]
    assert json.loads(run("inbound", "list", "--failed", "--json").output) == []
    refused = run("inbound", "replay", "1")
    assert refused.exit_code == 1 and "inbound 1 is processed; nothing to process" in refused.output


def test_ingest_sms_runs_the_webhook_pipeline(run) -> None:
    result = run(
        "ingest", "sms", "--from", "139 1111 2222", "--body", "XP-3000 卡纸", "--sid", "SM1"
    )
    assert result.exit_code == 0, result.output
    assert "inbound #1: ticket SL-000001 opened" in result.output
    again = run("ingest", "sms", "--from", "13911112222", "--body", "XP-3000 卡纸", "--sid", "SM1")
    assert "already stored" in again.output
    shown = json.loads(run("tickets", "show", "SL-000001", "--json").output)
    assert (shown["channel"], shown["contact_phone"]) == ("sms", "+8613911112222")


def test_regression_customer_import_failed_to_merge_a_texter_and_a_writer(run) -> None:
    """Fixed in 81ab0e1: a writer who had also texted failed the import on the unique phone."""
    run("ingest", "sms", "--from", "13911112222", "--body", "printer broken", "--sid", "SM9")
    mail = run.tmp_path / "m.eml"
    mail.write_bytes(b"From: zw@huadong.example.cn\r\nSubject: jam\r\n\r\nPaper jam\r\n")
    run("ingest", "email", str(mail))
    csv_text = "customer,contact,email,phone,language,model,serial,shipped_on,special\n"
    csv_text += "Huadong,Zhang Wei,zw@huadong.example.cn,13911112222,zh-CN,,,,\n"
    result = run(
        "customers", "import", str(run.tmp_path / "c.csv"), input_files={"c.csv": csv_text}
    )
    assert result.exit_code == 0, result.output
    services = make_services(run.db_url)
    with unit_of_work(services.sessions) as session:
        (contact,) = session.scalars(select(Contact)).all()
        assert (contact.email, contact.phone) == ("zw@huadong.example.cn", "+8613911112222")
        assert {t.contact_id for t in session.scalars(select(Ticket))} == {contact.id}
    services.close()
