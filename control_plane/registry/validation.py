"""Turn JSON Schema errors into problems that say what is wrong and how to fix it.

Messages never quote values found under ``credentials``: a literal secret pasted there
must not be echoed into a terminal, a log line or an API response.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from jsonschema.exceptions import ValidationError

from control_plane.registry.schema_memo import memo_validator
from control_plane.registry.yamlmarks import MarkedDocument, Path

__all__ = ["schema_problems"]

# A help text, not a password (bandit's S105 matches the word "SECRET").
_SECRET_HINT = (
    "credentials hold references, never values: put the secret in an environment variable "  # noqa: S105
    "or a mounted file and write 'env:STRIPE_SECRET_KEY' or 'file:/run/secrets/stripe-key'"
)


def _is_secret_path(path: Path) -> bool:
    return "credentials" in path or any(
        p in ("ca_bundle", "client_cert", "client_key") for p in path if isinstance(p, str)
    )


def _show(value: Any, path: Path) -> str:
    if _is_secret_path(path):
        return "the value"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _branches(error: ValidationError) -> dict[int, list[ValidationError]]:
    groups: dict[int, list[ValidationError]] = {}
    for sub in error.context or ():
        index = sub.schema_path[0] if sub.schema_path else 0
        groups.setdefault(int(index), []).append(sub)
    return groups


def _leaves(error: ValidationError) -> Iterator[ValidationError]:
    """For oneOf/anyOf, descend into the one branch that matches the value's type."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        candidates = [
            subs
            for subs in _branches(error).values()
            if not any(s.validator == "type" and not s.relative_path for s in subs)
        ]
        if len(candidates) == 1:
            for sub in candidates[0]:
                yield from _leaves(sub)
            return
    yield error


def _message(error: ValidationError, path: Path) -> tuple[str, str, bool]:
    """(message, fix, points at a key) for one leaf error."""
    v = error.validator
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    instance: Any = error.instance
    expected: Any = error.validator_value
    last = path[-1] if path else ""
    if "propertyNames" in error.schema_path:
        what = "credential" if last == "credentials" else "name"
        if v == "enum":
            allowed = ", ".join(map(str, expected))
            return (f"unknown {what} {instance!r} for this kind", f"use one of: {allowed}", True)
        return (
            f"{what} {instance!r} is not allowed",
            "use lowercase letters, digits and '_'",
            True,
        )
    if v == "pattern" and _is_secret_path(path):
        return ("a literal secret is not allowed here", _SECRET_HINT, False)
    if v == "pattern":
        if last == "id":
            return (
                f"{_show(instance, path)} is not a valid id",
                "use a DNS label: lowercase letters, digits and '-', starting and ending "
                "with a letter or digit, at most 63 characters (e.g. 'stripe-payments')",
                False,
            )
        if "url" in path or last == "upstream":
            return (
                f"{_show(instance, path)} is not an upstream URL",
                "write https://host[:port], http://host:port, tcp://host:port or tls://host:port",
                False,
            )
        if "(ms|s|m|h)" in str(expected):
            return (
                f"{_show(instance, path)} is not a duration",
                "write e.g. 250ms, 10s or 2m",
                False,
            )
        return (
            f"{_show(instance, path)} does not match the expected form",
            f"match the pattern {expected}",
            False,
        )
    if v == "enum":
        allowed = ", ".join(str(x) for x in expected)
        return (f"{_show(instance, path)} is not allowed here", f"use one of: {allowed}", False)
    if v == "const":
        return (f"{_show(instance, path)} is not allowed", f"use {expected!r}", False)
    if v == "type":
        return (
            f"{_show(instance, path)} has the wrong type",
            f"use a value of type {expected}",
            False,
        )
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        hi = schema.get("maximum", schema.get("exclusiveMaximum"))
        # An exclusive bound is not itself allowed: say "above"/"below", never offer it.
        low = f"above {lo}" if "minimum" not in schema else f"at least {lo}"
        high = f"below {hi}" if "maximum" not in schema else f"at most {hi}"
        if lo is not None and hi is not None:
            if "minimum" in schema and "maximum" in schema:
                fix = f"use a value from {lo} to {hi}"
            else:
                fix = f"use a value {low} and {high}"
        elif lo is not None:
            fix = f"use a value {low}"
        else:
            fix = f"use a value {high}"
        what = "port" if "port" in str(last) else "value"
        return (f"{what} {_show(instance, path)} is out of range", fix, False)
    if v == "required":
        missing = [k for k in expected if k not in (instance or {})]
        return (f"missing required field(s): {', '.join(missing)}", f"add {missing[0]!r}", False)
    if v == "additionalProperties":
        names = sorted(schema.get("properties", {}))
        extras = [k for k in instance if k not in names] if isinstance(instance, dict) else []
        fix = f"remove it or check its spelling; allowed: {', '.join(names)}" if names else ""
        return (f"unknown field(s): {', '.join(map(str, extras))}", fix, True)
    if v == "maxProperties" and last == "credentials":
        return ("this kind takes no credentials", "remove the credentials block", False)
    if v in ("anyOf", "oneOf"):
        desc = schema.get("description") or "it does not match any accepted form"
        if last == "rate_limit" and isinstance(instance, dict):
            return (
                "a rate limit needs either 'rule' or 'requests'",
                "add 'rule: <name from rate_limits.yaml>' or 'requests: N' (with 'per')",
                False,
            )
        if last == "upstream" or (isinstance(instance, dict) and "anyOf" in schema):
            if isinstance(instance, dict) and not ({"url", "host"} & set(instance)):
                return ("missing 'url' or 'host'", "add 'url: https://host' or 'host: name'", False)
            return ("unknown upstream form", "write a URL string or a mapping with url/host", False)
        return (f"{_show(instance, path)} is not valid: {desc}", "", False)
    if v in ("minLength", "maxLength"):
        return (
            f"{_show(instance, path)} has the wrong length",
            f"{v} {expected}",
            False,
        )
    return (error.message if not _is_secret_path(path) else "invalid value", "", False)


def schema_problems(doc: MarkedDocument, schema: Mapping[str, Any], base: Path = ()) -> list[Any]:
    """Every schema violation of ``doc.data`` (at ``base``) as a located problem."""
    instance: Any = doc.data
    for part in base:
        instance = instance[part]
    with memo_validator(schema) as validator:
        errors = list(validator.iter_errors(instance))
    problems = []
    seen: set[tuple[str, str]] = set()
    for error in errors:
        for leaf in _leaves(error):
            path: Path = (*base, *leaf.absolute_path)
            message, fix, key = _message(leaf, path)
            leaf_schema: Any = leaf.schema
            if key and leaf.validator == "additionalProperties" and isinstance(leaf.instance, dict):
                allowed = set(leaf_schema.get("properties", {}))
                extras = [k for k in leaf.instance if k not in allowed]
                if extras:
                    path = (*path, extras[0])
            if "propertyNames" in leaf.schema_path:
                path = (*path, str(leaf.instance))
            problem = doc.problem(path, message, fix, key=key)
            signature = (problem.pointer, problem.message)
            if signature not in seen:
                seen.add(signature)
                problems.append(problem)
    problems.sort(key=lambda p: (p.line or 0, p.column or 0, p.pointer))
    return problems
