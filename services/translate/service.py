"""The translate service as the runtime hosts it: load the engine, wire the servicer."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from milo.translate.v1 import translate_pb2, translate_pb2_grpc
from services.runtime.errors import Unavailable
from services.translate.batcher import BatchPolicy, MicroBatcher
from services.translate.cache import PhraseCache
from services.translate.config import TranslateSettings
from services.translate.engine import Job, TranslationEngine
from services.translate.guards import LengthLimit
from services.translate.languages import KNOWN, Language, LanguageCatalog, lookup
from services.translate.pipeline import Limits, TextTranslator
from services.translate.servicer import TranslatorServicer

log = logging.getLogger(__name__)

# Builds the engine (blocking); gets the languages whose output pieces it should keep.
EngineFactory = Callable[[TranslateSettings, tuple[Language, ...]], TranslationEngine]


def ct2_engine(settings: TranslateSettings, restrict_to: tuple[Language, ...]) -> TranslationEngine:
    from services.translate.ct2_engine import Ct2Engine, EngineConfig

    return Ct2Engine(EngineConfig(
        model_dir=settings.model_dir, device=settings.device,
        compute_type=settings.compute_type, threads=settings.threads,
        length=LengthLimit(settings.max_output_ratio, settings.max_output_extra),
        no_repeat_ngram_size=settings.no_repeat_ngram_size,
        repetition_penalty=settings.repetition_penalty,
        restrict_to=restrict_to if settings.restrict_vocab else (),
        model_id=settings.model_id,
    ))  # fmt: skip


class TranslateService:
    name = "translate"
    service_names = (translate_pb2.DESCRIPTOR.services_by_name["Translator"].full_name,)

    def __init__(self, settings: TranslateSettings, engine_factory: EngineFactory = ct2_engine):
        self.settings = settings
        self._factory = engine_factory
        self.model_id = settings.model_id or settings.model_dir.name
        self.device: str = settings.device
        self.compute_type = ""
        self._engine: TranslationEngine | None = None
        self._translator: TextTranslator | None = None

    @property
    def translator(self) -> TextTranslator:
        if self._translator is None:
            raise Unavailable("the translation model is not loaded")
        return self._translator

    def register(self, server: grpc.aio.Server) -> None:
        translate_pb2_grpc.add_TranslatorServicer_to_server(TranslatorServicer(self), server)

    def load(self) -> None:
        """Load the engine, check its languages, warm it up (blocking, in a worker thread)."""
        s = self.settings
        engine = self._factory(s, self._output_languages())
        catalog = LanguageCatalog(engine.language_codes(), s.target_languages)
        beam = s.beam_size or (2 if engine.device == "cuda" else 1)
        source, target = catalog.pairs[0]
        engine.translate([Job("Salama.", source.model_code, target.model_code)], beam)
        self._engine = engine
        self.model_id, self.device, self.compute_type = (
            engine.model_id, engine.device, engine.compute_type)
        batcher = MicroBatcher(engine.translate, BatchPolicy(s.max_engine_batch,
                                                             s.batch_window_ms / 1000))
        limits = Limits(s.max_texts, s.max_text_chars, s.max_sentence_chars, s.max_beam_size)
        cache = PhraseCache(s.cache_size, s.cache_max_chars)
        self._translator = TextTranslator(catalog, batcher, cache, limits, beam)
        log.info("translate offers %d languages, %d pairs; beam %d, batches of up to %d "
                 "sentences, window %.1f ms", len(catalog.languages), len(catalog.pairs),
                 beam, s.max_engine_batch, s.batch_window_ms)  # fmt: skip

    def _output_languages(self) -> tuple[Language, ...]:
        codes = self.settings.target_languages
        found = [lookup(code) for code in codes]
        unknown = [code for code, lang in zip(codes, found, strict=True) if lang is None]
        if unknown:
            raise ValueError(f"unknown target language(s) {unknown} in the settings")
        return tuple(lang for lang in found if lang is not None) or KNOWN

    def close(self) -> None:
        if self._translator is not None:
            self._translator.batcher.stop_threadsafe()
        if self._engine is not None:
            self._engine.close()
