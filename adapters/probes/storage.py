"""S3 storage: boto3 ``HeadBucket`` through the sidecar, sent *unsigned*.

Envoy signs (its ``aws_request_signing`` upstream filter, SigV4, keys from an AWS
credentials file only Envoy reads), and the client does not, because:

* the app then holds no AWS keys at all -- the point of the sidecar;
* a client signature would cover ``Host: 127.0.0.1:<port>``, which Envoy rewrites to the
  upstream's name, so S3 would reject it (SignatureDoesNotMatch); signing must happen
  after the rewrite, i.e. in Envoy.

So boto3 uses ``botocore.UNSIGNED`` (no ``Authorization``, no ``X-Amz-*`` auth headers) and
path-style addressing (the bucket in the path: virtual-host style would put it in a Host
name the sidecar port cannot carry). HEAD responses have no body, so S3's error code is
not available: the status decides the step (403 auth, 404 head_bucket, 5xx connect).
boto3 is synchronous; the call runs in a worker thread with boto's own timeouts set.
"""

from __future__ import annotations

import asyncio
from typing import Any

from adapters.probes.context import ProbeContext
from adapters.probes.result import ProbeResult

__all__ = ["probe"]


def _head_bucket(endpoint: str, region: str, bucket: str, timeout: float) -> Any:
    # Imported here: boto3's import is slow and only the probe needs it.
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        config=Config(
            signature_version=UNSIGNED,
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=timeout,
            read_timeout=timeout,
        ),
    )
    try:
        return client.head_bucket(Bucket=bucket)
    finally:
        client.close()


async def probe(ctx: ProbeContext) -> ProbeResult:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = ctx.settings.get("bucket")
    if not bucket:
        return ctx.fail("settings.bucket is not set: HeadBucket needs a bucket", "config")
    region = str(ctx.settings.get("region", "us-east-1"))
    ctx.at("head_bucket")
    try:
        response = await asyncio.to_thread(
            _head_bucket, ctx.base_url, region, str(bucket), ctx.timeout
        )
    except ClientError as exc:
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if status in (401, 403):
            return ctx.fail(
                f"HeadBucket {bucket} -> {status}: the storage service refused the request "
                "Envoy signed (check the AWS credentials file and region)",
                "auth",
            )
        if status == 404:
            return ctx.fail(f"HeadBucket {bucket} -> 404: no such bucket")
        if status >= 500:
            return ctx.fail(
                f"HeadBucket {bucket} -> {status} (the sidecar or the storage service failed)",
                "connect" if status == 503 else "head_bucket",
            )
        return ctx.fail(f"HeadBucket {bucket} -> {status}")
    except BotoCoreError as exc:
        return ctx.fail(f"no answer through sidecar port {ctx.port}: {exc}", "connect")
    region_seen = response.get("BucketRegion") or region
    return ctx.ok(f"HeadBucket {bucket} -> 200 (region {region_seen})")
