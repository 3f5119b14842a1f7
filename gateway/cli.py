"""`milo up`, `milo serve gateway` (via services/cli.py) and `milo converse`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path

from services.runtime.model_folder import demo_models_dir


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `up` and `converse` to the `milo` command's subparsers."""
    up = sub.add_parser("up", help="run the whole stack locally (demo models by default)")
    up.add_argument(
        "--models",
        type=Path,
        default=demo_models_dir(),
        help="models folder (default: %(default)s)",
    )
    up.add_argument("--host", default="127.0.0.1", help="address the services listen on")
    up.add_argument("--language", help="user language (default: mg, or en on the demo set)")
    up.add_argument(
        "--base-port",
        type=int,
        default=0,
        help="use ports BASE..BASE+4 instead of the defaults (50050-50054)",
    )
    up.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for SERVING")
    up.set_defaults(func=_up)

    conv = sub.add_parser("converse", help="run one conversation turn and print its events")
    source = conv.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav", type=Path, help="speech in (16-bit PCM WAV, any rate)")
    source.add_argument("--text", help="text in, instead of speech")
    conv.add_argument("--out", type=Path, help="write the reply audio to this WAV file")
    conv.add_argument("--address", default="127.0.0.1:50050", help="gateway host:port")
    conv.add_argument("--language", help="user language (default: the gateway's)")
    conv.add_argument("--pivot", help="pivot language (default: the gateway's)")
    conv.add_argument("--text-out", action="store_true", help="no speech synthesis")
    conv.add_argument("--fast", action="store_true", help="send audio as fast as possible")
    conv.add_argument("--timeout", type=float, default=300.0, help="seconds for the session")
    conv.set_defaults(func=_converse)


def _up(args: argparse.Namespace) -> int:
    from gateway.up import up

    return up(args.models, args.host, args.language, args.base_port, args.timeout)


def _converse(args: argparse.Namespace) -> int:
    """`milo converse`, with the errors a user can cause said in one line on stderr instead of
    a traceback: exit status 2 for a WAV that cannot be read, 1 for a gateway that cannot be
    reached or that ended the call with an error status."""
    import grpc

    def fail(message: str, status: int) -> int:
        print(f"milo converse: {message}", file=sys.stderr)
        return status

    try:
        return asyncio.run(converse(args))
    except ConnectionError as exc:  # MiloClient: no gateway after its connect attempts
        return fail(f"{exc} at {args.address}: is `milo up` running?", 1)
    except (wave.Error, EOFError) as exc:
        return fail(
            f"{args.wav} is not a PCM WAV file ({exc}); convert it first, e.g. "
            f"ffmpeg -i {args.wav} -ar 16000 -ac 1 speech.wav",
            2,
        )
    except OSError as exc:
        return fail(f"cannot read {exc.filename or args.wav}: {exc.strerror or exc}", 2)
    except grpc.RpcError as exc:  # a status that ended the whole session
        code = exc.code()  # type: ignore[attr-defined]
        return fail(f"the gateway ended the session: {code.name}: {exc.details()}", 1)  # type: ignore[attr-defined]


async def wav_chunks(path: Path, fast: bool, chunk_ms: int = 20) -> AsyncIterator[bytes]:
    """The WAV's frames in `chunk_ms` pieces, at real-time pace unless `fast`."""
    with wave.open(str(path), "rb") as wav:
        frames = wav.getframerate() * chunk_ms // 1000
        start, sent = time.monotonic(), 0.0
        while data := wav.readframes(frames):
            yield data
            sent += chunk_ms / 1000
            if not fast:
                await asyncio.sleep(max(0.0, start + sent - time.monotonic()))


async def converse(args: argparse.Namespace) -> int:
    """Run one `milo converse` session against the gateway at `args.address`, printing each
    event; `--wav` audio ends with an end-of-utterance control. Returns the exit status:
    1 if any turn reported an error or a WAV gave no turn (no speech heard), 2 if the WAV
    is not 16-bit PCM, else 0."""
    from milo.audio.v1 import audio_pb2
    from milo.client import MiloClient
    from milo.gateway.v1 import gateway_pb2 as gw

    config = gw.SessionConfig(
        user_language=args.language,
        pivot_language=args.pivot,
        output_mode=gw.OUTPUT_MODE_TEXT if args.text_out else None,
    )
    if args.wav:
        with wave.open(str(args.wav), "rb") as wav:
            if wav.getsampwidth() != 2:
                print("--wav must be 16-bit PCM", file=sys.stderr)
                return 2
            config.input_format.CopyFrom(
                audio_pb2.AudioFormat(
                    encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE,
                    sample_rate_hz=wav.getframerate(),
                    channels=wav.getnchannels(),
                )
            )

    async def inputs() -> AsyncIterator[bytes | str | int]:
        if args.text is not None:
            yield args.text
            return
        async for chunk in wav_chunks(args.wav, args.fast):
            yield chunk
        yield gw.Control.ACTION_END_OF_UTTERANCE

    printer = EventPrinter()
    key = os.environ.get("MILO_API_KEY")
    # Two connect attempts (about 3 s), not the library's five (about 25 s): at a prompt, a
    # wrong address or a stack that is down should be said at once.
    async with MiloClient(args.address, api_key=key, connect_attempts=2) as client:
        async for event in client.converse(inputs(), config, timeout=args.timeout):
            printer.show(event)
    if args.out and printer.audio:
        printer.write_wav(args.out)
        print(f"reply audio: {args.out} ({printer.audio_ms / 1000:.2f} s)")
    if args.wav and not printer.turns:
        print(
            f"milo converse: no speech was heard in {args.wav}: the session ended without a turn",
            file=sys.stderr,
        )
        return 1
    return 1 if printer.errors else 0


class EventPrinter:
    """Prints one line per event (audio as a running total) and keeps the reply audio."""

    def __init__(self) -> None:
        self.audio = bytearray()
        self.audio_ms = 0.0
        self.rate, self.channels, self.errors = 16000, 1, 0
        self.turns = 0  # events of a turn (anything but the session's start)

    def show(self, event) -> None:  # type: ignore[no-untyped-def]
        """Print `event` (a milo.client event) on one line, or add its audio to the reply."""
        kind, p = event.kind, event.payload
        if kind != "session_started":
            self.turns += 1
        if kind == "audio":
            if p.HasField("format"):
                self.rate, self.channels = p.format.sample_rate_hz, p.format.channels or 1
            self.audio += p.chunk.data
            self.audio_ms += p.chunk.duration_ms
            return
        if kind == "error":
            self.errors += 1
        text = _describe(kind, p)
        print(
            f"[turn {event.turn_id}] {kind}: {text}" if text else f"[turn {event.turn_id}] {kind}",
            flush=True,
        )

    def write_wav(self, path: Path) -> None:
        """Write the reply audio kept so far as a 16-bit PCM WAV at its own rate and channels."""
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(self.channels)
            wav.setsampwidth(2)
            wav.setframerate(self.rate)
            wav.writeframes(bytes(self.audio))


def _describe(kind: str, p) -> str:  # type: ignore[no-untyped-def]
    from google.protobuf import text_format

    if kind == "transcript":
        return f"{'final' if p.is_final else 'partial'} {p.text!r}"
    if kind in ("llm_delta",):
        return repr(p.text)
    if kind == "reply_sentence":
        return f"#{p.sentence_index} {p.pivot_text!r} -> {p.text!r}"
    if kind == "translation":
        return f"{p.source_text!r} -> {p.text!r}"
    if kind == "session_started":
        return p.session_id
    return text_format.MessageToString(p, as_one_line=True)
