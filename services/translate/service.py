"""The translate service's composition root: settings -> engine, batcher, cache, core and
servicer, as one `ModelService` the runtime hosts."""

from __future__ import annotations

from functools import partial

from milo.translate.v1 import translate_pb2, translate_pb2_grpc
from services.doctor.models import preflight
from services.runtime.model_service import ModelService
from services.translate.batcher import BatchPolicy
from services.translate.cache import PhraseCache
from services.translate.config import TranslateSettings
from services.translate.core import Limits, TranslateCore
from services.translate.engine import TranslationEngine
from services.translate.guards import LengthLimit
from services.translate.languages import KNOWN, Language, lookup
from services.translate.servicer import TranslatorServicer

SERVICE_NAME = translate_pb2.DESCRIPTOR.services_by_name["Translator"].full_name


def ct2_engine(settings: TranslateSettings) -> TranslationEngine:
    """The real engine (CTranslate2 is imported on load)."""
    from services.translate.ct2_engine import Ct2Engine, EngineConfig

    s = settings
    languages = output_languages(s.target_languages)
    return Ct2Engine(
        EngineConfig(
            model_dir=s.model_dir,
            device=s.device,
            compute_type=s.compute_type,
            threads=s.threads,
            length=LengthLimit(s.max_output_ratio, s.max_output_extra),
            no_repeat_ngram_size=s.no_repeat_ngram_size,
            repetition_penalty=s.repetition_penalty,
            restrict_to=languages if s.restrict_vocab else (),
            model_id=s.model_id,
        )
    )


def output_languages(codes: list[str]) -> tuple[Language, ...]:
    """The languages whose output pieces the engine should keep (all when none is named)."""
    found = [lookup(code) for code in codes]
    unknown = [code for code, lang in zip(codes, found, strict=True) if lang is None]
    if unknown:
        raise ValueError(f"unknown target language(s) {unknown} in the settings")
    return tuple(lang for lang in found if lang is not None) or KNOWN


def make_service(
    settings: TranslateSettings, engine: TranslationEngine | None = None
) -> ModelService:
    """The translate service: a CTranslate2 engine (or `engine`: tier-2 tests pass a fake),
    the micro-batcher's policy, the phrase cache, the core and the servicer."""
    s = settings
    core = TranslateCore(
        engine or ct2_engine(s),
        BatchPolicy(s.max_engine_batch, s.batch_window_ms / 1000),
        PhraseCache(s.cache_size, s.cache_max_chars),
        Limits(s.max_texts, s.max_text_chars, s.max_sentence_chars, s.max_beam_size),
        target_languages=s.target_languages,
        beam_size=s.beam_size,
    )
    servicer = TranslatorServicer(core)
    check = None if engine else partial(preflight, "translate", s.model_dir)
    return ModelService(
        "translate",
        (SERVICE_NAME,),
        core,
        partial(translate_pb2_grpc.add_TranslatorServicer_to_server, servicer),
        preflight=check,
    )
