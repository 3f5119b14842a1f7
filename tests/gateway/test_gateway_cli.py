"""`milo converse` says a user's mistake in one line on stderr, with an exit status, never a
traceback: a gateway that is not there (within seconds), a WAV that is missing or is not a
WAV, a WAV in which no speech was heard."""

from __future__ import annotations

import argparse
import socket
import time
import wave
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway import cli


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers())
    return parser.parse_args(["converse", *argv])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_gateway_that_is_not_there_is_said_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    assert cli._converse(parse("--address", address, "--text", "Salama")) == 1
    assert time.monotonic() - start < 10  # two connect attempts, not the library's five
    err = capsys.readouterr().err
    assert err.startswith("milo converse: the Milo gateway is unreachable at " + address)
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_a_missing_wav_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.wav"
    assert cli._converse(parse("--wav", str(missing))) == 2
    assert (
        capsys.readouterr().err
        == f"milo converse: cannot read {missing}: No such file or directory\n"
    )


def test_a_file_that_is_not_a_wav_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mp3 = tmp_path / "speech.mp3"
    mp3.write_bytes(b"ID3\x04\x00" + bytes(200))
    assert cli._converse(parse("--wav", str(mp3))) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"milo converse: {mp3} is not a PCM WAV file (")
    assert "ffmpeg -i" in err and "Traceback" not in err


class SilentGateway:
    """A MiloClient whose gateway heard no speech: the session starts, then ends."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    async def __aenter__(self) -> SilentGateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def converse(self, inputs, config, **options):  # type: ignore[no-untyped-def]
        async for _ in inputs:
            pass
        yield SimpleNamespace(
            turn_id=0, kind="session_started", payload=SimpleNamespace(session_id="s1")
        )


def test_a_wav_in_which_no_speech_was_heard_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import milo.client

    monkeypatch.setattr(milo.client, "MiloClient", SilentGateway)
    silence = tmp_path / "silence.wav"
    with wave.open(str(silence), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(bytes(16000))
    assert cli._converse(parse("--wav", str(silence), "--fast")) == 1
    captured = capsys.readouterr()
    assert captured.out == "[turn 0] session_started: s1\n"
    assert captured.err == (
        f"milo converse: no speech was heard in {silence}: the session ended without a turn\n"
    )
