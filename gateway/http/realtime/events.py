"""Server events of the Realtime protocol (GA names) and the objects they carry: ids,
conversation items, responses, errors. Pure functions over plain dicts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from milo.gateway.v1 import gateway_pb2 as gw


def new_id(prefix: str) -> str:
    """A fresh id such as "item_" and 20 hex digits."""
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def event(kind: str, **fields: Any) -> dict[str, Any]:
    """A server event of type `kind`, with a fresh event_id and `fields`."""
    return {"type": kind, "event_id": new_id("event"), **fields}


def error(
    message: str,
    code: str = "invalid_value",
    param: str | None = None,
    event_id: str | None = None,
    kind: str = "invalid_request_error",
) -> dict[str, Any]:
    """An `error` event; the session goes on."""
    return event(
        "error",
        error={
            "type": kind,
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        },
    )


def user_item(item_id: str, text: str | None, audio: bool) -> dict[str, Any]:
    """A completed user message item: an input_audio part with `text` as its transcript
    (None while there is none), or an input_text part."""
    part = (
        {"type": "input_audio", "transcript": text}
        if audio
        else {"type": "input_text", "text": text}
    )
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [part],
    }


@dataclass
class Reply:
    """One response (one gateway turn's reply) as the Realtime API sees it."""

    text_only: bool
    voice: str
    output_format: dict[str, Any]
    id: str = field(default_factory=lambda: new_id("resp"))
    item_id: str = field(default_factory=lambda: new_id("item"))
    status: str = "in_progress"
    reason: str | None = None
    failure: dict[str, Any] | None = None
    parts: list[str] = field(default_factory=list)
    audio_ms: float = 0.0
    output_tokens: int | None = None
    opened: bool = False
    truncated_ms: float | None = None
    user_item: str | None = None  # the user message it answers

    @property
    def transcript(self) -> str:
        """The reply's sentences so far, joined by spaces."""
        return " ".join(p for p in self.parts if p)

    @property
    def part_type(self) -> str:
        """The content part's type: "text" or "audio"."""
        return "text" if self.text_only else "audio"

    def item(self, status: str = "in_progress") -> dict[str, Any]:
        """The reply's assistant message item; its text or transcript is empty while
        `status` is in_progress."""
        key = "text" if self.text_only else "transcript"
        part = {
            "type": "output_text" if self.text_only else "output_audio",
            key: self.transcript if status != "in_progress" else "",
        }
        return {
            "id": self.item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": [part],
        }

    def describe(self) -> dict[str, Any]:
        """The realtime.response object: status and its details, the output item once the
        reply is over, and usage (only output tokens are known to the gateway)."""
        done = self.status != "in_progress"
        details: dict[str, Any] | None = None
        if self.status == "cancelled":
            details = {"type": "cancelled", "reason": self.reason or "client_cancelled"}
        elif self.status == "failed":
            details = {"type": "failed", "error": self.failure}
        usage = None
        if done:
            usage = {
                "total_tokens": None,
                "input_tokens": None,  # not known to the gateway
                "output_tokens": self.output_tokens,
                "output_token_details": {"text_tokens": self.output_tokens, "audio_tokens": None},
            }
        return {
            "id": self.id,
            "object": "realtime.response",
            "status": self.status,
            "status_details": details,
            "conversation_id": "conv_milo",
            "output": [self.item("completed" if self.status == "completed" else "incomplete")]
            if done and self.opened
            else [],
            "output_modalities": ["text"] if self.text_only else ["audio"],
            "audio": {"output": {"format": self.output_format, "voice": self.voice}},
            "max_output_tokens": "inf",
            "metadata": None,
            "usage": usage,
        }

    def where(self) -> dict[str, Any]:
        """The fields that place a delta: response, item, output and content index."""
        return {
            "response_id": self.id,
            "item_id": self.item_id,
            "output_index": 0,
            "content_index": 0,
        }


_STATUS = {
    gw.TurnEnded.REASON_COMPLETED: ("completed", None),
    gw.TurnEnded.REASON_BARGED_IN: ("cancelled", "turn_detected"),
    gw.TurnEnded.REASON_CANCELLED: ("cancelled", "client_cancelled"),
    gw.TurnEnded.REASON_ERROR: ("failed", None),
}


def finish_status(reason: int) -> tuple[str, str | None]:
    """A gateway turn's end reason as a response status and status reason."""
    return _STATUS.get(reason, ("incomplete", None))


def closing_events(reply: Reply) -> list[dict[str, Any]]:
    """What ends a response: the part, the item, then response.done."""
    out = []
    where = reply.where()
    if reply.opened:
        if reply.text_only:
            out.append(event("response.output_text.done", **where, text=reply.transcript))
        else:
            out.append(event("response.output_audio.done", **where))
            out.append(
                event("response.output_audio_transcript.done", **where, transcript=reply.transcript)
            )
        key = "text" if reply.text_only else "transcript"
        item = reply.item("completed" if reply.status == "completed" else "incomplete")
        out.append(
            event(
                "response.content_part.done",
                **where,
                part={"type": reply.part_type, key: reply.transcript},
            )
        )
        out.append(
            event("response.output_item.done", response_id=reply.id, output_index=0, item=item)
        )
        out.append(event("conversation.item.done", item=item, previous_item_id=None))
    out.append(event("response.done", response=reply.describe()))
    return out


def opening_events(reply: Reply, previous_item_id: str | None) -> list[dict[str, Any]]:
    """What comes before a response's first delta: its item and content part."""
    key = "text" if reply.text_only else "transcript"
    item = reply.item()
    return [
        event("response.output_item.added", response_id=reply.id, output_index=0, item=item),
        event("conversation.item.added", item=item, previous_item_id=previous_item_id),
        event(
            "response.content_part.added", **reply.where(), part={"type": reply.part_type, key: ""}
        ),
    ]


def latency_fields(latency: gw.LatencyBreakdown) -> dict[str, Any]:
    """The turn's latency breakdown (ms) for the `milo.latency` extra event."""
    names = (
        "stt_final_ms",
        "translate_in_ms",
        "llm_first_token_ms",
        "first_sentence_ms",
        "translate_out_first_ms",
        "tts_first_audio_ms",
        "end_of_speech_to_first_audio_ms",
        "llm_completion_tokens",
    )
    out: dict[str, Any] = {n: getattr(latency, n) for n in names if latency.HasField(n)}
    out["turn_total_ms"] = latency.turn_total_ms
    return out
