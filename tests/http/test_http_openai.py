"""Tier 4: the official `openai` package, pointed at the gateway, works unchanged."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(stack):
    with openai.OpenAI(base_url=f"{stack.base}/v1", api_key="unused", max_retries=0,
                       timeout=120) as c:
        yield c


def test_transcribes_a_wav_file(client, speech_wav: Path):
    with speech_wav.open("rb") as f:
        result = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert "weather" in result.text.lower()


def test_verbose_json_and_text_formats(client, speech_wav: Path):
    with speech_wav.open("rb") as f:
        verbose = client.audio.transcriptions.create(
            model="whisper-1", file=f, response_format="verbose_json",
            timestamp_granularities=["word"])
    assert verbose.language == "en" and verbose.duration > 1.0
    assert verbose.words and verbose.words[0].end >= verbose.words[0].start
    with speech_wav.open("rb") as f:
        text = client.audio.transcriptions.create(model="whisper-1", file=f,
                                                  response_format="text")
    assert "weather" in str(text).lower()


def test_speech_comes_back_as_wav_and_pcm(client):
    wav = client.audio.speech.create(model="tts-1", voice="alloy", input="Manao ahoana ianao?",
                                     response_format="wav")
    data = wav.read()
    assert data[:4] == b"RIFF" and len(data) > 44 + 1600
    pcm = client.audio.speech.create(model="tts-1", voice="alloy", input="Manao ahoana ianao?",
                                     response_format="pcm")
    raw = pcm.read()
    assert raw[:4] != b"RIFF" and len(raw) % 2 == 0 and len(raw) > 2400  # 24 kHz s16le


def test_chat_completions_plain_and_streaming(client):
    messages = [{"role": "system", "content": "Réponds en français."},
                {"role": "user", "content": "Bonjour"}]
    done = client.chat.completions.create(model="milo", messages=messages, max_tokens=8, seed=1)
    assert done.choices[0].message.role == "assistant"
    assert done.choices[0].finish_reason in ("stop", "length")
    assert done.usage.completion_tokens >= 1
    chunks = list(client.chat.completions.create(model="milo", messages=messages, max_tokens=8,
                                                 seed=1, stream=True))
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
        "milo-stt", "milo-translate", "milo-llm", "milo-tts"]
