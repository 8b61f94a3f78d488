"""HTML mail body to plain text.

Mail HTML carries text that the reader never sees: `<style>` sheets, `<script>`,
the `<head>` (with its `<title>`), and elements hidden with `display:none` or the HTML
`hidden` attribute (preheaders, tracking text, Outlook's hidden reply markers). Those are
dropped before inscriptis renders the layout (tables, lists, line breaks) as text.

>>> html_to_text('<p>Hi</p><div style="display: none">preheader</div><p>Bye</p>')
'Hi\\n\\nBye'
"""

from __future__ import annotations

import re
import textwrap

import lxml.etree
import lxml.html
from inscriptis.html_engine import Inscriptis

# Elements whose content is never rendered as text.
_INVISIBLE_TAGS = ("head", "style", "script", "template", "noscript", "title", "xml")
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_BLANK_RUN = re.compile(r"\n{3,}")


def _drop_invisible(root: lxml.html.HtmlElement) -> None:
    doomed = [el for el in root.iter(*_INVISIBLE_TAGS)]
    doomed += [el for el in root.iter() if not isinstance(el.tag, str)]  # comments, PIs
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        if el.get("hidden") is not None or _HIDDEN_STYLE.search(el.get("style") or ""):
            doomed.append(el)
    for el in doomed:
        parent = el.getparent()
        if parent is None:
            continue
        # Keep the text that follows the element (its tail): it belongs to the parent.
        tail = el.tail
        if tail:
            previous = el.getprevious()
            if previous is not None:
                previous.tail = (previous.tail or "") + tail
            else:
                parent.text = (parent.text or "") + tail
        parent.remove(el)


def tidy_text(text: str) -> str:
    """Plain-text clean-up shared by every body: \\n line ends, no trailing blanks."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    lines = [line.rstrip() for line in text.split("\n")]
    return _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip("\n")


def html_to_text(html: str) -> str:
    """Render an HTML body as plain text; "" for markup with no visible text."""
    if not html or not html.strip():
        return ""
    try:
        # Parse bytes, not str: lxml refuses a str that carries an XML encoding declaration.
        parser = lxml.html.HTMLParser(encoding="utf-8", remove_comments=True)
        root = lxml.html.document_fromstring(
            html.encode("utf-8", errors="surrogatepass"), parser=parser
        )
    except (lxml.etree.LxmlError, ValueError):
        return tidy_text(re.sub(r"<[^>]*>", " ", html))
    _drop_invisible(root)
    try:
        text = Inscriptis(root).get_text()
    except Exception:  # inscriptis on hostile markup: keep the words, lose the layout
        text = root.text_content()
    # inscriptis indents the whole body by its padding; the reader never sees that.
    return tidy_text(textwrap.dedent(text))
