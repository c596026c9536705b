"""A loopback S3 answering ``HEAD /<bucket>`` only for requests carrying a valid SigV4.

The signature is recomputed from the request as received (AWS Signature Version 4:
canonical request -> string to sign -> HMAC chain of date/region/service), so a pass proves
that *Envoy* signed with the keys from the credentials file after rewriting Host.
S3's answers: 200 with ``x-amz-bucket-region``, 404 for an unknown bucket, 403 for a
missing or wrong signature (HEAD responses carry no body).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import quote

from aiohttp import web

from tests.support.serving import serving

__all__ = ["FakeS3", "running_fake_s3"]


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


@dataclass
class FakeS3:
    access_key_id: str
    secret_access_key: str
    buckets: set[str]
    region: str = "us-east-1"
    port: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def verify(self, request: web.Request) -> str:
        """ "ok" or why the signature is refused."""
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return "missing SigV4 Authorization"
        fields = dict(
            part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 ") :].split(",")
        )
        key_id, date, region, service, _ = fields["Credential"].split("/")
        if key_id != self.access_key_id:
            return "InvalidAccessKeyId"
        signed = fields["SignedHeaders"].split(";")
        canonical_headers = "".join(
            f"{name}:{' '.join(request.headers.get(name, '').split())}\n" for name in signed
        )
        query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
            for k, v in sorted(request.query.items())
        )
        payload = request.headers.get("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
        canonical = "\n".join(
            [
                request.method,
                quote(request.path, safe="/-_.~"),
                query,
                canonical_headers,
                fields["SignedHeaders"],
                payload,
            ]
        )
        scope = f"{date}/{region}/{service}/aws4_request"
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256",
                request.headers.get("x-amz-date", ""),
                scope,
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        key = f"AWS4{self.secret_access_key}".encode()
        for part in (date, region, service, "aws4_request"):
            key = _hmac(key, part)
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, fields["Signature"]):
            return "SignatureDoesNotMatch"
        if "host" not in signed:
            return "Host is not signed"
        return "ok"

    async def head_bucket(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        verdict = self.verify(request)
        self.verdicts.append(verdict)
        if verdict != "ok":
            return web.Response(status=403)
        if request.match_info["bucket"] not in self.buckets:
            return web.Response(status=404)
        return web.Response(status=200, headers={"x-amz-bucket-region": self.region})


@asynccontextmanager
async def running_fake_s3(
    access_key_id: str, secret_access_key: str, buckets: set[str]
) -> AsyncIterator[FakeS3]:
    fake = FakeS3(access_key_id, secret_access_key, buckets)
    app = web.Application()
    app.router.add_route("HEAD", "/{bucket}", fake.head_bucket)
    async with serving(app) as fake.port:
        yield fake
