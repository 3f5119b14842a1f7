"""Batched Whisper decoding: several utterances (each at most one 30 s window) encoded and
decoded by one CTranslate2 call each (`Whisper.encode`, `generate`, `align`), with the
per-utterance logic of faster-whisper's `WhisperModel.generate_segments` kept per item.

What stays per utterance, exactly as in a lone `WhisperModel.transcribe`:
- the prompt (language, task, initial prompt) and the decoding options: items are batched
  only with items that share the same `DecodeOptions` (the caller groups them);
- the temperature-fallback test (compression ratio, average log probability, no-speech);
- the no-speech skip, the split into segments by timestamp tokens, and the word timings
  (one batched `align` call, then faster-whisper's own per-item word post-processing, each
  item starting from `last_speech_timestamp = 0` as a lone decode does: nothing carries
  from one item of the batch to the next).

An item that a lone decode would treat differently after its first window (it needs a
higher temperature, or its text ends before the audio does and decoding would continue in
a second window), or whose audio is longer than one window, is returned as `None`: the
caller decodes it alone with `WhisperModel.transcribe`, so its result is exactly the lone
one. Reference: faster_whisper/transcribe.py (`generate_segments`,
`generate_with_fallback`, `BatchedInferencePipeline.generate_segment_batched`), >= 1.1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.stt.engine import Segment, Word


@dataclass(frozen=True)
class BatchSettings:
    """What `transcribe_kwargs` gives a lone decode, in the form a batch needs."""

    language: str
    beam_size: int
    temperatures: tuple[float, ...]
    word_timestamps: bool
    initial_prompt: str | None
    no_speech_threshold: float
    log_prob_threshold: float
    compression_ratio_threshold: float
    # faster-whisper's defaults for the knobs the service does not expose
    patience: float = 1.0
    length_penalty: float = 1.0
    max_initial_timestamp: float = 1.0
    prepend_punctuations: str = "\"'“¿([{-"
    append_punctuations: str = "\"'.。,，!！?？:：”)]}、"


def settings_from_kwargs(kwargs: dict[str, Any]) -> BatchSettings:
    """The batch settings equivalent to the `WhisperModel.transcribe` keyword arguments."""
    temperature = kwargs["temperature"]
    temps = tuple(temperature) if isinstance(temperature, list | tuple) else (temperature,)
    return BatchSettings(
        language=kwargs["language"],
        beam_size=kwargs["beam_size"],
        temperatures=temps,
        word_timestamps=kwargs["word_timestamps"],
        initial_prompt=kwargs["initial_prompt"],
        no_speech_threshold=kwargs["no_speech_threshold"],
        log_prob_threshold=kwargs["log_prob_threshold"],
        compression_ratio_threshold=kwargs["compression_ratio_threshold"],
    )


@dataclass
class _Item:
    index: int  # position in the caller's list
    frames: int  # content frames (segment_size of the one window)
    tokens: list[int]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    segments: list[dict[str, Any]]
    single_timestamp_ending: bool
    seek: int


def transcribe_batch(
    model: Any, audios: Sequence[np.ndarray], settings: BatchSettings
) -> list[tuple[Segment, ...] | None]:
    """Segments per audio (times in seconds from its start), or None where the audio must be
    decoded alone (see the module docstring). `model`: a faster_whisper.WhisperModel."""
    from faster_whisper.audio import pad_or_trim

    fe = model.feature_extractor
    out: list[tuple[Segment, ...] | None] = [None] * len(audios)
    windows, fits = [], []
    for i, audio in enumerate(audios):
        features = fe(audio)
        content_frames = features.shape[-1] - 1
        if 0 < content_frames <= fe.nb_max_frames:
            fits.append((i, content_frames))
            windows.append(pad_or_trim(features[:, :content_frames]))
    if not fits:
        return out
    tokenizer = _tokenizer(model, settings.language)
    encoder_output = model.encode(np.stack(windows))
    results = _generate(model, tokenizer, encoder_output, len(fits), settings)
    items = [
        _item(model, tokenizer, i, frames, r, settings)
        for (i, frames), r in zip(fits, results, strict=True)
    ]
    if settings.word_timestamps:
        _add_words(model, tokenizer, encoder_output, items, settings)
    for item in items:
        if item.seek >= item.frames:  # the one window covered the audio, as it would alone
            out[item.index] = _segments(tokenizer, item)
    return out


def _tokenizer(model: Any, language: str) -> Any:
    from faster_whisper.tokenizer import Tokenizer

    multilingual = bool(model.model.is_multilingual)
    return Tokenizer(
        model.hf_tokenizer,
        multilingual,
        task="transcribe",
        language=language if multilingual else "en",
    )


def _generate(
    model: Any, tokenizer: Any, encoder_output: Any, count: int, s: BatchSettings
) -> list[Any]:
    from faster_whisper.transcribe import get_suppressed_tokens

    previous: list[int] = []
    if s.initial_prompt is not None:
        previous = tokenizer.encode(" " + s.initial_prompt.strip())
    prompt = model.get_prompt(
        tokenizer, previous, without_timestamps=False, prefix=None, hotwords=None
    )
    return list(
        model.model.generate(
            encoder_output,
            [list(prompt) for _ in range(count)],
            length_penalty=s.length_penalty,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            max_length=model.max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            max_initial_timestamp_index=round(s.max_initial_timestamp / model.time_precision),
            beam_size=s.beam_size,
            patience=s.patience,
        )
    )


def _item(
    model: Any, tokenizer: Any, index: int, frames: int, result: Any, s: BatchSettings
) -> _Item:
    """One result through the first-temperature checks of generate_with_fallback and the
    split of generate_segments; `seek` < `frames` means "decode this one alone"."""
    from faster_whisper.transcribe import get_compression_ratio

    tokens = list(result.sequences_ids[0])
    avg = result.scores[0] * (len(tokens) ** s.length_penalty) / (len(tokens) + 1)
    ratio = get_compression_ratio(tokenizer.decode(tokens).strip())
    no_speech = float(result.no_speech_prob)
    silent = no_speech > s.no_speech_threshold and avg < s.log_prob_threshold
    fallback = ratio > s.compression_ratio_threshold or avg < s.log_prob_threshold
    item = _Item(index, frames, tokens, avg, no_speech, ratio, [], True, 0)
    if fallback and not silent and len(s.temperatures) > 1:
        return item  # seek 0: a lone decode would try the next temperature
    if no_speech > s.no_speech_threshold and not avg > s.log_prob_threshold:
        item.seek = frames  # the window is skipped as silence: no segments
        return item
    item.segments, item.seek, item.single_timestamp_ending = model._split_segments_by_timestamps(
        tokenizer=tokenizer,
        tokens=tokens,
        time_offset=0.0,
        segment_size=frames,
        segment_duration=frames * model.feature_extractor.time_per_frame,
        seek=0,
    )
    return item


class _Aligned:
    """Stands for the WhisperModel in `add_word_timestamps`, handing it one item's share of
    the batched alignment instead of aligning again."""

    def __init__(self, model: Any, alignment: list[dict[str, Any]]) -> None:
        self.frames_per_second = model.frames_per_second
        self._alignment = alignment

    def find_alignment(self, *args: Any, **kwargs: Any) -> list[list[dict[str, Any]]]:
        return [self._alignment]


def _add_words(
    model: Any, tokenizer: Any, encoder_output: Any, items: list[_Item], s: BatchSettings
) -> None:
    from faster_whisper.transcribe import WhisperModel
    from faster_whisper.utils import get_end

    text_tokens = [
        [t for seg in item.segments for t in seg["tokens"] if t < tokenizer.eot] for item in items
    ]
    if not any(item.segments for item in items):
        return
    alignments = model.find_alignment(
        tokenizer, text_tokens, encoder_output, [item.frames for item in items]
    )
    for item, alignment in zip(items, alignments, strict=True):
        if not item.segments:
            continue
        WhisperModel.add_word_timestamps(
            _Aligned(model, alignment),
            [item.segments],
            tokenizer,
            None,
            item.frames,
            s.prepend_punctuations,
            s.append_punctuations,
            last_speech_timestamp=0.0,
        )
        if not item.single_timestamp_ending:
            last_word_end = get_end(item.segments)
            if last_word_end is not None and last_word_end > 0.0:
                item.seek = round(last_word_end * model.frames_per_second)


def _segments(tokenizer: Any, item: _Item) -> tuple[Segment, ...]:
    out = []
    for seg in item.segments:
        text = tokenizer.decode(seg["tokens"])
        if seg["start"] == seg["end"] or not text.strip():
            continue
        words = tuple(
            Word(
                word=w["word"].strip(),
                start=float(w["start"]),
                end=float(w["end"]),
                probability=float(w["probability"]),
            )
            for w in seg.get("words", ())
        )
        out.append(
            Segment(
                text=text.strip(),
                start=float(seg["start"]),
                end=float(seg["end"]),
                avg_logprob=float(item.avg_logprob),
                no_speech_prob=item.no_speech_prob,
                compression_ratio=float(item.compression_ratio),
                words=words,
            )
        )
    return tuple(out)
