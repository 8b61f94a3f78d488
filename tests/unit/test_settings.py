"""Settings: defaults without a file, TOML and environment overrides, clear refusals."""

from __future__ import annotations

import pytest

from workflow.settings import SettingsError, load_settings


def test_no_file_runs_on_the_documented_defaults() -> None:
    settings = load_settings()
    assert settings.database.url == "sqlite:///var/supportline.db"
    assert settings.smtp.listen == "127.0.0.1:2525"
    assert settings.http.listen == "127.0.0.1:8025"
    assert settings.email.transport == "maildir"
    assert settings.sms.transport == "log"
    assert settings.policy.clocks.triage_hours == 1
    assert settings.policy.warn_at == 0.75
    assert settings.imap.mailboxes == ()
    assert settings.policy.fault_types, "a bilingual fault taxonomy ships by default"


def test_toml_document_overrides_nested_keys() -> None:
    settings = load_settings(
        {
            "timezone": "Asia/Hong_Kong",
            "smtp": {"domains": ["help.example.cn"], "max_message_bytes": 1000},
            "email": {"from": "支持 <s@help.example.cn>"},
            "imap": {"mailboxes": [{"host": "mail", "username": "u", "password": "p"}]},
            "policy": {
                "working_hours": ["09:00-12:00", "13:30-18:00"],
                "clocks": {"handling_hours": 2.5},
                "fault_types": {"jam": ["卡纸", "paper jam"]},
            },
        }
    )
    assert settings.smtp.domains == ("help.example.cn",)
    assert settings.email.from_ == "支持 <s@help.example.cn>"
    assert settings.imap.mailboxes[0].host == "mail"
    assert settings.imap.mailboxes[0].processed_folder == "Processed"
    assert settings.policy.working_hours == ("09:00-12:00", "13:30-18:00")
    assert settings.policy.clocks.handling_hours == 2.5
    assert settings.policy.clocks.triage_hours == 1
    assert settings.policy.fault_types == {"jam": ("卡纸", "paper jam")}


def test_environment_supplies_secrets_over_the_file() -> None:
    settings = load_settings(
        {"sms": {"twilio_auth_token": "from-file"}},
        {
            "SUPPORTLINE_SMS_TWILIO_AUTH_TOKEN": "from-env",
            "SUPPORTLINE_DATABASE_URL": "postgresql://db/supportline",
            "SUPPORTLINE_POLICY_CLOCKS_TRIAGE_HOURS": "2",
            "SUPPORTLINE_EMAIL_STARTTLS": "true",
            "SUPPORTLINE_SMTP_DOMAINS": "a.example, b.example",
        },
    )
    assert settings.sms.twilio_auth_token == "from-env"
    assert settings.database.url == "postgresql://db/supportline"
    assert settings.policy.clocks.triage_hours == 2
    assert settings.email.starttls is True
    assert settings.smtp.domains == ("a.example", "b.example")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"smtp": {"lisen": "x"}}, "unknown key smtp.lisen; smtp allows: domains, listen"),
        ({"smtp": {"listen": "2525"}}, "smtp.listen = '2525' must be HOST:PORT"),
        ({"email": {"transport": "carrier-pigeon"}}, "choose one of: maildir, smtp"),
        ({"language": "fr"}, "language = 'fr' is not allowed; choose one of: zh-CN, en"),
        ({"timezone": "Mars/Olympus"}, "timezone = 'Mars/Olympus' must be an IANA time zone"),
        ({"policy": {"warn_at": 1.5}}, "policy.warn_at = 1.5 must be a share between 0 and 1"),
        ({"policy": {"working_hours": ["18:00-09:00"]}}, "policy.working_hours = '18:00-09:00'"),
        ({"policy": {"working_days": ["monday"]}}, "choose one of: mon, tue"),
        ({"policy": {"clocks": {"triage_hours": "soon"}}}, "triage_hours must be a number"),
        ({"policy": {"clocks": {"callback_days": 0}}}, "callback_days = 0 must be greater than 0"),
        ({"email": {"starttls": "yes"}}, "email.starttls must be true or false"),
        ({"smtp": "127.0.0.1:25"}, "smtp must be a table of keys"),
        ({"policy": {"extra_days_off": ["2026-13-01"]}}, "must be an ISO date"),
    ],
)
def test_a_wrong_key_or_value_names_the_key_and_what_is_allowed(document, message) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(document)
    assert message in str(raised.value)
