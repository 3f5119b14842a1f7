"""Tier 4: schemathesis, a property-based tester, against /openapi.json of the running stack:
no 500s, and every response matches its documented status, content type and schema.

Bounded: a few examples per operation, and generated LLM/TTS work is kept small (at most 8
tokens, 120 characters to speak) so the run costs seconds per operation, not minutes."""

from __future__ import annotations

import collections

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def bound(case) -> None:
    """Keep generated requests cheap to serve, without making them invalid."""
    body = case.body if isinstance(case.body, dict) else None
    if body is None:
        return
    for key in ("max_tokens", "max_completion_tokens"):
        if isinstance(body.get(key), int) and body[key] > 8:
            body[key] = 8
    if "messages" in body and body.get("max_tokens") is None:
        body["max_tokens"] = 8
    for key in ("text", "input"):
        if isinstance(body.get(key), str) and len(body[key]) > 120:
            body[key] = body[key][:120]


def operations(stack):
    schema = schemathesis.openapi.from_url(f"{stack.base}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_openapi_contract(stack):
    """Each operation in turn (schemathesis' pytest plugin does not run on pytest 9)."""
    failures, calls = [], collections.Counter[str]()
    ops = operations(stack)
    assert len(ops) >= 12, [op.label for op in ops]
    for operation in ops:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=6,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case) -> None:
            bound(case)
            calls[case.operation.label] += 1
            case.call_and_validate(checks=CHECKS, timeout=60)

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    print("schemathesis cases per operation:", dict(calls))
    assert all(calls[op.label] >= 1 for op in ops) and sum(calls.values()) >= 40, calls
