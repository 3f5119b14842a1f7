"""The Realtime adapter: client events in, gateway requests out; gateway events in,
Realtime server events out. One per WebSocket.

In: `session.update`, `input_audio_buffer.append/commit/clear`, `conversation.item.create`
(user text), `conversation.item.truncate` / `delete`, `response.create`, `response.cancel`.
Out: the GA server events; Milo's own (`milo.translation`, `milo.reply_sentence`,
`milo.latency`) are extra event types that standard clients ignore.

A gateway turn is a response. With server VAD the STT service endpoints speech and the
gateway answers each final transcript at once (response.created follows
input_audio_buffer.committed); speech during a reply cancels it (barge-in). With turn
detection off, audio is kept until `input_audio_buffer.commit`. A text turn starts at
`response.create` after `conversation.item.create`; a turn id the gateway gives that is
not a spoken one belongs to the oldest response.create still waiting.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.core import GatewayCore
from gateway.http.realtime import events as ev
from gateway.http.realtime.audio import InputAudio, OutputAudio, b64decode, b64encode
from gateway.http.realtime.config import RealtimeConfig
from gateway.http.realtime.conversation import Conversation
from milo.gateway.v1 import gateway_pb2 as gw
from services.runtime.errors import InvalidArgument, MiloError

log = logging.getLogger(__name__)
Send = Callable[[dict[str, Any]], Awaitable[None]]
VoiceResolver = Callable[[str | None], Awaitable[str | None]]
_MIN_COMMIT_MS = 100  # OpenAI's: a commit needs at least this much audio
_MAX_BUFFER_S = 30  # turn detection off: the most audio kept before a commit


@dataclass
class TurnState:
    """What a gateway turn id stands for here."""

    user_item: str | None = None
    reply: ev.Reply | None = None
    partial: str = ""
    rate: int = 0  # of the reply audio, from the turn's first audio event


class RealtimeSession:
    """One Realtime WebSocket's session: `send` writes a server event to the socket,
    `voices` maps a Realtime voice name to a TTS voice (None: the default), and audio goes
    to the gateway in chunks of at most `max_chunk_bytes`. The gateway session behind it
    starts on first use and restarts when a setting it was started with changes."""

    def __init__(
        self,
        core: GatewayCore,
        config: RealtimeConfig,
        send: Send,
        voices: VoiceResolver,
        max_chunk_bytes: int,
    ) -> None:
        self.core, self.config, self._send, self._voices = core, config, send, voices
        self._max_chunk = max_chunk_bytes
        self._conv: Conversation | None = None
        self._in = InputAudio(config.input_format)
        self._out = OutputAudio(config.output_format)
        self._turns: dict[int, TurnState] = {}
        self._requested: deque[ev.Reply] = deque()  # response.create waiting for a turn
        self._committed: deque[str] = deque()  # manual commits waiting for their final
        self._pending: list[tuple[str, str]] = []  # user text items not yet answered
        self._buffer = bytearray()
        self._replies: dict[str, ev.Reply] = {}  # by item id, for truncate
        self._last_item: str | None = None

    # ---- client events ------------------------------------------------------------------

    async def start(self) -> None:
        """Send `session.created` with the initial settings."""
        await self._send(ev.event("session.created", session=self.config.describe()))

    async def receive(self, text: str) -> None:
        """One client event; a bad one gets an `error` event and the session goes on."""
        event_id = None
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise InvalidArgument("an event must be a JSON object with a `type`")
            event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
            handler = self._HANDLERS.get(str(data.get("type")))
            if handler is None:
                raise InvalidArgument(
                    f"unknown event type {data.get('type')!r}; supported: "
                    + ", ".join(sorted(self._HANDLERS))
                )
            await handler(self, data)
        except json.JSONDecodeError as exc:
            await self._send(ev.error(f"the event is not JSON: {exc}", "invalid_json"))
        except InvalidArgument as exc:
            await self._send(ev.error(exc.message, event_id=event_id))

    async def _session_update(self, data: dict[str, Any]) -> None:
        new = self.config.updated(data.get("session"))
        restart = new.gateway_fields() != self.config.gateway_fields()
        self.config = new
        if restart:  # formats, voice, VAD...: a new gateway session on next use
            await self._end_conversation()
            self._in, self._out = InputAudio(new.input_format), OutputAudio(new.output_format)
            self._buffer.clear()
        await self._send(ev.event("session.updated", session=new.describe()))

    async def _append(self, data: dict[str, Any]) -> None:
        audio = self._in.to_pcm(b64decode(data.get("audio")))
        if not audio:
            return
        if self.config.turn_detection is None:
            if len(self._buffer) + len(audio) > _MAX_BUFFER_S * self._in.format.rate * 2:
                raise InvalidArgument(
                    f"the input audio buffer holds at most {_MAX_BUFFER_S} s:"
                    " commit it (input_audio_buffer.commit) first"
                )
            self._buffer.extend(audio)
            return
        await self._feed(audio)

    async def _feed(self, pcm: bytes) -> None:
        conv = await self._conversation()
        for i in range(0, len(pcm), self._max_chunk):
            conv.send(gw.ConverseRequest(audio=pcm[i : i + self._max_chunk]))

    async def _commit(self, data: dict[str, Any]) -> None:
        if self.config.turn_detection is not None:  # finalize what the VAD has heard now
            conv = await self._conversation()
            conv.send(_control(gw.Control.ACTION_END_OF_UTTERANCE))
            return
        if len(self._buffer) / 2 / self._in.format.rate * 1000 < _MIN_COMMIT_MS:
            raise InvalidArgument(
                f"the input audio buffer holds less than {_MIN_COMMIT_MS} ms "
                "of audio: nothing to commit"
            )
        pcm, self._buffer = bytes(self._buffer), bytearray()
        await self._feed(pcm)
        (await self._conversation()).send(_control(gw.Control.ACTION_END_OF_UTTERANCE))
        item = ev.new_id("item")
        self._committed.append(item)
        await self._send(
            ev.event("input_audio_buffer.committed", item_id=item, previous_item_id=self._last_item)
        )
        self._last_item = item

    async def _clear(self, data: dict[str, Any]) -> None:
        self._buffer.clear()
        await self._send(ev.event("input_audio_buffer.cleared"))

    async def _item_create(self, data: dict[str, Any]) -> None:
        item = data.get("item")
        text = _user_text(item)
        given = item.get("id") if isinstance(item, dict) else None
        item_id = given if isinstance(given, str) and given else ev.new_id("item")
        self._pending.append((item_id, text))
        created = ev.user_item(item_id, text, audio=False)
        await self._send(
            ev.event("conversation.item.added", item=created, previous_item_id=self._last_item)
        )
        await self._send(
            ev.event("conversation.item.done", item=created, previous_item_id=self._last_item)
        )
        self._last_item = item_id

    async def _item_delete(self, data: dict[str, Any]) -> None:
        item_id = data.get("item_id")
        before = len(self._pending)
        self._pending = [(i, t) for i, t in self._pending if i != item_id]
        if len(self._pending) == before:
            raise InvalidArgument(
                f"item {item_id!r} cannot be deleted: only user messages not yet answered can"
            )
        await self._send(ev.event("conversation.item.deleted", item_id=item_id))

    async def _truncate(self, data: dict[str, Any]) -> None:
        reply = self._replies.get(str(data.get("item_id")))
        end = data.get("audio_end_ms")
        if reply is None:
            raise InvalidArgument(f"no assistant audio item {data.get('item_id')!r} to truncate")
        if (
            isinstance(end, bool)
            or not isinstance(end, int)
            or not 0 <= end <= (reply.audio_ms + 1)
        ):
            raise InvalidArgument(
                f"audio_end_ms must be 0 to {int(reply.audio_ms)} (the audio "
                "sent for this item), in ms"
            )
        reply.truncated_ms = end
        await self._send(
            ev.event(
                "conversation.item.truncated",
                item_id=reply.item_id,
                content_index=data.get("content_index", 0),
                audio_end_ms=end,
            )
        )

    async def _response_create(self, data: dict[str, Any]) -> None:
        if self._active():
            raise InvalidArgument(
                "a response is already in progress: cancel it "
                "(response.cancel) or wait for response.done"
            )
        if not self._pending:
            if self._committed:
                return  # the committed audio's response starts with its transcript
            raise InvalidArgument(
                "nothing to respond to: add a user message "
                "(conversation.item.create) or speak first"
            )
        text = "\n".join(t for _, t in self._pending)
        reply = self._new_reply()
        reply.user_item = self._pending[-1][0]
        self._pending.clear()
        self._requested.append(reply)
        await self._send(ev.event("response.created", response=reply.describe()))
        (await self._conversation()).send(gw.ConverseRequest(text=gw.UserText(text=text)))

    async def _response_cancel(self, data: dict[str, Any]) -> None:
        if not self._active():
            raise InvalidArgument("there is no response in progress to cancel")
        if self._conv is not None:
            self._conv.send(_control(gw.Control.ACTION_CANCEL))

    async def _unsupported(self, data: dict[str, Any]) -> None:
        raise InvalidArgument(f"{data.get('type')} is not supported by Milo")

    _HANDLERS: ClassVar[dict[str, Callable[[RealtimeSession, dict[str, Any]], Awaitable[None]]]] = {
        "session.update": _session_update,
        "input_audio_buffer.append": _append,
        "input_audio_buffer.commit": _commit,
        "input_audio_buffer.clear": _clear,
        "conversation.item.create": _item_create,
        "conversation.item.delete": _item_delete,
        "conversation.item.truncate": _truncate,
        "conversation.item.retrieve": _unsupported,
        "output_audio_buffer.clear": _unsupported,
        "response.create": _response_create,
        "response.cancel": _response_cancel,
    }

    # ---- the gateway session --------------------------------------------------------------

    async def _conversation(self) -> Conversation:
        if self._conv is None or not self._conv.alive:
            voice = await self._voices(self.config.voice)
            self._conv = Conversation(
                self.core,
                self.config.session_config(voice),
                self.on_gateway_event,
                self._gateway_failed,
            )
        return self._conv

    async def _gateway_failed(self, exc: MiloError) -> None:
        await self._send(ev.error(exc.message, exc.code.name.lower(), kind="server_error"))

    async def _end_conversation(self) -> None:
        if self._conv is not None:
            await self._conv.close()
            self._conv = None
        for reply in list(self._open_replies()):
            reply.status, reply.reason = "cancelled", "client_cancelled"
            await self._finish(reply)
        self._turns.clear()
        self._requested.clear()
        self._committed.clear()

    async def close(self) -> None:
        """End the gateway session, if one is open (its turn in progress is cancelled)."""
        if self._conv is not None:
            await self._conv.close()
            self._conv = None

    def _active(self) -> bool:
        return any(True for _ in self._open_replies())

    def _open_replies(self):  # type: ignore[no-untyped-def]
        seen = {id(r): r for r in self._requested}
        seen.update({id(t.reply): t.reply for t in self._turns.values() if t.reply})
        return (r for r in seen.values() if r.status == "in_progress")

    def _new_reply(self) -> ev.Reply:
        c = self.config
        return ev.Reply(c.text_only, c.voice, c.output_format.describe())

    # ---- gateway events -----------------------------------------------------------------

    async def on_gateway_event(self, event: gw.ConverseResponse) -> None:
        """Turn one gateway event into the Realtime server events it stands for (none for
        the kinds this adapter does not map)."""
        kind = event.WhichOneof("event")
        handler = self._GATEWAY.get(kind or "")
        if handler is not None:
            await handler(self, event, self._turns.setdefault(event.turn_id, TurnState()))

    async def _speech_started(self, event: gw.ConverseResponse, turn: TurnState) -> None:
        if self.config.turn_detection is None:
            return
        turn.user_item = turn.user_item or ev.new_id("item")
        await self._send(
            ev.event(
                "input_audio_buffer.speech_started",
                item_id=turn.user_item,
                audio_start_ms=event.speech_started.offset_ms,
            )
        )

    async def _speech_ended(self, event: gw.ConverseResponse, turn: TurnState) -> None:
        if self.config.turn_detection is None:
            return
        turn.user_item = turn.user_item or ev.new_id("item")
        await self._send(
            ev.event(
                "input_audio_buffer.speech_stopped",
                item_id=turn.user_item,
                audio_end_ms=event.speech_ended.offset_ms,
            )
        )

    async def _transcript(self, event: gw.ConverseResponse, turn: TurnState) -> None:
        t = event.transcript
        if t.is_final:
            await self._final(turn, t.text)
            return
        if self.config.transcription is None:
            return
        turn.user_item = turn.user_item or ev.new_id("item")
        delta = t.text[len(turn.partial) :] if t.text.startswith(turn.partial) else ""
        turn.partial = t.text if delta else turn.partial
        if delta:
            await self._send(
                ev.event(
                    "conversation.item.input_audio_transcription.delta",
                    item_id=turn.user_item,
                    content_index=0,
                    delta=delta,
                )
            )

    async def _final(self, turn: TurnState, text: str) -> None:
        manual = self.config.turn_detection is None
        if manual and self._committed:
            turn.user_item = self._committed.popleft()
        else:
            turn.user_item = turn.user_item or ev.new_id("item")
            await self._send(
                ev.event(
                    "input_audio_buffer.committed",
                    item_id=turn.user_item,
                    previous_item_id=self._last_item,
                )
            )
        item = ev.user_item(turn.user_item, text, audio=True)
        await self._send(
            ev.event("conversation.item.added", item=item, previous_item_id=self._last_item)
        )
        await self._send(
            ev.event("conversation.item.done", item=item, previous_item_id=self._last_item)
        )
        self._last_item = turn.user_item
        if self.config.transcription is not None:
            await self._send(
                ev.event(
                    "conversation.item.input_audio_transcription.completed",
                    item_id=turn.user_item,
                    content_index=0,
                    transcript=text,
                    usage={"type": "duration", "seconds": 0},
                )
            )
        if text.strip():  # the gateway answers it at once
            turn.reply = self._new_reply()
            await self._send(ev.event("response.created", response=turn.reply.describe()))

    def _bind(self, turn: TurnState) -> None:
        """A turn that is not a spoken one answers the oldest waiting response.create."""
        if turn.reply is None and turn.user_item is None and self._requested:
            turn.reply = self._requested.popleft()
            turn.user_item = turn.reply.user_item

    async def _reply_of(self, turn: TurnState) -> ev.Reply:
        """The response a turn's reply event belongs to, opened (item and part sent)."""
        self._bind(turn)
        if turn.reply is None:
            turn.reply = self._new_reply()
        reply = turn.reply
        if not reply.opened:
            reply.opened = True
            self._replies[reply.item_id] = reply
            for out in ev.opening_events(reply, self._last_item):
                await self._send(out)
            self._last_item = reply.item_id
        return reply

    async def _translation(self, event: gw.ConverseResponse, turn: TurnState) -> None:
        self._bind(turn)
        t = event.translation
        await self._send(
            ev.event(
                "milo.translation",
                item_id=turn.user_item,
                source_text=t.source_text,
                text=t.text,
                source_language=t.source_language,
                target_language=t.target_language,
            )
        )

    async def _sentence(self, event: gw.ConverseResponse, turn: TurnState) -> None:
        s, reply = event.reply_sentence, await self._reply_of(turn)
        delta = (" " if reply.parts else "") + s.text
        reply.parts.append(s.text)
        kind = (
            "response.output_text.delta"
            if reply.text_only
            else "response.output_audio_transcript.delta"
        )
        await self._send(ev.event(kind, **reply.where(), delta=delta))
        await self._send(
            ev.event(
                "milo.reply_sentence",
                response_id=reply.id,
                item_id=reply.item_id,
                sentence_index=s.sentence_index,
                text=s.text,
                pivot_text=s.pivot_text,
            )
        )

    async def _audio(self, event: gw.ConverseResponse, turn: TurnState) -> None:
        if event.audio.HasField("format"):
            turn.rate = event.audio.format.sample_rate_hz
        pcm = event.audio.chunk.data
        if not pcm:
            return
        reply = await self._reply_of(turn)
        data, ms = self._out.from_pcm(pcm, turn.rate)
        reply.audio_ms += ms
        if data:
            await self._send(
                ev.event("response.output_audio.delta", **reply.where(), delta=b64encode(data))
            )

    async def _latency(self, event: gw.ConverseResponse, turn: TurnState) -> None:
        fields = ev.latency_fields(event.latency)
        if turn.reply is not None:
            turn.reply.output_tokens = fields.get("llm_completion_tokens")
        await self._send(
            ev.event("milo.latency", response_id=turn.reply and turn.reply.id, **fields)
        )

    async def _error(self, event: gw.ConverseResponse, turn: TurnState) -> None:
        e = event.error
        failure = {
            "type": "server_error",
            "code": e.code.lower(),
            "message": f"{gw.Stage.Name(e.stage)}: {e.message}",
        }
        if event.turn_id and e.stage not in (gw.STAGE_STT, gw.STAGE_GATEWAY):
            self._bind(turn)  # a text turn that failed early
        if turn.reply is not None and e.stage != gw.STAGE_GATEWAY:
            turn.reply.failure = failure
            return
        kind = "invalid_request_error" if e.code == "INVALID_ARGUMENT" else "server_error"
        await self._send(ev.error(failure["message"], failure["code"], kind=kind))

    async def _turn_ended(self, event: gw.ConverseResponse, turn: TurnState) -> None:
        reply = turn.reply
        self._turns.pop(event.turn_id, None)
        if reply is None or reply.status != "in_progress":
            return
        reply.status, reason = ev.finish_status(event.turn_ended.reason)
        reply.reason = reply.reason or reason
        await self._finish(reply)

    async def _finish(self, reply: ev.Reply) -> None:
        if reply.status == "in_progress":
            reply.status = "incomplete"
        if reply.status == "failed" and reply.failure is None:
            reply.failure = {"type": "server_error", "code": "internal", "message": "failed"}
        for out in ev.closing_events(reply):
            await self._send(out)

    _GATEWAY: ClassVar[
        dict[str, Callable[[RealtimeSession, gw.ConverseResponse, TurnState], Awaitable[None]]]
    ] = {
        "speech_started": _speech_started,
        "speech_ended": _speech_ended,
        "transcript": _transcript,
        "translation": _translation,
        "reply_sentence": _sentence,
        "audio": _audio,
        "latency": _latency,
        "error": _error,
        "turn_ended": _turn_ended,
    }


def _control(action: int) -> gw.ConverseRequest:
    return gw.ConverseRequest(control=gw.Control(action=action))  # type: ignore[arg-type]


def _user_text(item: object) -> str:
    """The text of a user message item; InvalidArgument for anything else."""
    if not isinstance(item, dict) or item.get("type", "message") != "message":
        raise InvalidArgument(
            "conversation.item.create takes a message item; Milo has no "
            "tools (function calls are not supported)"
        )
    if item.get("role") != "user":
        raise InvalidArgument(
            "only user messages can be added; set the assistant's "
            "behaviour with session.instructions"
        )
    content = item.get("content")
    if not isinstance(content, list) or not content:
        raise InvalidArgument("item.content must be a list of input_text parts")
    texts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in ("input_text", "text"):
            raise InvalidArgument(
                "only input_text content is supported in "
                "conversation.item.create (send speech with "
                "input_audio_buffer.append)"
            )
        if not isinstance(part.get("text"), str):
            raise InvalidArgument("an input_text part needs a `text` string")
        texts.append(part["text"])
    text = " ".join(texts).strip()
    if not text:
        raise InvalidArgument("the message is empty")
    return text
