"""Tier 1: the conversation load test's player model, objective and summaries."""

from __future__ import annotations

import pytest

from services.loadtest.conversation import TurnRecord
from services.loadtest.conversation_app import parse_levels
from services.loadtest.conversation_report import (
    best_level,
    parse_objective,
    summarize_level,
    table,
)
from services.loadtest.player import Playback, play


def test_audio_faster_than_real_time_never_glitches():
    chunks = [(0.01 * i, 0.5) for i in range(10)]  # 5 s of audio in 0.1 s
    assert play(chunks) == Playback(5.0, 0, 0.0)


def test_audio_slower_than_real_time_runs_the_player_dry():
    chunks = [(1.0 * i, 0.5) for i in range(4)]  # half a second of audio per second
    out = play(chunks, buffer_ms=0)
    assert out.underruns == 3 and out.stalled_s == pytest.approx(1.5) and out.glitched


def test_the_jitter_buffer_absorbs_a_late_chunk_and_a_gap_between_sentences_counts():
    assert not play([(0.0, 0.2), (0.25, 0.2)], buffer_ms=100).glitched
    gap = play([(0.0, 0.2), (0.05, 0.2), (1.0, 0.2)], buffer_ms=100)
    assert gap.underruns == 1 and gap.stalled_s == pytest.approx(0.5)


def test_objective_grammar():
    o = parse_objective("first_audio.p95<1.5s")
    assert (o.metric, o.key, o.limit_ms) == ("first_audio", "p95", 1500)
    assert parse_objective("llm_first_token.p50<=300ms").metric == "llm_first_token"
    for bad in ("p95<1s", "first_audio.p97<1s", "nonsense.p95<1s", "turn.p95<0ms"):
        with pytest.raises(ValueError):
            parse_objective(bad)


def test_levels_grammar():
    assert parse_levels("1,2,4,8") == (1, 2, 4, 8)
    for bad in ("", "1,x", "0", "300"):
        with pytest.raises(ValueError):
            parse_levels(bad)


def record(first: float, glitch: bool = False, code: str = "OK") -> TurnRecord:
    playback = Playback(2.0, 1 if glitch else 0, 0.3 if glitch else 0.0)
    return TurnRecord(
        0,
        code,
        "why" if code != "OK" else "",
        first,
        first + 3,
        {"llm_first_token": 100.0},
        playback,
    )


def test_level_summary_and_the_largest_level_meeting_the_objective():
    objective = parse_objective("first_audio.p95<1500ms")
    levels = []
    for clients, firsts in ((1, [0.8, 0.9]), (2, [1.0, 1.4, 1.2]), (4, [1.3, 2.5, 3.0])):
        records = [record(f, glitch=f > 2) for f in firsts]
        level = summarize_level(clients, records, 10.0)
        met, reason = objective.check(level)
        level["objective"] = {"met": met, "reason": reason}
        levels.append(level)
    assert [lv["objective"]["met"] for lv in levels] == [True, True, False]
    assert levels[2]["glitched_turns"] == 2 and levels[2]["stalled_ms"] == pytest.approx(600)
    assert levels[0]["stages_ms"]["llm_first_token"]["p50"] == pytest.approx(100)
    assert best_level(levels) == 2
    failing = summarize_level(8, [record(1.0), record(1.0, code="UNAVAILABLE")], 5.0)
    assert failing["errors"] == {"UNAVAILABLE": 1}
    assert not objective.check(failing)[0]  # 50% errors
    doc = {
        "address": "x:1",
        "settings": {"input": "text", "turns": 1, "think_s": 1.0, "buffer_ms": 100.0},
        "levels": levels,
        "objective": str(objective),
        "best_level": 2,
    }
    assert "largest level meeting first_audio.p95 < 1500 ms: 2 clients" in table(doc)
