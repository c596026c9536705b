"""``integration-service`` command line: validate, render, run, test."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from control_plane.app.wiring import credential_policy
from control_plane.model import Integration, to_document
from control_plane.problems import RegistryError
from control_plane.registry.grants import GrantsFile
from control_plane.registry.loader import load_integrations_file, load_rate_limits
from control_plane.settings import Settings, load_settings

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="integration-service",
        description="Envoy-fronted sidecar and control plane for outbound integrations.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="service settings file (default config/integration_service.yaml)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check an integrations file; exit 2 with every problem")
    p.add_argument("file", nargs="?", type=Path, help="default: config/integrations.yaml")
    p.add_argument("--rate-limits", type=Path, help="default: config/rate_limits.yaml")

    p = sub.add_parser("render", help="print the normalized registry or the Envoy config")
    p.add_argument("file", nargs="?", type=Path, help="default: config/integrations.yaml")
    p.add_argument("--rate-limits", type=Path)
    p.add_argument(
        "--format",
        choices=["yaml", "json", "envoy", "bootstrap"],
        default="yaml",
        help="yaml/json: normalized registry; envoy: equivalent static Envoy config; "
        "bootstrap: the ADS bootstrap for a separate Envoy container",
    )

    p.add_argument(
        "--topology",
        choices=["pod", "shared"],
        default="pod",
        help="with --format bootstrap: pod (Envoy beside its control plane) or shared "
        "(an application pod's Envoy, xDS over TLS to the control-plane Service)",
    )
    p.add_argument(
        "--xds-address",
        action="append",
        metavar="HOST:PORT",
        help="shared bootstrap: a control-plane address (repeat for several; default "
        "integration-control-plane.integration-system.svc:18000)",
    )
    p.add_argument(
        "--tls-dir",
        type=Path,
        default=Path("/etc/envoy/xds-tls"),
        help="shared bootstrap: the directory of tls.crt, tls.key and ca.crt",
    )
    p.add_argument(
        "--server-name",
        help="shared bootstrap: the DNS SAN the control plane's certificate must carry "
        "(default: the first address's host)",
    )
    p.add_argument("--node-id", help="bootstrap node id (Envoy's --service-node overrides it)")
    p.add_argument(
        "--output-dir",
        type=Path,
        help="shared bootstrap: write bootstrap.yaml and its two SDS files here (they are "
        "read from --sds-dir; default: print bootstrap.yaml only)",
    )
    p.add_argument(
        "--sds-dir",
        type=Path,
        default=Path("/etc/envoy/bootstrap"),
        help="shared bootstrap: where Envoy finds the SDS files (the bootstrap's directory)",
    )
    p.add_argument(
        "--include-secrets",
        action="store_true",
        help="with --format envoy: resolve credential values into the output "
        "(default: <redacted:REFERENCE>)",
    )

    p = sub.add_parser("run", help="run the control plane (and Envoy unless --no-envoy)")
    p.add_argument("--integrations", type=Path, help="default: config/integrations.yaml")
    p.add_argument(
        "--no-envoy",
        action="store_true",
        help="do not spawn Envoy (Kubernetes: Envoy is its own container)",
    )
    p.add_argument("--host")
    p.add_argument("--port", type=int)

    p = sub.add_parser("test", help="probe integrations through the sidecar and print a table")
    p.add_argument("ids", nargs="*", help="integration ids (default: all enabled)")
    p.add_argument(
        "--url",
        default=None,
        help="management API base URL (default http://127.0.0.1:$INTEGRATION_SERVICE_PORT)",
    )
    return parser


def _rules_path(args: argparse.Namespace, default: Path) -> Path:
    return args.rate_limits if getattr(args, "rate_limits", None) else default


def _declared(args: argparse.Namespace, settings: Settings, file: Path) -> list[Integration]:
    """The integrations ``file`` declares, validated like the service does (rate-limit rules
    and the credential policy: reserved references, file roots, grants)."""
    rules = load_rate_limits(_rules_path(args, settings.rate_limits_file))
    grants = GrantsFile(settings.grants_file, credential_policy(settings))
    grants.load()
    return load_integrations_file(file, rules, grants.policy)


def _validate(args: argparse.Namespace) -> int:
    settings = load_settings(os.environ, args.config)
    file = args.file or settings.integrations_file
    try:
        items = _declared(args, settings, file)
    except RegistryError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_INVALID
    print(f"{file}: OK, {len(items)} integration(s)")
    return EXIT_OK


def _render(args: argparse.Namespace) -> int:
    settings = load_settings(os.environ, args.config)
    file = args.file or settings.integrations_file
    if args.format == "bootstrap":
        from control_plane.sidecar.bootstrap import (
            NODE_CLUSTER,
            shared_bootstrap,
            sidecar_bootstrap,
        )

        if args.topology == "pod":
            print(sidecar_bootstrap(settings))
            return EXIT_OK
        addresses = []
        for raw in args.xds_address or ["integration-control-plane.integration-system.svc:18000"]:
            host, _, port = raw.rpartition(":")
            if not host or not port.isdigit():
                print(f"--xds-address {raw!r}: write HOST:PORT", file=sys.stderr)
                return EXIT_INVALID
            addresses.append((host.strip("[]"), int(port)))
        files = shared_bootstrap(
            node_id=args.node_id or settings.envoy_node_id,
            node_cluster=NODE_CLUSTER,
            xds_addresses=addresses,
            tls_dir=args.tls_dir,
            sds_dir=args.sds_dir,
            server_name=args.server_name or addresses[0][0],
            admin_port=settings.envoy_admin_port,
            delta=settings.xds_delta,
        )
        if args.output_dir is None:
            print(files["bootstrap.yaml"], end="")
            return EXIT_OK
        args.output_dir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (args.output_dir / name).write_text(text, encoding="utf-8")
            print(args.output_dir / name)
        return EXIT_OK
    try:
        items = _declared(args, settings, file)
    except RegistryError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_INVALID
    if args.format == "envoy":
        from control_plane.cli.render import render_envoy_static

        out: Any = render_envoy_static(
            items, settings, include_secrets=args.include_secrets, environ=os.environ
        )
        print(json.dumps(out, indent=2, sort_keys=True))
        return EXIT_OK
    docs = {"integrations": [to_document(i, with_meta=False) for i in items]}
    if args.format == "json":
        print(json.dumps(docs, indent=2, sort_keys=True))
    else:
        print(yaml.safe_dump(docs, sort_keys=False), end="")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from control_plane.app import run_service

    settings = load_settings(
        os.environ,
        args.config,
        integrations_file=args.integrations,
        host=args.host,
        port=args.port,
    )
    try:
        return asyncio.run(run_service(settings, with_envoy=not args.no_envoy))
    except RegistryError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        return EXIT_OK


def _test(args: argparse.Namespace) -> int:
    from control_plane.probing.table import run_probe_table

    settings = load_settings(os.environ, args.config)
    url = args.url or f"http://127.0.0.1:{settings.port}"
    code: int = asyncio.run(run_probe_table(url, args.ids, os.environ))
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        handler = {"validate": _validate, "render": _render, "run": _run, "test": _test}
        return handler[args.command](args)
    except RegistryError as exc:  # invalid settings
        print(exc.render(), file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
