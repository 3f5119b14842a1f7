"""The Whisper side of `milo train stt`: the model and processor, the language pinned in the
labels and the generation config, the batch collator and the WER/CER metric.

Labels follow Whisper's decoder prompt: `<|startoftranscript|> <|mg|> <|transcribe|>
<|notimestamps|> text <|endoftext|>`. The tokenizer adds that prefix (set_prefix_tokens);
the collator drops the leading `<|startoftranscript|>` because the model shifts the labels
right and puts it back as the decoder start, so the decoder learns to predict `<|mg|>
<|transcribe|> <|notimestamps|>` and the text. Padding is -100 (ignored by the loss).
Generation during evaluation uses `generation_config.language = "mg"` and `task =
"transcribe"`, so it decodes in Malagasy whatever the audio sounds like.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.train.data import SAMPLE_RATE, UnreadableAudio, load_audio
from services.train.errors import TrainError

log = logging.getLogger(__name__)

MAX_LABEL_TOKENS = 448  # Whisper's max_target_positions
MULTILINGUAL_VOCAB = 51_865
IGNORE_INDEX = -100
SHAPE_KEYS = (
    "d_model",
    "encoder_layers",
    "decoder_layers",
    "encoder_attention_heads",
    "decoder_attention_heads",
    "vocab_size",
    "num_mel_bins",
)
# Public Whisper sizes, to name a shape in messages.
SIZES = {
    (384, 4): "tiny",
    (512, 6): "base",
    (768, 12): "small",
    (1024, 24): "medium",
    (1280, 32): "large",
    (1280, 4): "large-v3-turbo",
}


def shape_of(config: Any) -> dict[str, Any]:
    """The numbers that make two Whisper checkpoints interchangeable (from a config object
    or its config.json dict)."""
    if isinstance(config, dict):
        return {key: config.get(key) for key in SHAPE_KEYS}
    return {key: getattr(config, key, None) for key in SHAPE_KEYS}


def size_name(shape: dict[str, Any]) -> str:
    """The size's name for a known Whisper shape (`shape_of`), "whisper-small" and the like,
    else its width and layers in words."""
    name = SIZES.get((shape.get("d_model", 0), shape.get("encoder_layers", 0)))
    return (
        f"whisper-{name}"
        if name
        else (f"a Whisper of width {shape.get('d_model')} and {shape.get('encoder_layers')} layers")
    )


def load_processor(model: str) -> Any:
    """WhisperProcessor (feature extractor + fast tokenizer) from a hub id or folder."""
    import transformers

    try:
        return transformers.WhisperProcessor.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise TrainError(
            f"cannot load the Whisper processor of {model!r} ({exc}); give a folder with the "
            "tokenizer and preprocessor files or a hub id in the local cache"
        ) from exc


def load_model(model: str) -> Any:
    """The Whisper model from a hub id or folder; raises TrainError if it cannot be loaded."""
    import transformers

    try:
        return transformers.WhisperForConditionalGeneration.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise TrainError(f"cannot load the Whisper model {model!r}: {exc}") from exc


def pin_language(model: Any, tokenizer: Any, language: str, task: str = "transcribe") -> None:
    """Put `language`/`task` in the tokenizer's label prefix and the generation config.

    Also fills the generation-config fields Whisper's `generate` needs (lang_to_id,
    task_to_id, no_timestamps_token_id) from the tokenizer when a checkpoint lacks them.
    Raises TrainError for a model without the language token (English-only Whisper).
    """
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    vocab = tokenizer.get_vocab()
    token = f"<|{language}|>"
    # English-only Whisper models (*.en) have 51,864 tokens, multilingual ones 51,865 or more
    # (the rule openai-whisper and faster-whisper use); the *.en tokenizers still list the
    # language tokens, so the token alone does not tell.
    if token not in vocab or model.config.vocab_size < MULTILINGUAL_VOCAB:
        raise TrainError(
            f"the tokenizer has no {token} token: the model is not a "
            "multilingual Whisper (English-only models such as tiny.en cannot "
            "be fine-tuned for another language)"
        )
    gen = model.generation_config
    if not getattr(gen, "lang_to_id", None):
        gen.lang_to_id = {f"<|{c}|>": vocab[f"<|{c}|>"] for c in LANGUAGES if f"<|{c}|>" in vocab}
    if not getattr(gen, "task_to_id", None):
        gen.task_to_id = {t: vocab[f"<|{t}|>"] for t in ("transcribe", "translate")}
    if getattr(gen, "no_timestamps_token_id", None) is None:
        gen.no_timestamps_token_id = vocab["<|notimestamps|>"]
    gen.is_multilingual = True
    gen.language = language
    gen.task = task
    gen.forced_decoder_ids = None
    model.config.forced_decoder_ids = None
    if tokenizer.pad_token is None:  # Whisper pads with <|endoftext|>
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=False)


@dataclass
class SpeechCollator:
    """Rows {audio, text} -> {"input_features": [B, mels, 3000], "labels": [B, T]}.

    A clip that cannot be decoded any more (the file changed since screening) is left out of
    its batch with a warning, never an exception in the middle of an epoch.
    """

    processor: Any
    audio_column: str
    text_column: str
    root: Path | None
    decoder_start_token_id: int
    skipped: int = field(default=0, init=False)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """One batch from dataset rows (see the class docstring). Raises TrainError if no clip of
        the batch can be decoded."""
        audios, texts = [], []
        for row in rows:
            try:
                audios.append(load_audio(row[self.audio_column], self.root))
            except UnreadableAudio as exc:
                self.skipped += 1
                log.warning("left a clip out of its batch: %s", exc)
                continue
            texts.append(row[self.text_column])
        if not audios:
            raise TrainError(
                "every clip of a batch failed to decode: the dataset files changed during training"
            )
        features = self.processor.feature_extractor(
            audios, sampling_rate=SAMPLE_RATE, return_tensors="pt"
        ).input_features
        return {"input_features": features, "labels": self.labels(texts)}

    def labels(self, texts: list[str]) -> Any:
        """Padded label ids [B, T] for `texts`, padding set to -100 (ignored by the loss), the
        decoder start token removed since the model adds it."""
        encoded = self.processor.tokenizer(texts, padding=True, return_tensors="pt")
        ids = encoded.input_ids.masked_fill(encoded.attention_mask.ne(1), IGNORE_INDEX)
        if bool((ids[:, 0] == self.decoder_start_token_id).all()):
            ids = ids[:, 1:]  # the model prepends the decoder start itself
        return ids


def error_rates(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """Corpus WER and CER in percent, after `milo eval stt`'s normalization.

    References empty once normalized are left out (screening already removed them from
    training data; jiwer cannot score an empty reference).
    """
    import jiwer

    from services.stt.normalize import normalize

    pairs = [(normalize(r), normalize(h)) for r, h in zip(references, hypotheses, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return {"wer": float("nan"), "cer": float("nan")}
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    return {"wer": 100 * float(jiwer.wer(refs, hyps)), "cer": 100 * float(jiwer.cer(refs, hyps))}


def metric_function(tokenizer: Any) -> Any:
    """`compute_metrics` for Seq2SeqTrainer with predict_with_generate: WER/CER in percent."""

    def compute(prediction: Any) -> dict[str, float]:
        preds = np.asarray(prediction.predictions)
        labels = np.asarray(prediction.label_ids)
        preds = np.where(preds < 0, tokenizer.pad_token_id, preds)
        labels = np.where(labels < 0, tokenizer.pad_token_id, labels)
        hyps = tokenizer.batch_decode(preds, skip_special_tokens=True)
        refs = tokenizer.batch_decode(labels, skip_special_tokens=True)
        return error_rates(refs, hyps)

    return compute
