"""The milo.translate.v1.Translator servicer: protobuf in, domain call, protobuf out."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import grpc

from milo.translate.v1 import translate_pb2, translate_pb2_grpc
from services.translate.engine import Output

if TYPE_CHECKING:
    from services.translate.service import TranslateService


class TranslatorServicer(translate_pb2_grpc.TranslatorServicer):
    def __init__(self, service: TranslateService) -> None:
        self._service = service

    async def Describe(
        self, request: translate_pb2.DescribeRequest, context: grpc.aio.ServicerContext
    ) -> translate_pb2.DescribeResponse:
        service, s = self._service, self._service.settings
        catalog = service.translator.catalog
        return translate_pb2.DescribeResponse(
            model_id=service.model_id,
            languages=[
                translate_pb2.Language(code=lang.code, model_code=lang.model_code, name=lang.name)
                for lang in catalog.languages
            ],
            pairs=[
                translate_pb2.LanguagePair(source=a.code, target=b.code) for a, b in catalog.pairs
            ],
            max_batch_texts=s.max_texts,
            max_text_chars=s.max_text_chars,
            device=service.device,
            compute_type=service.compute_type,
            batch_window_ms=round(s.batch_window_ms),
            max_engine_batch=s.max_engine_batch,
        )

    async def Translate(
        self, request: translate_pb2.TranslateRequest, context: grpc.aio.ServicerContext
    ) -> translate_pb2.TranslateResponse:
        start = time.monotonic()
        beam = request.beam_size if request.HasField("beam_size") else None
        result = await self._service.translator.translate(
            list(request.texts), request.source_language, request.target_language, beam
        )
        return translate_pb2.TranslateResponse(
            translations=[_translation(o) for o in result.outputs],
            source_model_code=result.source.model_code,
            target_model_code=result.target.model_code,
            processing_ms=(time.monotonic() - start) * 1000,
            queue_ms=result.queue_s * 1000,
        )


def _translation(output: Output) -> translate_pb2.Translation:
    return translate_pb2.Translation(
        text=output.text,
        input_tokens=output.input_tokens,
        output_tokens=output.output_tokens,
        truncated=output.truncated,
    )
