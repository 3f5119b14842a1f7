"""The conversation load test's figures: a summary per level, the objective, the table."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.loadtest.conversation import TurnRecord
from services.loadtest.stats import distribution

STAGES = (
    "stt_final",
    "translate_in",
    "llm_first_token",
    "first_sentence",
    "translate_out_first",
    "tts_first_audio",
)
_OBJECTIVE = re.compile(
    r"^\s*(?P<metric>[a-z_]+)\.(?P<q>p50|p90|p95|p99|max)\s*<=?\s*"
    r"(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|s)?\s*$"
)


@dataclass(frozen=True)
class Objective:
    """`first_audio.p95<1500ms`: 95% of the successful turns within 1.5 s."""

    metric: str  # first_audio, turn, or a stage of the latency breakdown
    key: str  # p50, p90, p95, p99 or max
    limit_ms: float
    max_error_rate: float = 0.01

    def value(self, level: dict[str, Any]) -> float | None:
        """The level's figure for this objective, in milliseconds; None when no turn succeeded."""
        dist = (
            level["first_audio_ms"]
            if self.metric == "first_audio"
            else level["turn_ms"]
            if self.metric == "turn"
            else level["stages_ms"].get(self.metric)
        )
        return None if not dist else float(dist[self.key])

    def check(self, level: dict[str, Any]) -> tuple[bool, str]:
        """Whether a level meets the objective (error rate included), and a line saying why."""
        value = self.value(level)
        if value is None:
            return False, "no successful turn"
        rate = level["failed"] / level["turns"] if level["turns"] else 0.0
        if rate > self.max_error_rate:
            return False, f"error rate {rate:.0%} > {self.max_error_rate:.0%}"
        ok = value <= self.limit_ms
        return (
            ok,
            f"{self.metric}.{self.key} {value:.0f} ms {'<=' if ok else '>'} {self.limit_ms:g} ms",
        )

    def __str__(self) -> str:
        return f"{self.metric}.{self.key} < {self.limit_ms:g} ms"


def parse_objective(text: str, max_error_rate: float = 0.01) -> Objective:
    """An Objective from text such as `first_audio.p95<1500ms` (or `turn.p50<3s`); raises
    ValueError for anything else or a limit that is not above 0."""
    match = _OBJECTIVE.match(text)
    metrics = ("first_audio", "turn", *STAGES)
    if not match or match["metric"] not in metrics:
        raise ValueError(
            f"objective {text!r} not understood: write it like "
            f"first_audio.p95<1500ms; metrics: {', '.join(metrics)}"
        )
    value = float(match["value"]) * (1000 if match["unit"] == "s" else 1)
    if value <= 0:
        raise ValueError(f"objective {text!r}: the limit must be above 0")
    return Objective(match["metric"], match["q"], value, max_error_rate)


def summarize_level(clients: int, records: Sequence[TurnRecord], wall_s: float) -> dict[str, Any]:
    """One level's JSON-ready summary: turn counts, errors by code with a sample message, and
    distributions in milliseconds of first audio, turn time, stages and playback."""
    good = [r for r in records if r.ok]
    errors = Counter(r.code for r in records if not r.ok)
    samples: dict[str, str] = {}
    for r in records:
        if not r.ok:
            samples.setdefault(r.code, r.message)
    played = [r.playback for r in good if r.playback is not None]
    stage_names = [s for s in STAGES if any(s in r.stages_ms for r in good)]
    return {
        "clients": clients,
        "turns": len(records),
        "succeeded": len(good),
        "failed": len(records) - len(good),
        "wall_s": wall_s,
        "errors": dict(errors.most_common()),
        "error_samples": samples,
        "first_audio_ms": distribution(
            [r.first_audio_s for r in good if r.first_audio_s is not None]
        ),
        "turn_ms": distribution([r.turn_s for r in good if r.turn_s is not None]),
        "stages_ms": {
            s: distribution([r.stages_ms[s] / 1000 for r in good if s in r.stages_ms])
            for s in stage_names
        },
        "glitched_turns": sum(p.glitched for p in played),
        "underruns": sum(p.underruns for p in played),
        "stalled_ms": 1000 * sum(p.stalled_s for p in played),
        "reply_audio_s": sum(p.audio_s for p in played),
        "early_replies": sum(r.early for r in records),
    }


def best_level(levels: Sequence[dict[str, Any]]) -> int | None:
    """The largest number of clients whose level met the objective."""
    passed = [lv["clients"] for lv in levels if lv.get("objective", {}).get("met")]
    return max(passed) if passed else None


def _ms(dist: dict[str, float] | None, key: str) -> str:
    return "-" if not dist else f"{dist[key]:.0f}"


def table(doc: dict[str, Any]) -> str:
    """The result document as a text table, one line per level."""
    s = doc["settings"]
    lines = [
        f"milo loadtest conversation {doc['address']}  ({doc.get('server', '')})",
        f"{s['input']} turns, {s['turns']} per person, think time {s['think_s']:g} s, "
        f"player buffer {s['buffer_ms']:g} ms; times from the end of speech, ms",
        "",
        f"{'clients':>7} {'turns':>6} {'ok':>4} {'first audio p50':>16} {'p95':>6} "
        f"{'turn p50':>9} {'p95':>6} {'glitched':>9} {'early':>6}  errors",
    ]
    for lv in doc["levels"]:
        errors = ", ".join(f"{c} {n}" for c, n in lv["errors"].items()) or "none"
        lines.append(
            f"{lv['clients']:>7} {lv['turns']:>6} {lv['succeeded']:>4} "
            f"{_ms(lv['first_audio_ms'], 'p50'):>16} "
            f"{_ms(lv['first_audio_ms'], 'p95'):>6} {_ms(lv['turn_ms'], 'p50'):>9} "
            f"{_ms(lv['turn_ms'], 'p95'):>6} {lv['glitched_turns']:>9} "
            f"{lv['early_replies']:>6}  {errors}"
        )
    lines += [
        "",
        "stages from the turn's latency breakdown, p50 / p95 ms:",
        f"{'clients':>7} " + " ".join(f"{s:>20}" for s in STAGES),
    ]
    for lv in doc["levels"]:
        cells = [
            f"{_ms(lv['stages_ms'].get(s), 'p50')} / {_ms(lv['stages_ms'].get(s), 'p95')}"
            for s in STAGES
        ]
        lines.append(f"{lv['clients']:>7} " + " ".join(f"{c:>20}" for c in cells))
    for lv in doc["levels"]:
        for code, message in lv["error_samples"].items():
            lines.append(f"{lv['clients']} clients, {code}: {message[:100]}")
    objective = doc.get("objective")
    if objective:
        lines.append("")
        for lv in doc["levels"]:
            o = lv["objective"]
            lines.append(
                f"{lv['clients']:>7} clients: {'meets' if o['met'] else 'misses'} ({o['reason']})"
            )
        best = doc.get("best_level")
        lines.append(
            f"largest level meeting {objective}: "
            + (f"{best} clients" if best is not None else "none")
        )
    return "\n".join(lines)
