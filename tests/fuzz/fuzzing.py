"""A gRPC fuzzer for Milo's services and gateway, built on Hypothesis.

Every RPC is called through a raw-bytes client (no serializer), so anything can be sent:
random and truncated protobuf bytes, fields with the wrong wire type, invalid UTF-8 where
text is expected, and well-formed requests mutated from a valid one (out-of-range and
negative numbers in every numeric field, unknown enum values, empty and oversize strings and
bytes). Client-streaming RPCs also get data before the config, the config twice, nothing
then a half-close, and clients that vanish mid-stream; server-streaming replies are read for
a few messages, then the client vanishes.

A reply passes when its status is one a client's mistake deserves (never UNKNOWN or INTERNAL)
and its message names no internal class. `Fuzzer.run` drives one service and counts the
statuses it saw; the test (tests/fuzz/test_fuzz.py) and the longer script
(tests/fuzz/fuzz_long.py) add the checks on the process: still SERVING, memory flat, and a
normal request right after succeeds.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from hypothesis import strategies as st

from milo.audio.v1 import audio_pb2
from milo.gateway.v1 import gateway_pb2 as gw
from milo.llm.v1 import llm_pb2
from milo.stt.v1 import stt_pb2
from milo.translate.v1 import translate_pb2
from milo.tts.v1 import tts_pb2

# Statuses that are a proper answer to a client's mistake (or to a request that was fine).
PROPER = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
INTERNAL_NAME = re.compile(r"<class |Traceback|\b[A-Z]\w*(Error|Exception)\b|\w+\.\w+\.\w+Error")
CALL_TIMEOUT_S = 20.0  # a proper answer comes long before; past it the call counts as hung
READ_REPLIES = 2  # server-streaming replies read before the client vanishes
MAX_REPLIES = 40  # replies read at most; past them the client vanishes (a long reply is fine)

PCM16K = audio_pb2.AudioFormat(
    encoding=audio_pb2.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=16000, channels=1
)
SILENCE = b"\x00\x00" * 1600  # 100 ms at 16 kHz


def _chat() -> llm_pb2.ChatRequest:
    request = llm_pb2.ChatRequest(
        messages=[llm_pb2.Message(role=llm_pb2.ROLE_USER, content="Bonjour")]
    )
    request.sampling.max_tokens = 4
    return request


def _synth() -> tts_pb2.SynthesizeRequest:
    return tts_pb2.SynthesizeRequest(text="Salama")


def _recognize() -> stt_pb2.RecognizeRequest:
    return stt_pb2.RecognizeRequest(format=PCM16K, audio=SILENCE * 3)


def _translate() -> translate_pb2.TranslateRequest:
    return translate_pb2.TranslateRequest(
        texts=["Hello"], source_language="en", target_language="fr"
    )


def _session() -> gw.SessionConfig:
    config = gw.SessionConfig(output_mode=gw.OUTPUT_MODE_TEXT, input_format=PCM16K)
    config.sampling.max_tokens = 4
    return config


# A valid request per method (for streams: the valid config message, then the data
# messages): the base that mutations start from, and the "normal request right after".
VALID: dict[str, Callable[[], list[Any]]] = {
    "/milo.stt.v1.Stt/Describe": lambda: [stt_pb2.DescribeRequest()],
    "/milo.stt.v1.Stt/Recognize": lambda: [_recognize()],
    "/milo.stt.v1.Stt/StreamingRecognize": lambda: [
        stt_pb2.StreamingRecognizeRequest(config=stt_pb2.StreamingConfig(format=PCM16K)),
        stt_pb2.StreamingRecognizeRequest(audio=SILENCE),
    ],
    "/milo.translate.v1.Translator/Describe": lambda: [translate_pb2.DescribeRequest()],
    "/milo.translate.v1.Translator/Translate": lambda: [_translate()],
    "/milo.llm.v1.Llm/Describe": lambda: [llm_pb2.DescribeRequest()],
    "/milo.llm.v1.Llm/Chat": lambda: [_chat()],
    "/milo.tts.v1.Tts/Describe": lambda: [tts_pb2.DescribeRequest()],
    "/milo.tts.v1.Tts/Synthesize": lambda: [_synth()],
    "/milo.gateway.v1.Conversation/Describe": lambda: [gw.DescribeRequest()],
    "/milo.gateway.v1.Conversation/Converse": lambda: [
        gw.ConverseRequest(config=_session()),
        gw.ConverseRequest(text=gw.UserText(text="Hello")),
    ],
    "/milo.gateway.v1.Conversation/Transcribe": lambda: [
        gw.TranscribeRequest(request=_recognize())
    ],
    "/milo.gateway.v1.Conversation/Translate": lambda: [gw.TranslateRequest(request=_translate())],
    "/milo.gateway.v1.Conversation/Chat": lambda: [gw.ChatRequest(request=_chat())],
    "/milo.gateway.v1.Conversation/Speak": lambda: [gw.SpeakRequest(request=_synth())],
}

CONVERSE = "/milo.gateway.v1.Conversation/Converse"
SERVICES = {
    "stt": stt_pb2.DESCRIPTOR.services_by_name["Stt"],
    "translate": translate_pb2.DESCRIPTOR.services_by_name["Translator"],
    "llm": llm_pb2.DESCRIPTOR.services_by_name["Llm"],
    "tts": tts_pb2.DESCRIPTOR.services_by_name["Tts"],
    "gateway": gw.DESCRIPTOR.services_by_name["Conversation"],
}


@dataclass(frozen=True)
class Method:
    path: str
    request: Descriptor
    client_streaming: bool
    server_streaming: bool

    @classmethod
    def of(cls, method: MethodDescriptor) -> Method:
        return cls(
            f"/{method.containing_service.full_name}/{method.name}",
            method.input_type,
            method.client_streaming,
            method.server_streaming,
        )

    def valid(self) -> list[Any]:
        return VALID[self.path]()


def methods(service: str) -> list[Method]:
    return [Method.of(m) for m in SERVICES[service].methods]


# ---- the wire format, by hand (to send what no generated class would) ----------------------

VARINT, I64, LEN, I32 = 0, 1, 2, 5
_NUMBER_WIRE = {
    FieldDescriptor.TYPE_DOUBLE: I64,
    FieldDescriptor.TYPE_FIXED64: I64,
    FieldDescriptor.TYPE_SFIXED64: I64,
    FieldDescriptor.TYPE_FLOAT: I32,
    FieldDescriptor.TYPE_FIXED32: I32,
    FieldDescriptor.TYPE_SFIXED32: I32,
}
_LEN_TYPES = {FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_MESSAGE}


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative numbers: two's complement in 10 bytes, as protobuf does
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def tag(number: int, wire: int) -> bytes:
    return varint((number << 3) | wire)


def wire_field(number: int, wire: int, payload: bytes | int) -> bytes:
    if wire == VARINT:
        return tag(number, wire) + varint(int(payload))
    if wire == LEN:
        assert isinstance(payload, bytes)
        return tag(number, wire) + varint(len(payload)) + payload
    size = 8 if wire == I64 else 4
    data = (
        payload
        if isinstance(payload, bytes)
        else int(payload).to_bytes(size, "little", signed=True)
    )
    return tag(number, wire) + data[:size].ljust(size, b"\x00")


def expected_wire(f: FieldDescriptor) -> int:
    if f.type in _LEN_TYPES:
        return LEN
    return _NUMBER_WIRE.get(f.type, VARINT)


def _repeated(f: FieldDescriptor) -> bool:
    return bool(f.is_repeated)


# ---- Hypothesis strategies ------------------------------------------------------------------

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
OVERSIZE_CHARS = 100_000
OVERSIZE_BYTES = 1_000_000


def numbers(f: FieldDescriptor) -> st.SearchStrategy[Any]:
    """Values for a numeric field: its extremes, zero, small and huge, negative where signed."""
    if f.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        width = 32 if f.type == FieldDescriptor.TYPE_FLOAT else 64
        edge = [math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, 1e-30, 3.0e38, -3.0e38]
        return st.one_of(st.sampled_from(edge), st.floats(width=width))
    if f.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    lo, hi = _INT_RANGES[f.type]
    edge = sorted({lo, hi, 0, 1, hi // 2, max(lo, -1), 2**31 - 1 if hi >= 2**31 else hi})
    return st.one_of(
        st.sampled_from(edge),
        st.integers(lo, hi),
        st.integers(-1000, 100_000).filter(lambda n: lo <= n <= hi),
    )


def texts() -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(""),
        st.text(max_size=30),
        st.just("a" * OVERSIZE_CHARS),
        st.text(alphabet="\x00\u200b\ufeff\U0001f600 .!?", max_size=20),
    )


def blobs() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.just(b""),
        st.binary(max_size=64),
        st.just(b"\x01" * OVERSIZE_BYTES),
        st.binary(min_size=1, max_size=3),
    )


def values(f: FieldDescriptor) -> st.SearchStrategy[Any]:
    if f.type == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in f.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1))
    if f.type == FieldDescriptor.TYPE_STRING:
        return texts()
    if f.type == FieldDescriptor.TYPE_BYTES:
        return blobs()
    return numbers(f)


def leaves(desc: Descriptor, depth: int = 3) -> list[tuple[FieldDescriptor, ...]]:
    """Every path from `desc` down to a scalar field (messages followed `depth` deep)."""
    paths: list[tuple[FieldDescriptor, ...]] = []
    for f in desc.fields:
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if depth > 1:
                paths += [(f, *rest) for rest in leaves(f.message_type, depth - 1)]
        else:
            paths.append((f,))
    return paths


def _set(message: Any, path: tuple[FieldDescriptor, ...], value: Any) -> None:
    for f in path[:-1]:
        if _repeated(f):
            container = getattr(message, f.name)
            message = container[0] if len(container) else container.add()
        else:
            message = getattr(message, f.name)
    last = path[-1]
    if _repeated(last):
        getattr(message, last.name).append(value)
    else:
        setattr(message, last.name, value)


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> bytes:
    """`base` (a valid message) with 1-3 fields, possibly nested, set to extreme values."""
    message = type(base)()
    message.CopyFrom(base)
    paths = leaves(message.DESCRIPTOR)
    if not paths:
        return message.SerializeToString()
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3)):
        _set(message, path, draw(values(path[-1])))
    return message.SerializeToString()


@st.composite
def raw_field(draw: st.DrawFn, desc: Descriptor) -> bytes:
    """One field on the wire that the generated parser must refuse or tolerate: a wrong wire
    type, invalid UTF-8 in a text field (possibly nested), a varint past 64 bits' worth of
    meaning (negative into unsigned), or a length past the end."""
    paths = leaves(desc) or [()]
    path = draw(st.sampled_from(paths))
    if not path:
        return draw(st.binary(min_size=1, max_size=16))
    *outer, last = path
    kind = draw(st.sampled_from(["wire", "utf8", "negative", "length"]))
    if kind == "utf8" and last.type == FieldDescriptor.TYPE_STRING:
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"ok\xed\xa0\x80", b"\xf8\x88\x80"]))
        inner = wire_field(last.number, LEN, bad)
    elif kind == "negative" and expected_wire(last) == VARINT:
        inner = wire_field(last.number, VARINT, draw(st.integers(-(2**63), -1)))
    elif kind == "length":
        inner = tag(last.number, LEN) + varint(draw(st.integers(10, 2**31))) + b"xy"
    else:
        wrong = [w for w in (VARINT, I64, LEN, I32, 3, 4, 6, 7) if w != expected_wire(last)]
        wire = draw(st.sampled_from(wrong))
        payload = (
            draw(st.binary(max_size=8))
            if wire in (LEN, I64, I32)
            else draw(st.integers(0, 2**64 - 1))
        )
        inner = (
            wire_field(last.number, wire, payload)
            if wire in (VARINT, I64, LEN, I32)
            else tag(last.number, wire) + draw(st.binary(max_size=8))
        )
    for f in reversed(outer):
        inner = wire_field(f.number, LEN, inner)
    return inner


def truncated(base: Any) -> st.SearchStrategy[bytes]:
    data = base.SerializeToString()
    return (
        st.integers(1, max(1, len(data) - 1)).map(lambda n: data[:n])
        if len(data) > 1
        else st.just(b"\x0a")
    )


def payloads(method: Method, base: Any) -> st.SearchStrategy[bytes]:
    """One malformed (or mutated) request message's bytes."""
    return st.one_of(
        st.binary(min_size=1, max_size=256),  # random bytes
        truncated(base),
        raw_field(method.request),
        st.tuples(st.just(base.SerializeToString()), raw_field(method.request)).map(
            lambda pair: pair[0] + pair[1]
        ),  # a valid message with a bad field after it
        mutated(base),
    )


@dataclass(frozen=True)
class Case:
    """What one fuzz input sends: the messages, then a half-close, or the client vanishes
    (cancels) after the messages or after `read` replies."""

    messages: tuple[bytes, ...]
    vanish: bool = False
    read: int = READ_REPLIES
    vanish_after_s: float = 0.1  # a client-streaming call is cancelled by then at the latest
    kind: str = ""


@st.composite
def cases(draw: st.DrawFn, method: Method) -> Case:
    valid = method.valid()
    if not method.client_streaming:
        return Case(
            (draw(payloads(method, valid[0])),),
            kind="unary-in",
            vanish=draw(st.booleans()) if method.server_streaming else False,
        )
    config, data = valid[0].SerializeToString(), [m.SerializeToString() for m in valid[1:]]
    shape = draw(
        st.sampled_from(
            ["data-first", "config-twice", "nothing", "bad-config", "bad-data", "vanish"]
        )
    )
    if shape == "data-first":
        messages = [*data, config]
    elif shape == "config-twice":
        messages = [config, config, *data]
    elif shape == "nothing":
        messages = []
    elif shape == "bad-config":
        messages = [draw(payloads(method, valid[0])), *data]
    elif shape == "bad-data":
        base = valid[1] if len(valid) > 1 else valid[0]
        messages = [config, *draw(st.lists(payloads(method, base), min_size=1, max_size=3))]
    else:
        messages = [config, *data]
    return Case(
        tuple(messages),
        vanish=shape == "vanish" or draw(st.booleans()),
        read=draw(st.integers(0, READ_REPLIES)),
        vanish_after_s=draw(st.sampled_from([0.0, 0.05, 0.2])),
        kind=shape,
    )


# ---- calling ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str

    def proper(self) -> bool:
        return self.code in PROPER and not INTERNAL_NAME.search(self.details or "")


def _identity(data: bytes) -> bytes:
    return data


def call(
    channel: grpc.Channel, method: Method, case: Case, metadata: tuple[tuple[str, str], ...] = ()
) -> Outcome:
    """Send the case's raw bytes; read the reply (or up to `case.read` streamed replies, then
    vanish when the case says so). Returns the status the server gave, or the first in-band
    error event of a conversation that is not a proper one."""
    kw = {"request_serializer": _identity, "response_deserializer": _identity}
    timeout, md = CALL_TIMEOUT_S, metadata or None
    try:
        if not method.client_streaming and not method.server_streaming:
            channel.unary_unary(method.path, **kw)(case.messages[0], timeout=timeout, metadata=md)
            return Outcome(grpc.StatusCode.OK, "")
        if not method.client_streaming:
            stream = channel.unary_stream(method.path, **kw)(
                case.messages[0], timeout=timeout, metadata=md
            )
            return _read(stream, case, events=False)
        release = threading.Event()
        stream = channel.stream_stream(method.path, **kw)(
            _sent(case, release), timeout=timeout, metadata=md
        )
        timer = threading.Timer(case.vanish_after_s, stream.cancel) if case.vanish else None
        try:
            if timer is not None:
                timer.start()
            return _read(stream, case, events=method.path == CONVERSE)
        finally:
            release.set()
            if timer is not None:
                timer.cancel()
    except grpc.RpcError as exc:
        return Outcome(exc.code(), exc.details() or "")  # type: ignore[attr-defined]


def _sent(case: Case, release: threading.Event) -> Iterator[bytes]:
    yield from case.messages
    if case.vanish:  # no half-close: the stream stays open until the client cancels it
        release.wait(CALL_TIMEOUT_S)


def _read(stream: Any, case: Case, events: bool) -> Outcome:
    limit = case.read if case.vanish else MAX_REPLIES
    if limit == 0:
        stream.cancel()
        return Outcome(grpc.StatusCode.CANCELLED, "")
    for read, reply in enumerate(stream, start=1):
        bad = _in_band_error(reply) if events else None
        if bad is not None:
            stream.cancel()
            return bad
        if read >= limit:
            stream.cancel()
            return Outcome(grpc.StatusCode.CANCELLED, "")
    return Outcome(stream.code(), stream.details() or "")


_IN_BAND = frozenset({"UNKNOWN", "INTERNAL"})


def _in_band_error(reply: bytes) -> Outcome | None:
    """A conversation's in-band error event that no client mistake deserves."""
    try:
        event = gw.ConverseResponse.FromString(reply)
    except Exception:  # not a conversation event
        return None
    if event.WhichOneof("event") != "error":
        return None
    error = event.error
    if error.code in _IN_BAND or INTERNAL_NAME.search(error.message):
        return Outcome(grpc.StatusCode.INTERNAL, f"in-band {error.code}: {error.message}")
    return None


@dataclass
class Tally:
    """What one service answered: how many inputs, which statuses, and the faults."""

    inputs: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    faults: list[str] = field(default_factory=list)

    def record(self, method: Method, case: Case, outcome: Outcome) -> None:
        self.inputs += 1
        self.statuses[outcome.code.name] += 1
        if not outcome.proper():
            self.faults.append(
                f"{method.path} {case.kind or 'unary'}: {outcome.code.name} "
                f"{outcome.details!r} for {case.messages[:2]!r:.300}"
            )


# ---- driving one service ---------------------------------------------------------------------

MAX_MESSAGE = 64 * 1024 * 1024


def channel_to(address: str) -> grpc.Channel:
    return grpc.insecure_channel(
        address,
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.max_receive_message_length", MAX_MESSAGE),
        ],
    )


def fuzz_service(
    address: str, service: str, examples: int, derandomize: bool = True, tally: Tally | None = None
) -> Tally:
    """Send about `examples` fuzzed inputs to `service` at `address`, spread over its RPCs
    (Describe, whose request is empty, gets a tenth); returns what it answered."""
    tally = tally or Tally()
    rpcs = methods(service)
    weights = {m.path: 1 if m.path.endswith("/Describe") else 10 for m in rpcs}
    total = sum(weights.values())
    with channel_to(address) as channel:
        for method in rpcs:
            _fuzz_method(
                channel,
                method,
                max(1, examples * weights[method.path] // total),
                derandomize,
                tally,
            )
    return tally


def _fuzz_method(
    channel: grpc.Channel, method: Method, examples: int, derandomize: bool, tally: Tally
) -> None:
    from hypothesis import HealthCheck, Phase, given, settings

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=derandomize,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(cases(method))
    def one(case: Case) -> None:
        tally.record(method, case, call(channel, method, case))

    one()


def normal_requests(address: str, service: str) -> list[str]:
    """Each RPC of `service` with a valid request; the failures (empty: all succeeded)."""
    failures = []
    with channel_to(address) as channel:
        for method in methods(service):
            data = tuple(m.SerializeToString() for m in method.valid())
            case = Case(data if method.client_streaming else data[:1], kind="valid")
            outcome = call(channel, method, case)
            if outcome.code != grpc.StatusCode.OK:
                failures.append(f"{method.path}: {outcome.code.name} {outcome.details}")
    return failures


def serving(address: str) -> bool:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux /proc), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")
