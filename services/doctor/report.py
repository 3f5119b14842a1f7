"""What `milo doctor` found: one `Finding` per check, printed as a table a person reads.

A finding is `ok`, `warn` (Milo runs, but not as the user probably wants) or `fail` (a
service would refuse to start or answer wrongly). Every finding that is not ok says what
to run or change (`fix`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

Level = Literal["ok", "warn", "fail"]

_MARK: dict[Level, str] = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


@dataclass(frozen=True)
class Finding:
    """One check's result.

    subject: what was checked ("stt", "translate", "llm", "tts", "gpu", "ports", "network").
    message: what was found, in words a person understands.
    fix: what to run or change; empty when there is nothing to do.
    """

    level: Level
    subject: str
    message: str
    fix: str = ""


def ok(subject: str, message: str) -> Finding:
    """A check that passed."""
    return Finding("ok", subject, message)


def warn(subject: str, message: str, fix: str = "") -> Finding:
    """A problem Milo can run with; `fix` says what would solve it."""
    return Finding("warn", subject, message, fix)


def fail(subject: str, message: str, fix: str = "") -> Finding:
    """A problem that stops Milo; `fix` says what would solve it."""
    return Finding("fail", subject, message, fix)


def failed(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that would stop Milo."""
    return [f for f in findings if f.level == "fail"]


def exit_code(findings: Sequence[Finding]) -> int:
    """0 when nothing would fail (warnings allowed), 1 otherwise."""
    return 1 if failed(findings) else 0


def format_report(findings: Sequence[Finding]) -> str:
    """One line per finding (with its fix indented below), then a one-line verdict."""
    lines = []
    for f in findings:
        lines.append(f"{_MARK[f.level]}  {f.subject:<10} {f.message}")
        if f.fix:
            lines.append(f"{'':16}-> {f.fix}")
    fails = len(failed(findings))
    warns = sum(f.level == "warn" for f in findings)
    if fails:
        lines.append(f"\n{fails} problem(s) would stop Milo, {warns} warning(s).")
    else:
        lines.append(f"\nMilo is ready to start ({warns} warning(s)).")
    return "\n".join(lines)


def report_json(findings: Sequence[Finding]) -> dict[str, Any]:
    """The findings as a JSON-ready dict: `{"ok": bool, "findings": [Finding fields, ...]}`."""
    return {"ok": not failed(findings), "findings": [asdict(f) for f in findings]}
