"""Translate target: one unary Translate per request, sentences mg->fr and fr->mg.

The built-in sentences are filled templates, nearly all different, so that the service's
phrase cache does not answer them; a payload file of repeated phrases measures the cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from milo.translate.v1 import translate_pb2, translate_pb2_grpc
from services.loadtest import payloads
from services.loadtest.target import Probe, TargetOptions


@dataclass(frozen=True)
class Item:
    """One Translate request: its texts and language codes."""

    texts: tuple[str, ...]
    source: str
    target: str


class TranslateTarget:
    """Load on the translation service's Translate (unary); units are output tokens."""

    name = "translate"
    first_result = ""  # unary: the reply is the only result
    units = "tokens out"

    def __init__(self, channel: grpc.aio.Channel, options: TargetOptions) -> None:
        self.stub = translate_pb2_grpc.TranslatorStub(channel)
        self.options = options

    async def describe(self) -> str:
        """The model id and device, from Describe."""
        reply = await self.stub.Describe(
            translate_pb2.DescribeRequest(), timeout=10, metadata=self.options.metadata
        )
        return f"{reply.model_id} on {reply.device}"

    async def payloads(self, workdir: Path) -> list[Item]:
        """Requests from the user's files, else the built-in sentences; raises ValueError for a
        malformed record."""
        o = self.options
        if not o.payload_files:
            return [
                Item((text,), source, target)
                for text, source, target in payloads.translate_sentences()
            ]
        items = []
        for path in o.payload_files:
            for record in payloads.read_records(path):
                items.append(self._item(record, str(path)))
        return items

    def _item(self, record: object, where: str) -> Item:
        o = self.options
        if isinstance(record, dict) and "texts" in record:
            texts = tuple(str(t) for t in record["texts"])
        else:
            texts = (str(payloads.field_of(record, "text", where)),)
        if isinstance(record, dict):
            return Item(
                texts, str(record.get("source", o.source)), str(record.get("target", o.target))
            )
        return Item(texts, o.source, o.target)

    async def call(self, payload: Item, probe: Probe, deadline_s: float) -> None:
        """One Translate call; counts the output tokens."""
        request = translate_pb2.TranslateRequest(
            texts=list(payload.texts),
            source_language=payload.source,
            target_language=payload.target,
        )
        reply = await self.stub.Translate(
            request, timeout=deadline_s, metadata=self.options.metadata
        )
        probe.add_units(sum(t.output_tokens for t in reply.translations))
