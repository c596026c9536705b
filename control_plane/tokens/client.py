"""The OAuth2 client-credentials grant (RFC 6749 section 4.4) over aiohttp.

Client authentication (RFC 6749 section 2.3.1, RFC 7523 section 2.2):

* ``client_secret_basic``: ``Authorization: Basic base64(urlencode(id):urlencode(secret))``;
* ``client_secret_post``: ``client_id`` and ``client_secret`` in the form (Auth0's default);
* ``private_key_jwt``: a JWT signed with the client's private key (pyjwt), ``iss``/``sub`` the
  client id, ``aud`` the token endpoint, a fresh ``jti``, valid for 60 s.

Written here rather than taken from Authlib: Authlib's async client is built on httpx, the
service's HTTP stack is aiohttp, and the grant is one form POST and one JSON answer; what
matters for safety is around it (no redirects followed -- a 307 would re-send the secret
elsewhere --, addresses checked on every connection, bounded answers, errors that never
quote a token), and that is ours to get right either way.

The token endpoint of an API-registered integration is reached only at addresses the SSRF
rules accept (:class:`GuardedResolver`), checked when the connection is made, so a name
re-pointed at an internal address after registration never receives the client secret.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from control_plane.observability.logging import scrub
from control_plane.registry.token_mode import TokenGrant
from control_plane.security.ssrf import Allowlist, classify, parse_ip_literal
from control_plane.tokens.schedule import Minted

__all__ = ["GuardedResolver", "TokenError", "fetch_token", "token_form"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# A bearer token goes into a header: visible ASCII only (RFC 6750 b64token is narrower).
_TOKEN = re.compile(r"^[\x21-\x7e]{1,8192}\Z")
_ERROR_CODE = re.compile(r"^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}\Z")  # RFC 6749 section 5.2
_MAX_BODY = 64 * 1024
# Used when the answer has no expires_in (it is only RECOMMENDED): short, so a token of
# unknown lifetime is replaced soon rather than injected long after it expired.
DEFAULT_EXPIRES_IN = 300


class TokenError(Exception):
    """A failed token request; the message names the status and OAuth error, never a token
    or a credential."""


def _client_auth(
    grant: TokenGrant, values: Mapping[str, str], now: float
) -> tuple[dict[str, str], dict[str, str]]:
    """(form fields, headers) that authenticate the client."""
    client_id = values["client_id"].strip()
    if grant.auth_method == "client_secret_basic":
        user = f"{quote(client_id, safe='')}:{quote(values['client_secret'].strip(), safe='')}"
        basic = base64.b64encode(user.encode("utf-8")).decode("ascii")
        return {}, {"Authorization": f"Basic {basic}"}
    if grant.auth_method == "client_secret_post":
        return {"client_id": client_id, "client_secret": values["client_secret"].strip()}, {}
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": grant.token_url,
        "iat": int(now),
        "exp": int(now) + 60,
        "jti": uuid.uuid4().hex,
    }
    import jwt  # pyjwt (and cryptography) only for private_key_jwt clients (issue 20)

    assertion = jwt.encode(claims, values["client_assertion_key"], grant.assertion_algorithm)
    return {
        "client_id": client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }, {}


def token_form(
    grant: TokenGrant, values: Mapping[str, str], now: float
) -> tuple[dict[str, str], dict[str, str]]:
    """The form and headers of the token request (``values``: slot -> resolved value)."""
    auth_form, headers = _client_auth(grant, values, now)
    form = {"grant_type": "client_credentials", **grant.params, **auth_form}
    if grant.scopes:
        form["scope"] = " ".join(grant.scopes)
    if grant.audience:
        form["audience"] = grant.audience
    return form, {"Accept": "application/json", **headers}


def _failure(status: int, body: Any) -> TokenError:
    code = body.get("error") if isinstance(body, Mapping) else None
    detail = f"token endpoint answered HTTP {status}"
    if isinstance(code, str) and _ERROR_CODE.match(code):
        detail += f" ({code})"
    return TokenError(scrub(detail))


async def fetch_token(
    session: aiohttp.ClientSession,
    grant: TokenGrant,
    values: Mapping[str, str],
    *,
    timeout_s: float = 10.0,
    clock: Any = time.time,
    allowlist: Allowlist | None = None,
) -> Minted:
    """Perform the grant; raise :class:`TokenError` on any failure. ``allowlist``: apply
    the SSRF rules to an address literal in the URL (aiohttp connects to those without
    asking the resolver; names are checked by the session's :class:`GuardedResolver`)."""
    literal = parse_ip_literal(grant.token_host)
    if allowlist is not None and literal is not None:
        rule = classify(literal)
        if rule is not None and not allowlist.permits_ip(literal):
            raise TokenError(f"token endpoint address refused by the SSRF rules ({rule})")
    now = clock()
    form, headers = token_form(grant, values, now)
    try:
        async with session.post(
            grant.token_url,
            data=form,
            headers=headers,
            allow_redirects=False,  # a redirect would carry the client secret elsewhere
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            raw = await response.content.read(_MAX_BODY + 1)
            status = response.status
    except TimeoutError:
        raise TokenError(f"token endpoint did not answer within {timeout_s:g}s") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise TokenError(scrub(f"token endpoint unreachable: {type(exc).__name__}")) from None
    try:
        body = json.loads(raw) if len(raw) <= _MAX_BODY else None
    except ValueError:
        body = None
    if status != 200:
        raise _failure(status, body)
    if not isinstance(body, Mapping):
        raise TokenError("token endpoint answered 200 without a JSON object")
    token, kind = body.get("access_token"), body.get("token_type")
    if not isinstance(token, str) or not _TOKEN.match(token):
        raise TokenError("token endpoint answered without a usable access_token")
    if not isinstance(kind, str) or kind.lower() != "bearer":
        raise TokenError("token endpoint issued a token that is not a bearer token")
    expires_in = body.get("expires_in", DEFAULT_EXPIRES_IN)
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)  # some providers send it as a string
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        raise TokenError("token endpoint answered with an invalid expires_in")
    return Minted(token=token, issued_at=now, expires_at=now + float(expires_in))


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then keeps only the addresses the SSRF
    rules accept (or the allow-list names); none left is a connection error."""

    def __init__(self, allowlist: Allowlist, inner: AbstractResolver | None = None) -> None:
        self._allowlist = allowlist
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._allowlist.permits_name(host):
            return await self._inner.resolve(host, port, family)
        literal = parse_ip_literal(host)
        answers = await self._inner.resolve(str(literal) if literal else host, port, family)
        kept = []
        for answer in answers:
            ip = parse_ip_literal(answer["host"])
            if ip is None:
                continue
            if classify(ip) is None or self._allowlist.permits_ip(ip):
                kept.append(answer)
        if not kept:
            raise OSError(f"no address of {host} is allowed by the SSRF rules")
        return kept

    async def close(self) -> None:
        await self._inner.close()
