"""Tier 1: the STT service's pure logic (endpointing, guard, scheduling, scoring)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from services.stt.engine import Segment, Transcript, Word
from services.stt.evaluate import Item, ManifestError, read_manifest, score
from services.stt.guard import GuardParams, apply_guard, is_hallucination
from services.stt.normalize import normalize
from services.stt.scheduler import DecodeScheduler
from services.stt.vad import WINDOW, Endpointer, SpeechEnd, SpeechStart, VadParams, speech_spans

sys.path.insert(0, str(Path(__file__).parent))
from stt_support import EnergyDetector, silence, tone

MS = 16  # samples per millisecond
PARAMS = VadParams(
    threshold=0.5, min_speech_ms=256, min_silence_ms=384, speech_pad_ms=64, max_utterance_ms=30_000
)


def run(endpointer: Endpointer, probs: list[float]) -> list[tuple[int, object]]:
    """(window index, boundary) for each boundary the probabilities produce."""
    out = []
    for i, p in enumerate(probs):
        out += [(i, b) for b in endpointer.push(p)]
    return out


def windows(ms: int) -> int:
    return ms * MS // WINDOW


def test_speech_starts_after_min_speech_padded_back_and_ends_after_min_silence():
    probs = [0.0] * 10 + [0.9] * 20 + [0.0] * 20
    events = run(Endpointer(PARAMS), probs)
    start_window = 10 + windows(256) - 1  # the window that completes 256 ms of speech
    assert events[0] == (start_window, SpeechStart(10 * WINDOW - 64 * MS))
    end_window = 30 + windows(384) - 1
    assert events[1] == (end_window, SpeechEnd(30 * WINDOW + 64 * MS, forced=False))
    assert len(events) == 2


def test_a_blip_shorter_than_min_speech_starts_nothing():
    probs = [0.0] * 5 + [0.9] * (windows(256) - 1) + [0.0] * 30
    assert run(Endpointer(PARAMS), probs) == []


def test_short_dips_do_not_end_an_utterance_and_hysteresis_keeps_state():
    dip = [0.0] * (windows(384) - 2)  # just under min_silence
    between = [0.4] * 30  # between neg_threshold (0.35) and threshold: no change
    probs = [0.9] * 10 + dip + [0.9] * 5 + between + [0.0] * 20
    endpointer = Endpointer(PARAMS)
    events = run(endpointer, probs[: 10 + len(dip)])
    assert endpointer.speaking and endpointer.pausing
    events += run(endpointer, probs[10 + len(dip) :])
    assert [type(b) for _, b in events] == [SpeechStart, SpeechEnd]
    assert events[1][1].sample == (10 + len(dip) + 5 + 30) * WINDOW + 64 * MS


def test_long_speech_is_cut_at_max_utterance_and_resumes_contiguously():
    params = VadParams(min_speech_ms=0, min_silence_ms=384, speech_pad_ms=0, max_utterance_ms=1_024)
    events = run(Endpointer(params), [0.9] * windows(3_000))
    ends = [b for _, b in events if isinstance(b, SpeechEnd)]
    starts = [b for _, b in events if isinstance(b, SpeechStart)]
    assert all(e.forced for e in ends) and len(ends) == 2
    assert all(e.sample - s.sample <= 1_024 * MS for s, e in zip(starts, ends, strict=False))
    assert starts[1].sample == ends[0].sample  # no audio lost between the pieces


def test_finish_ends_an_open_utterance_at_the_end_of_the_audio():
    endpointer = Endpointer(PARAMS)
    run(endpointer, [0.9] * 20)
    assert endpointer.speaking
    assert endpointer.finish(20 * WINDOW + 100) == SpeechEnd(20 * WINDOW + 100, forced=True)
    assert endpointer.finish(30 * WINDOW) is None


def test_earliest_start_never_passes_a_pending_candidate():
    endpointer = Endpointer(PARAMS)
    run(endpointer, [0.0] * 10 + [0.9] * 3)  # a candidate, not yet an utterance
    assert not endpointer.speaking
    assert endpointer.earliest_start == 10 * WINDOW - 64 * MS
    events = run(endpointer, [0.9] * 10)
    assert events[0][1].sample == endpointer.earliest_start


def test_speech_spans_of_a_clip_with_two_bursts():
    audio = np.concatenate([silence(0.5), tone(1.0), silence(1.0), tone(0.6), silence(0.5)])
    spans = speech_spans(EnergyDetector(), audio, PARAMS)
    assert len(spans) == 2
    (s0, e0), (s1, e1) = spans
    assert abs(s0 - (8_000 - 64 * MS)) <= WINDOW and abs(e0 - (24_000 + 64 * MS)) <= WINDOW
    assert abs(s1 - (40_000 - 64 * MS)) <= WINDOW and abs(e1 - (49_600 + 64 * MS)) <= WINDOW
    assert speech_spans(EnergyDetector(), silence(2.0), PARAMS) == []


def seg(
    text: str = "hello",
    no_speech: float = 0.1,
    logprob: float = -0.3,
    ratio: float = 1.2,
    start: float = 0.0,
    end: float = 1.0,
) -> Segment:
    return Segment(text, start, end, logprob, no_speech, ratio)


@pytest.mark.parametrize(
    ("segment", "outside", "dropped"),
    [
        (seg(), False, False),
        (seg(no_speech=0.9, logprob=-1.5), False, True),  # Whisper's rule: no speech and unsure
        (seg(no_speech=0.9, logprob=-0.5), False, False),  # sure of its text: kept
        (seg(no_speech=0.9, logprob=-0.5), True, True),  # ...unless outside the VAD's speech
        (seg(ratio=3.0), False, True),  # a loop
        (seg(text="  "), False, True),
    ],
)
def test_hallucination_rules(segment, outside, dropped):
    assert is_hallucination(segment, GuardParams(), outside) is dropped


def test_guard_drops_segments_outside_speech_and_counts_them():
    transcript = Transcript(
        (
            seg("real", start=0.0, end=1.0),
            seg("Thank you.", no_speech=0.7, logprob=-0.8, start=3.0, end=4.0),
        ),
        "en",
        4.0,
    )
    kept = apply_guard(transcript, GuardParams(), speech=[(0.0, 1.2)])
    assert kept.text == "real" and kept.dropped == 1


def test_transcript_times_are_clamped_to_the_audio_and_shifted():
    words = (Word("a", -0.1, 0.5, 0.9), Word("b", 0.5, 1.4, 0.9))
    t = Transcript((Segment("a b", 0.0, 1.5, words=words),), "en", 1.2).clamped()
    assert [(w.start, w.end) for w in t.segments[0].words] == [(0.0, 0.5), (0.5, 1.2)]
    assert t.shifted(2.0).segments[0].words[1].end == pytest.approx(3.2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Manao ahoana, Tompoko!", "manao ahoana tompoko"),
        ("an'ny fanahin’ny", "an ny fanahin ny"),  # elisions split, every apostrophe alike
        ("an' ny", "an ny"),
        ("tsara-tarehy  izy.", "tsara tarehy izy"),
        ("Tô ve?", "tô ve"),  # diacritics are spelling
        ("« Eny » — hoy izy…", "eny hoy izy"),
    ],
)
def test_normalize_for_malagasy(text, expected):
    assert normalize(text) == expected


def test_score_is_corpus_level_after_normalization(tmp_path):
    items = [
        Item(tmp_path / "a.wav", "Hello world", 1),
        Item(tmp_path / "b.wav", "Manao ahoana, tompoko!", 2),
        Item(tmp_path / "c.wav", "an'ny trano", 3),
    ]
    report = score(items, ["hello world", "manao ahoana tompo", "an ny trano"], worst=5)
    assert report.wer == pytest.approx(1 / 8)  # one substitution over 2 + 3 + 3 words
    assert report.cer == pytest.approx(2 / 42)  # "tompo" misses 2 of 11 + 20 + 11 chars
    assert report.substitutions == 1 and report.reference_words == 8
    assert [s.audio for s in report.worst] == [str(tmp_path / "b.wav")]


def test_manifest_errors_name_the_line(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"x")
    good = {"audio": "a.wav", "text": "hello"}
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(good) + "\n\n" + json.dumps({"audio": "a.wav"}) + "\n")
    with pytest.raises(ManifestError, match=r"m.jsonl:3: needs \"audio\""):
        read_manifest(manifest)
    manifest.write_text(json.dumps({"audio": "missing.wav", "text": "x"}) + "\n")
    with pytest.raises(ManifestError, match=r"missing\.wav not found"):
        read_manifest(manifest)
    manifest.write_text(json.dumps({"audio_filepath": "a.wav", "text": "Hi!"}) + "\n")
    assert read_manifest(manifest)[0].audio == tmp_path / "a.wav"


async def test_scheduler_runs_urgent_jobs_before_partials_in_arrival_order():
    scheduler = DecodeScheduler(workers=1)
    gate, running, order = threading.Event(), threading.Event(), []

    def job(name: str):
        def fn():
            if name == "first":
                running.set()
                gate.wait(10)
            order.append(name)
            return name

        return fn

    first = asyncio.ensure_future(scheduler.run(job("first")))
    assert await asyncio.to_thread(running.wait, 10)
    partial_a = asyncio.ensure_future(scheduler.run_latest("a", job("partial-a")))
    final_1 = asyncio.ensure_future(scheduler.run(job("final-1")))
    final_2 = asyncio.ensure_future(scheduler.run(job("final-2")))
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(first, final_1, final_2, partial_a) == [
        "first",
        "final-1",
        "final-2",
        "partial-a",
    ]
    assert order == ["first", "final-1", "final-2", "partial-a"]
    scheduler.close()


async def test_scheduler_keeps_one_waiting_partial_per_key_and_drop_forgets_it():
    scheduler = DecodeScheduler(workers=1)
    gate, running = threading.Event(), threading.Event()
    blocker = asyncio.ensure_future(scheduler.run(lambda: running.set() or gate.wait(10)))
    assert await asyncio.to_thread(running.wait, 10)
    old = asyncio.ensure_future(scheduler.run_latest("s", lambda: "old"))
    await asyncio.sleep(0)
    new = asyncio.ensure_future(scheduler.run_latest("s", lambda: "new"))
    other = asyncio.ensure_future(scheduler.run_latest("t", lambda: "other"))
    await asyncio.sleep(0)
    scheduler.drop("t")
    assert await old is None and await other is None  # replaced / dropped, never run
    assert scheduler.pending == 1
    gate.set()
    assert await blocker is True and await new == "new"
    scheduler.close()
