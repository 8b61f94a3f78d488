"""An outbox row's template and context → the text that is sent.

Rendering happens at send time, not at enqueue time, so a template fixed in the
deployment's override folder applies to rows already queued. What was rendered is
stored on the row (``subject``, ``body``) when its outcome is recorded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from notifier.sms_text import fit
from notifier.templates import Templates


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def one_line(text: str) -> str:
    """Collapses a rendered subject (and any CR/LF in it) into one line.

    >>> one_line("  Re: 打印机\\r\\nBcc: x@example.com \\n")
    'Re: 打印机 Bcc: x@example.com'
    """
    return re.sub(r"\s+", " ", text).strip()


class Renderer:
    def __init__(self, templates: Templates, max_sms_segments: int) -> None:
        self.templates = templates
        self.max_sms_segments = max_sms_segments

    def email(self, name: str, language: str, context: Mapping[str, Any]) -> RenderedEmail:
        variables = {**context, "language": language}
        return RenderedEmail(
            subject=one_line(self.templates.render(name, language, "subject.txt", variables)),
            text=self.templates.render(name, language, "body.txt", variables).strip() + "\n",
            html=self.templates.render(name, language, "body.html", variables),
        )

    def sms(self, name: str, language: str, context: Mapping[str, Any]) -> str:
        """The SMS body: rendered, without URLs, shortened to the segment limit."""
        variables = {**context, "language": language}
        body = self.templates.render(name, language, "sms.txt", variables)
        return fit(body.strip(), self.max_sms_segments, language)
