"""Tier 1: sentence splitting, segments, the vocabulary filter, and audio chunking."""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest

from services.runtime.wav import streaming_wav_header
from services.tts.audio import AudioEncoder, encode_pcm, resample
from services.tts.text import keep_sayable, plan_text, split_segments, split_sentences

VOCAB = frozenset("abdefghijklmnoprstvyzô '-")


def test_sentences_split_at_end_punctuation_and_line_breaks() -> None:
    text = "Manao ahoana! Tonga ve ianao? Eny… Misaotra.\nAndalana vaovao"
    assert split_sentences(text) == [
        "Manao ahoana!",
        "Tonga ve ianao?",
        "Eny…",
        "Misaotra.",
        "Andalana vaovao",
    ]


def test_sentences_not_split_after_titles_decimals_or_before_lowercase() -> None:
    text = "Tonga ny Dr. Rakoto sy Rtoa. Rasoa. Vidiny 3.5 ariary. sns. no sisa."
    assert split_sentences(text) == [
        "Tonga ny Dr. Rakoto sy Rtoa. Rasoa.",
        "Vidiny 3.5 ariary. sns. no sisa.",
    ]


def test_closing_quotes_stay_with_their_sentence() -> None:
    assert split_sentences('Hoy izy: "Mandehana!" Dia lasa.') == [
        'Hoy izy: "Mandehana!"',
        "Dia lasa.",
    ]


def test_blank_text_has_no_sentences() -> None:
    assert split_sentences("  \n\n \t") == []


def test_segments_cut_at_clauses_and_bounded() -> None:
    sentence = "ity no fehezanteny voalohany, ary ity koa; ary farany: ity fehezanteny ity"
    segments = split_segments(sentence, 40)
    assert segments == [
        "ity no fehezanteny voalohany,",
        "ary ity koa; ary farany:",
        "ity fehezanteny ity",
    ]
    assert all(len(s) <= 40 for s in segments)


def test_short_clauses_are_packed_together() -> None:
    assert split_segments("a, b, d", 40) == ["a, b, d"]


def test_long_clause_cut_between_words_into_balanced_pieces() -> None:
    sentence = " ".join(["teny"] * 50)  # 249 characters, no punctuation
    segments = split_segments(sentence, 100)
    assert len(segments) == 3
    assert all(len(s) <= 100 for s in segments)
    assert " ".join(segments) == sentence
    assert max(map(len, segments)) - min(map(len, segments)) <= 10


def test_word_longer_than_the_limit_is_cut() -> None:
    segments = split_segments("a" * 50, 20)
    assert segments == ["a" * 20, "a" * 20, "a" * 10]


def test_keep_sayable_keeps_vocab_folds_accents_drops_the_rest() -> None:
    text, dropped = keep_sayable("manào, ahoana 🙂 ô café 中", VOCAB)
    assert text == "manao ahoana ô afe"  # à -> a; "," -> space; c, 🙂 and 中 dropped
    assert dropped == "🙂c中"


def test_punctuation_is_not_counted_as_dropped() -> None:
    text, dropped = keep_sayable('"eny" (tsia) — ...!?', VOCAB)
    assert text == "eny tsia"
    assert dropped == ""


def test_plan_normalizes_filters_and_counts() -> None:
    plan = plan_text("Manao ahoana 🙂! Misy 25 olona. ☺☺", VOCAB, max_segment_chars=160)
    assert [s.text for s in plan.sentences] == ["Manao ahoana 🙂!", "Misy 25 olona."]
    assert [s.normalized for s in plan.sentences] == [
        "manao ahoana",
        "misy dimy amby roapolo olona",
    ]
    assert [s.index for s in plan.sentences] == [0, 1]
    assert plan.dropped == 3  # the sentence of only ☺☺ is left out, its characters counted
    assert set(plan.dropped_chars) == {"🙂", "☺"}


def test_plan_of_unsayable_text_is_empty() -> None:
    plan = plan_text("🙂 中文 ☺", VOCAB, max_segment_chars=160)
    assert plan.sentences == ()
    assert plan.dropped == 4


def test_5000_character_text_plans_into_bounded_segments() -> None:
    text = "Ny fiteny malagasy dia miteny amin'ny olona 20 tapitrisa, any Madagasikara. " * 66
    assert len(text) >= 5000
    plan = plan_text(text, VOCAB, max_segment_chars=160)
    assert len(plan.sentences) == 66
    assert all(len(seg) <= 160 for s in plan.sentences for seg in s.segments)
    assert plan.dropped == 0


# --- audio ---------------------------------------------------------------------------


def test_wav_header_is_a_streaming_pcm_header() -> None:
    header = streaming_wav_header(22050)
    assert len(header) == 44
    riff, size, wave, fmt, fmt_len = struct.unpack("<4sI4s4sI", header[:20])
    tag, channels, rate, byte_rate, align, bits = struct.unpack("<HHIIHH", header[20:36])
    data, data_size = struct.unpack("<4sI", header[36:])
    assert (riff, wave, fmt, data) == (b"RIFF", b"WAVE", b"fmt ", b"data")
    assert size == data_size == 0xFFFFFFFF  # unknown length
    assert (fmt_len, tag, channels, rate, byte_rate, align, bits) == (16, 1, 1, 22050, 44100, 2, 16)
    stereo = struct.unpack("<HHIIHH", streaming_wav_header(48000, channels=2)[20:36])
    assert stereo == (1, 2, 48000, 192000, 4, 16)


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 48000])
def test_resample_keeps_the_duration(rate: int) -> None:
    one_second = np.sin(np.arange(16000) / 16000 * 2 * np.pi * 440).astype(np.float32)
    out = resample(one_second, 16000, rate)
    assert out.dtype == np.float32
    assert abs(len(out) - rate) <= 1


def test_encode_clips_and_is_little_endian() -> None:
    data = encode_pcm(np.array([0.0, 1.0, -1.0, 2.0, -3.0], dtype=np.float32), "pcm_s16le")
    assert struct.unpack("<5h", data) == (0, 32767, -32767, 32767, -32767)
    f32 = encode_pcm(np.array([0.5, 9.0], dtype=np.float32), "pcm_f32le")
    assert struct.unpack("<2f", f32) == (0.5, 1.0)


def test_encoder_chunks_are_bounded_numbered_and_contiguous() -> None:
    encoder = AudioEncoder("pcm_s16le", 16000, 24000, max_chunk_ms=200)
    chunks = encoder.push(np.zeros(16000, np.float32)) + encoder.push(np.zeros(4000, np.float32))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(0 < c.duration_ms <= 200 for c in chunks)
    assert all(len(c.data) <= 24000 * 2 // 5 for c in chunks)
    for before, after in itertools.pairwise(chunks):
        assert after.offset_ms == pytest.approx(before.offset_ms + before.duration_ms)
    assert encoder.duration_ms == pytest.approx(1250, abs=1)


def test_wav_header_leads_only_the_first_chunk() -> None:
    encoder = AudioEncoder("wav", 16000, 16000, max_chunk_ms=100)
    chunks = encoder.push(np.zeros(3200, np.float32))
    assert chunks[0].data[:4] == b"RIFF" and len(chunks[0].data) == 44 + 3200
    assert all(not c.data.startswith(b"RIFF") and len(c.data) == 3200 for c in chunks[1:])
    assert chunks[0].duration_ms == 100  # the header is not audio
