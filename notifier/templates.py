"""The notification templates: two jinja2 environments over one template tree.

A notification is a template set (STYLE.md habit 8), laid out per name, then language::

    notifier/templates/<name>/<language>/subject.txt   one line, the email subject
                                        /body.txt      the plain-text part
                                        /body.html     the HTML part
                                        /sms.txt       the SMS body

A deployment may override any file by putting one at the same relative path under
``[notifier] templates_dir``; a ``ChoiceLoader`` asks that folder first. Plain text is
rendered with autoescape off, HTML with autoescape on; both use ``StrictUndefined`` so a
missing context key is an error naming the template, never a silently empty field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

from notifier.errors import RenderError

BUILTIN_DIR = Path(__file__).resolve().parent / "templates"
PARTS = ("subject.txt", "body.txt", "body.html", "sms.txt")


class Templates:
    """Renders ``<name>/<language>/<part>``, falling back through ``languages``."""

    def __init__(self, override_dir: str | Path | None, fallback_languages: Sequence[str]):
        loaders: list[jinja2.BaseLoader] = []
        if override_dir:
            loaders.append(jinja2.FileSystemLoader(str(override_dir)))
        loaders.append(jinja2.FileSystemLoader(str(BUILTIN_DIR)))
        loader = jinja2.ChoiceLoader(loaders)
        common: dict[str, Any] = {
            "loader": loader,
            "undefined": jinja2.StrictUndefined,
            "keep_trailing_newline": False,
            "trim_blocks": True,
            "lstrip_blocks": True,
            # Compiled once per process: a changed override is picked up on restart (and
            # by every `supportline outbox send`), not by a stat() on every message.
            "auto_reload": False,
        }
        self.text = jinja2.Environment(autoescape=False, **common)
        self.html = jinja2.Environment(autoescape=True, **common)
        self.fallback_languages = tuple(fallback_languages)

    def languages_for(self, language: str) -> list[str]:
        """The recipient's language first, then the fallbacks, without repeats.

        >>> Templates(None, ["zh-CN", "en"]).languages_for("en")
        ['en', 'zh-CN']
        """
        ordered = [language, *self.fallback_languages]
        return list(dict.fromkeys(lang for lang in ordered if lang))

    def render(self, name: str, language: str, part: str, context: Mapping[str, Any]) -> str:
        """One part of a template set; RenderError names the file that failed."""
        if part not in PARTS:
            raise ValueError(f"unknown template part {part!r}")
        environment = self.html if part.endswith(".html") else self.text
        tried = []
        for lang in self.languages_for(language):
            path = f"{name}/{lang}/{part}"
            tried.append(path)
            try:
                template = environment.get_template(path)
            except jinja2.TemplateNotFound:
                continue
            except jinja2.TemplateError as exc:  # a syntax error in the file
                raise RenderError(f"template {path}: {exc}") from exc
            try:
                return template.render(context)
            except jinja2.TemplateError as exc:
                raise RenderError(f"template {path}: {exc}") from exc
            except Exception as exc:  # a filter or a context value failing
                raise RenderError(f"template {path}: {type(exc).__name__}: {exc}") from exc
        raise RenderError(f"template {name!r} has no {part} (looked for {', '.join(tried)})")

    def has(self, name: str, language: str, part: str) -> bool:
        environment = self.html if part.endswith(".html") else self.text
        for lang in self.languages_for(language):
            try:
                environment.get_template(f"{name}/{lang}/{part}")
            except jinja2.TemplateNotFound:
                continue
            return True
        return False
