"""Building the configured transports and the renderer from the settings (wired once in
``gateway.bootstrap``; nothing here connects until the first message)."""

from __future__ import annotations

import ssl

from notifier.email_transport import EmailTransport, MaildirTransport, SmtpRelay
from notifier.render import Renderer
from notifier.sms_transport import LogSms, SmsTransport, TwilioSms
from notifier.status import status_callback_url
from notifier.templates import Templates
from workflow.clock import Clock
from workflow.settings import LANGUAGES, Settings, SettingsError


def build_email_transport(
    settings: Settings, tls_context: ssl.SSLContext | None = None
) -> EmailTransport:
    email = settings.email
    if email.transport == "maildir":
        return MaildirTransport(email.maildir)
    return SmtpRelay(
        email.smtp_host,
        email.smtp_port,
        username=email.smtp_username,
        password=email.smtp_password,
        starttls=email.starttls,
        implicit_tls=email.smtp_ssl,
        timeout=email.smtp_timeout,
        tls_context=tls_context,
    )


def build_sms_transport(settings: Settings, clock: Clock) -> SmsTransport:
    sms = settings.sms
    if sms.transport == "log":
        return LogSms(sms.log_file, clock)
    if not sms.twilio_account_sid or not sms.twilio_auth_token:
        raise SettingsError("sms.transport = 'twilio' needs twilio_account_sid and auth_token")
    if not sms.twilio_from and not sms.twilio_messaging_service_sid:
        raise SettingsError(
            "sms.transport = 'twilio' needs twilio_from or twilio_messaging_service_sid"
        )
    return TwilioSms(
        account_sid=sms.twilio_account_sid,
        auth_token=sms.twilio_auth_token,
        from_=sms.twilio_from,
        messaging_service_sid=sms.twilio_messaging_service_sid,
        api_url=sms.twilio_api_url,
        timeout=sms.twilio_timeout,
        status_callback_url=status_callback_url(settings),
        unreachable_attempts=sms.unreachable_attempts,
    )


def build_renderer(settings: Settings) -> Renderer:
    fallbacks = [settings.language, *LANGUAGES]
    templates = Templates(settings.notifier.templates_dir or None, fallbacks)
    return Renderer(templates, settings.sms.max_segments)
