"""`milo eval tts`: the round trip TTS -> STT scored against the sentence as spoken (numbers
as words). Tier 1 for the scoring, tier 2 for the command against a fake TTS that encodes the
text in its audio and a fake STT that decodes it back (dropping one word on purpose), so the
scores are known exactly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from milo.audio.v1 import audio_pb2
from milo.stt.v1 import stt_pb2, stt_pb2_grpc
from milo.tts.v1 import tts_pb2, tts_pb2_grpc
from services.cli import main
from services.stt.evaluate import ManifestError
from services.tts.evaluate import read_sentences, score_round_trip, spoken_reference

SENTENCES = ["Misy trano 3 eto.", "Tsara be ny andro."]


class FakeTts(tts_pb2_grpc.TtsServicer):
    """Audio = the normalized text as bytes (even length), so the fake STT can read it."""

    def Describe(self, request, context):
        return tts_pb2.DescribeResponse(model_id="fake-vits")

    def Synthesize(self, request, context):
        data = spoken_reference(request.text).encode()
        data += b" " * (len(data) % 2)
        yield tts_pb2.SynthesizeResponse(
            format=audio_pb2.AudioFormat(
                encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=16_000, channels=1
            )
        )
        yield tts_pb2.SynthesizeResponse(audio=audio_pb2.AudioChunk(data=data))


class FakeStt(stt_pb2_grpc.SttServicer):
    """Reads the text back; drops the word "be" (one deletion in 8 reference words)."""

    def __init__(self) -> None:
        self.languages: list[str] = []

    def Recognize(self, request, context):
        self.languages.append(request.config.language)
        words = request.audio.decode().split()
        return stt_pb2.RecognizeResponse(
            text=" ".join(w for w in words if w != "be"), language=request.config.language
        )


@pytest.fixture
def fakes() -> Iterator[tuple[str, str, FakeStt]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    stt = FakeStt()
    tts_pb2_grpc.add_TtsServicer_to_server(FakeTts(), server)
    stt_pb2_grpc.add_SttServicer_to_server(stt, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", f"127.0.0.1:{port}", stt
    finally:
        server.stop(None)


def test_the_reference_is_the_sentence_as_spoken() -> None:
    assert spoken_reference("Misy trano 3 eto.") == "misy trano telo eto."
    report = score_round_trip(["Misy trano 3 eto."], ["misy trano telo eto"])
    assert (report.wer, report.cer) == (0.0, 0.0)


def test_sentence_files(tmp_path: Path) -> None:
    text = tmp_path / "s.txt"
    text.write_text("# voice check\nMisy trano 3 eto.\n\nTsara be ny andro.\n", "utf-8")
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text("".join(json.dumps({"text": s}) + "\n" for s in SENTENCES), "utf-8")
    assert read_sentences(text) == SENTENCES == read_sentences(jsonl)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n", "utf-8")
    with pytest.raises(ManifestError, match="no sentences"):
        read_sentences(empty)


def test_eval_tts_round_trip_scores_exactly(fakes, tmp_path: Path, capsys) -> None:
    tts, stt, fake_stt = fakes
    path = tmp_path / "sentences.txt"
    path.write_text("\n".join(SENTENCES) + "\n", "utf-8")
    assert (
        main(["eval", "tts", "--sentences", str(path), "--tts", tts, "--stt", stt, "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["utterances"] == 2 and report["reference_words"] == 8
    assert report["deletions"] == 1 and report["wer"] == pytest.approx(1 / 8)
    assert report["model"]["model_id"] == "fake-vits" and fake_stt.languages == ["mg", "mg"]
    assert [w["hypothesis"] for w in report["worst"]] == ["tsara ny andro."]


def test_eval_tts_table(fakes, tmp_path: Path, capsys) -> None:
    tts, stt, _ = fakes
    path = tmp_path / "sentences.txt"
    path.write_text("\n".join(SENTENCES) + "\n", "utf-8")
    assert main(["eval", "tts", "--sentences", str(path), "--tts", tts, "--stt", stt]) == 0
    out = capsys.readouterr().out
    assert out.startswith("milo eval tts:") and "WER  12.50%" in out
