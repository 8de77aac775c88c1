"""One redaction layer for credentials: every error, log line and printed message passes it.

``register(secret)`` records a credential in every form it can take on its way out: as is,
percent-encoded (a URL, a query), base64 alone and inside HTTP Basic ``user:password``, and
as Python's ``repr`` writes it. ``redact(text)`` replaces each of them by ``***``.

Where it applies: every ``ICMError`` message (``errors.py``), every log record of every
logger and every warning as displayed (hooks installed by the first ``register``), and so
everything the CLI prints.
``redact_url`` is how every message shows a URL: without ``user:password@``, and with its
query string and fragment masked (``?key=...``, ``#access_token=...`` carry tokens too).
``describe_bad_key`` says what is wrong with a key no HTTP header can carry (control
characters, CR/LF, non-ASCII) without printing it, so that it is refused before any request
is built: otherwise the HTTP library's own error would quote the header, key included.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import urllib.parse
import warnings
from typing import Any

MASK = "***"
_MIN_LEN = 4  # shorter "secrets" would redact ordinary words
_forms: set[str] = set()
_lock = threading.Lock()
_installed = False


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode("ascii")


def _variants(secret: str) -> set[str]:
    forms = {
        secret,
        secret.strip(),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        repr(secret)[1:-1],
        _b64(secret),
        _b64(f":{secret}"),
    }
    return {f for f in forms if len(f) >= _MIN_LEN}


def register(secret: str | None, *, user: str | None = None) -> None:
    """Redact ``secret`` (and ``user:secret`` in HTTP Basic form) from now on."""
    global _installed
    if not secret or len(secret.strip()) < _MIN_LEN:
        return
    forms = _variants(secret)
    if user:
        forms |= _variants(f"{user}:{secret}")
    with _lock:
        _forms.update(forms)
        if not _installed:
            _install_log_filter()
            _installed = True


def redact(text: str) -> str:
    """``text`` with every registered credential form replaced by ``***``."""
    if not _forms or not text:
        return text
    for form in sorted(_forms, key=len, reverse=True):
        if form in text:
            text = text.replace(form, MASK)
    return text


_URL = re.compile(
    r"^(?P<scheme>[^:/?#]+:)?(?P<rest>//[^?#]*|[^?#]*)(?P<query>\?[^#]*)?(?P<frag>#.*)?$", re.S
)
_MIN_URL_SECRET = 8  # a query value this long may be a token; shorter ones are words


def redact_url(url: str) -> str:
    """``url`` as a message may show it: no ``user:password@`` (everything up to the last
    ``@`` of the part before the query is taken for credentials), the query string and
    fragment replaced by ``***``; their values are registered as secrets (``register``), so
    that a message quoting the URL some other way cannot show them either. Never raises."""
    match = _URL.match(url)
    if match is None:  # pragma: no cover (the pattern matches any string)
        return MASK
    scheme, rest = match["scheme"] or "", match["rest"]
    query, frag = match["query"], match["frag"]
    if rest.startswith("//") and "@" in rest:
        userinfo, _, host = rest[2:].rpartition("@")
        user, _, password = userinfo.partition(":")
        register(password or user, user=user if password else None)
        register(urllib.parse.unquote(password or user))
        rest = "//" + host
    for part in (query, frag):
        for value in re.split(r"[?#&;=]", (part or "")[1:]):
            if len(value) >= _MIN_URL_SECRET:
                register(value)
                register(urllib.parse.unquote_plus(value))
    return scheme + rest + ("?" + MASK if query else "") + ("#" + MASK if frag else "")


def describe_bad_key(key: str) -> str | None:
    """What makes ``key`` unfit for an HTTP header (never the key itself), or None."""
    bad = next((i for i, c in enumerate(key) if not ("!" <= c <= "~")), None)
    if bad is None:
        return None
    register(key)  # a later message must not show it either
    char = key[bad]
    if char in "\r\n":
        kind = "a line break (CR or LF)"
    elif char.isspace():
        kind = "whitespace"
    elif ord(char) < 0x20 or ord(char) == 0x7F:
        kind = "a control character"
    else:
        kind = "a non-ASCII character"
    return f"contains {kind} at position {bad + 1} of {len(key)} (not shown)"


def _install_log_filter() -> None:
    """Every log record, of any logger, is redacted when it is made; every warning when it
    is formatted for display."""
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _forms:
            try:
                message = record.getMessage()
            except Exception:  # a bad format string: leave it to logging to report
                return record
            clean = redact(message)
            if clean != message:
                record.msg, record.args = clean, None
        return record

    logging.setLogRecordFactory(factory)

    show = warnings.formatwarning  # what the default warning display prints through

    def formatwarning(*args: Any, **kwargs: Any) -> str:
        return redact(show(*args, **kwargs))

    warnings.formatwarning = formatwarning
