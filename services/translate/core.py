"""From a request's texts to their translations: checks, sentence splitting, the phrase
cache, the batcher, and joining sentences back into texts. No model code and no protobuf.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from services.runtime.errors import InvalidArgument, Unavailable
from services.translate import metrics
from services.translate.batcher import BatchPolicy, MicroBatcher
from services.translate.cache import PhraseCache
from services.translate.engine import Job, Output, TranslationEngine
from services.translate.languages import Language, LanguageCatalog
from services.translate.text import Segmented, has_words, segment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """Request limits: texts per request, characters per text, characters per sentence (longer
    sentences are split), and the largest beam size."""

    max_texts: int = 64
    max_text_chars: int = 5000
    max_sentence_chars: int = 400
    max_beam: int = 8


@dataclass(frozen=True)
class Result:
    """Outputs of one request, one per text, with the resolved languages and `queue_s`, the
    longest wait in seconds of one of its sentences for an engine call."""

    outputs: list[Output]
    source: Language
    target: Language
    queue_s: float  # longest wait of one of its sentences for an engine call


class TranslateCore:
    """Translation over one engine: `load` before use, `close` after (see the runtime's
    `model_service`). The catalog, the default beam and the batcher come with the model.

    `target_languages`: the codes offered as targets (empty: every language the model has);
    `beam_size`: the default beam (None: 2 on a GPU, 1 on CPU)."""

    def __init__(
        self,
        engine: TranslationEngine,
        policy: BatchPolicy,
        cache: PhraseCache,
        limits: Limits,
        target_languages: Sequence[str] = (),
        beam_size: int | None = None,
    ) -> None:
        self.engine, self.policy, self.cache, self.limits = engine, policy, cache, limits
        self._targets, self._beam_size = tuple(target_languages), beam_size
        self.default_beam = beam_size or 1
        self._catalog: LanguageCatalog | None = None
        self._batcher: MicroBatcher | None = None

    @property
    def catalog(self) -> LanguageCatalog:
        """The model's languages; raises Unavailable until loaded."""
        if self._catalog is None:
            raise Unavailable("the translation model is not loaded")
        return self._catalog

    @property
    def batcher(self) -> MicroBatcher:
        """The batcher in front of the engine; raises Unavailable until loaded."""
        if self._batcher is None:
            raise Unavailable("the translation model is not loaded")
        return self._batcher

    def load(self) -> None:
        """Load the engine, check its languages, warm it up (blocking)."""
        engine = self.engine
        engine.load()
        catalog = LanguageCatalog(engine.language_codes(), self._targets)
        self.default_beam = self._beam_size or (2 if engine.device == "cuda" else 1)
        source, target = catalog.pairs[0]
        engine.translate([Job("Salama.", source.model_code, target.model_code)], self.default_beam)
        self._catalog = catalog
        self._batcher = MicroBatcher(engine.translate, self.policy)
        log.info(
            "translate offers %d languages, %d pairs; beam %d, batches of up to %d "
            "sentences, window %.1f ms",
            len(catalog.languages),
            len(catalog.pairs),
            self.default_beam,
            self.policy.max_batch,
            self.policy.window_s * 1000,
        )

    def close(self) -> None:
        """Stop the batcher and release the engine."""
        if self._batcher is not None:
            self._batcher.stop_threadsafe()
        self.engine.close()

    async def translate(
        self, texts: Sequence[str], source: str, target: str, beam_size: int | None = None
    ) -> Result:
        """One output per text, in order. Empty or blank texts, and sentences with no
        letter in them (punctuation, numbers, emoji), come back as they are."""
        self._check(texts)
        beam = self._beam(beam_size)
        src, tgt = self.catalog.resolve_pair(source, target)
        docs = [segment(text, self.limits.max_sentence_chars) for text in texts]
        jobs = list(
            dict.fromkeys(
                Job(s, src.model_code, tgt.model_code)
                for doc in docs
                for s in doc.sentences
                if has_words(s)
            )
        )
        kept = sum(not has_words(s) for doc in docs for s in doc.sentences)
        if kept:
            metrics.PASSED_THROUGH.inc(kept)
        done, queue_s = await self._translate_jobs(jobs, beam)
        return Result([_assemble(doc, done, src, tgt) for doc in docs], src, tgt, queue_s)

    async def _translate_jobs(self, jobs: list[Job], beam: int) -> tuple[dict[Job, Output], float]:
        done: dict[Job, Output] = {}
        for job in jobs:
            hit = self.cache.get(job, beam)
            if hit is not None:
                done[job] = hit
        misses = [job for job in jobs if job not in done]
        if not misses:
            return done, 0.0
        outputs, queue_s = await self.batcher.submit(misses, beam)
        for job, output in zip(misses, outputs, strict=True):
            self.cache.put(job, beam, output)
            done[job] = output
        return done, queue_s

    def _check(self, texts: Sequence[str]) -> None:
        limits = self.limits
        if not texts:
            raise InvalidArgument("texts is empty: send at least one text to translate")
        if len(texts) > limits.max_texts:
            raise InvalidArgument(
                f"too many texts: {len(texts)} in one request, the limit is {limits.max_texts}; "
                "split the request"
            )
        for i, text in enumerate(texts):
            if len(text) > limits.max_text_chars:
                raise InvalidArgument(
                    f"texts[{i}] is {len(text)} characters long, the limit is "
                    f"{limits.max_text_chars}; split it into several texts"
                )

    def _beam(self, beam_size: int | None) -> int:
        if beam_size is None:
            return self.default_beam
        if not 1 <= beam_size <= self.limits.max_beam:
            raise InvalidArgument(
                f"beam_size {beam_size} is out of range: use 1 to {self.limits.max_beam}, "
                "or leave it unset for the server default"
            )
        return beam_size


def _assemble(doc: Segmented, done: dict[Job, Output], src: Language, tgt: Language) -> Output:
    outs = [
        done[Job(s, src.model_code, tgt.model_code)] if has_words(s) else Output(s, 0, 0)
        for s in doc.sentences
    ]
    return Output(
        text=doc.join([o.text for o in outs]),
        input_tokens=sum(o.input_tokens for o in outs),
        output_tokens=sum(o.output_tokens for o in outs),
        truncated=any(o.truncated for o in outs),
    )
