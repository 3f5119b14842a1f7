"""Tier 4: the official `openai` package, pointed at the gateway, works unchanged."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(stack):
    with openai.OpenAI(
        base_url=f"{stack.base}/v1", api_key="unused", max_retries=0, timeout=120
    ) as c:
        yield c


def test_transcribes_a_wav_file(client, speech_wav: Path):
    with speech_wav.open("rb") as f:
        result = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert "weather" in result.text.lower()


def test_verbose_json_and_text_formats(client, speech_wav: Path):
    with speech_wav.open("rb") as f:
        verbose = client.audio.transcriptions.create(
            model="whisper-1",
            file=f,
            response_format="verbose_json",
            timestamp_granularities=["word"],
        )
    assert verbose.language == "en" and verbose.duration > 1.0
    assert verbose.words and verbose.words[0].end >= verbose.words[0].start
    with speech_wav.open("rb") as f:
        text = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="text")
    assert "weather" in str(text).lower()


def test_speech_comes_back_as_wav_and_pcm(client):
    wav = client.audio.speech.create(
        model="tts-1", voice="alloy", input="Manao ahoana ianao?", response_format="wav"
    )
    data = wav.read()
    assert data[:4] == b"RIFF" and len(data) > 44 + 1600
    pcm = client.audio.speech.create(
        model="tts-1", voice="alloy", input="Manao ahoana ianao?", response_format="pcm"
    )
    raw = pcm.read()
    assert raw[:4] != b"RIFF" and len(raw) % 2 == 0 and len(raw) > 2400  # 24 kHz s16le


def test_chat_completions_plain_and_streaming(client):
    messages = [
        {"role": "system", "content": "Réponds en français."},
        {"role": "user", "content": "Bonjour"},
    ]
    done = client.chat.completions.create(model="milo", messages=messages, max_tokens=8, seed=1)
    assert done.choices[0].message.role == "assistant"
    assert done.choices[0].finish_reason in ("stop", "length")
    assert done.usage.completion_tokens >= 1
    chunks = list(
        client.chat.completions.create(
            model="milo", messages=messages, max_tokens=8, seed=1, stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == done.choices[0].message.content  # same seed, same reply
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_errors_come_in_openai_shape(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.speech.create(model="tts-1", voice="nobody", input="Salama")
    assert "voice" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="milo", messages=[], max_tokens=4)
    assert err.value.body["type"] == "invalid_request_error"
    assert [m.owned_by for m in client.models.list().data] == [
        "milo-stt",
        "milo-translate",
        "milo-llm",
        "milo-tts",
    ]


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac"])
def test_compressed_speech_decodes_to_the_duration_of_the_wav(client, fmt):
    import io

    import av

    def seconds(data: bytes) -> float:
        with av.open(io.BytesIO(data)) as c:
            return sum(f.samples for f in c.decode(audio=0)) / c.streams.audio[0].rate

    text = "Manao ahoana ianao? Faly mahita anao aho."
    pcm = client.audio.speech.create(
        model="tts-1", voice="default", input=text, response_format="pcm", speed=4.0
    ).read()
    encoded = client.audio.speech.create(
        model="tts-1", voice="verse", input=text, response_format=fmt, speed=4.0
    ).read()
    assert seconds(encoded) == pytest.approx(len(pcm) / 2 / 24000, abs=0.12)


def test_chat_trims_long_conversations_and_names_context_overflow(client):
    messages = [
        {"role": ("user", "assistant")[i % 2], "content": f"Message {i}."} for i in range(301)
    ]
    done = client.chat.completions.create(model="milo", messages=messages, max_tokens=4)
    assert done.choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="milo",
            max_tokens=4,
            messages=[{"role": "user", "content": "1 2 3 4 5 6 7 8 9 0 " * 450}],
        )  # ~9000 tokens
    assert err.value.code == "context_length_exceeded"


def float_wav(samples) -> bytes:
    """A WAVE_FORMAT_IEEE_FLOAT (tag 3) file, 16 kHz mono."""
    import struct

    data = samples.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, 16000, 64000, 4, 32)
    return (
        b"RIFF"
        + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )


def test_srt_subtitles_and_a_float_wav_with_nan_is_refused(client, speech_wav: Path):
    import numpy as np

    with speech_wav.open("rb") as f:
        srt = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="srt")
    assert str(srt).startswith("1\n00:00:0") and "-->" in str(srt)
    samples = (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    assert (
        client.audio.transcriptions.create(
            model="whisper-1", file=("ok.wav", float_wav(samples), "audio/wav")
        )
        is not None
    )
    samples[8000] = np.nan
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(
            model="whisper-1", file=("nan.wav", float_wav(samples), "audio/wav")
        )
    assert "non-finite" in err.value.message
