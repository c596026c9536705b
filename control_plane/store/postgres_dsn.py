"""Keeping a PostgreSQL DSN's password out of messages and logs.

A DSN comes from the settings and may carry a password in the URL's userinfo, in its
query (``?password=``) or as a ``password=`` keyword; the driver may echo it back in an
error. :func:`redact_dsn` is what the store shows of its DSN, :func:`scrub` what it does
to a driver's message before that message leaves the store.
"""

from __future__ import annotations

import contextlib
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["REDACTED", "redact_dsn", "scrub"]

REDACTED = "***"
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***`` (URL userinfo, query or keywords)."""
    if "://" not in dsn:
        return _KEYWORD_PASSWORD.sub(rf"\g<1>{REDACTED}", dsn)
    try:
        parts = urlsplit(dsn)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostinfo = netloc.rpartition("@")
            user, has_password, _ = userinfo.partition(":")
            netloc = f"{user}:{REDACTED}@{hostinfo}" if has_password else netloc
        query = urlencode(
            [
                (key, REDACTED if key.lower() == "password" else value)
                for key, value in parse_qsl(parts.query, keep_blank_values=True)
            ],
            safe="*",
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparseable dsn>"


def _passwords(dsn: str) -> list[str]:
    """Every spelling of the password found in ``dsn`` (to scrub driver messages)."""
    found: list[str] = []
    with contextlib.suppress(ValueError):
        parts = urlsplit(dsn)
        if parts.password:
            found.append(parts.password)
        found += [v for k, v in parse_qsl(parts.query) if k.lower() == "password" and v]
        if "@" in parts.netloc:
            raw = parts.netloc.rpartition("@")[0].partition(":")[2]
            if raw:
                found.append(raw)
    found += [m.group(2).strip("'") for m in _KEYWORD_PASSWORD.finditer(dsn)]
    return [p for p in found if p]


def scrub(detail: str, dsn: str) -> str:
    """``detail`` with every spelling of ``dsn``'s password replaced by ``***``."""
    for secret in _passwords(dsn):
        detail = detail.replace(secret, REDACTED)
    return detail
