"""Protobuf <-> domain types for the translate API. Unset proto3 optional fields become None
(the server default); times go from seconds to milliseconds here and nowhere else."""

from __future__ import annotations

from milo.translate.v1 import translate_pb2
from services.translate.core import Result, TranslateCore
from services.translate.engine import Output


def describe(core: TranslateCore) -> translate_pb2.DescribeResponse:
    """What the loaded model offers, and the server's limits."""
    engine, catalog = core.engine, core.catalog
    return translate_pb2.DescribeResponse(
        model_id=engine.model_id,
        languages=[
            translate_pb2.Language(code=lang.code, model_code=lang.model_code, name=lang.name)
            for lang in catalog.languages
        ],
        pairs=[translate_pb2.LanguagePair(source=a.code, target=b.code) for a, b in catalog.pairs],
        max_batch_texts=core.limits.max_texts,
        max_text_chars=core.limits.max_text_chars,
        device=engine.device,
        compute_type=engine.compute_type,
        batch_window_ms=round(core.policy.window_s * 1000),
        max_engine_batch=core.policy.max_batch,
    )


def beam_size(request: translate_pb2.TranslateRequest) -> int | None:
    """The request's beam size; None: the server default."""
    return request.beam_size if request.HasField("beam_size") else None


def translate_response(result: Result, processing_s: float) -> translate_pb2.TranslateResponse:
    """One translation per text, in order; times in milliseconds."""
    return translate_pb2.TranslateResponse(
        translations=[_translation(o) for o in result.outputs],
        source_model_code=result.source.model_code,
        target_model_code=result.target.model_code,
        processing_ms=processing_s * 1000,
        queue_ms=result.queue_s * 1000,
    )


def _translation(output: Output) -> translate_pb2.Translation:
    return translate_pb2.Translation(
        text=output.text,
        input_tokens=output.input_tokens,
        output_tokens=output.output_tokens,
        truncated=output.truncated,
    )
