"""Turn local Hugging Face folders into the engine formats of the models layout.

These functions never touch the network: `services.models.fetch` downloads first and then
calls them, and `milo models convert` calls them (through fetch) on a local checkpoint.

- NLLB (M2M100 architecture) -> CTranslate2, plus the SentencePiece model.
- Whisper -> CTranslate2 for faster-whisper, plus tokenizer.json / preprocessor_config.json.
  A trainer checkpoint (`checkpoint-7000/`) usually has no tokenizer files: pass the folder
  of the base model's files as `extra_dir` and they are merged in.
- VITS -> a transformers folder with model.safetensors and the tokenizer files.
- GGUF -> copied (or moved) as llm/model.gguf.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.models._util import ModelsError, require, staging_dir
from services.models.layout import SPM_FILE

logger = logging.getLogger(__name__)

DEFAULT_MT_QUANTIZATION = "int8_float16"
# float16 storage keeps the choice of compute type (int8_float16, float16, int8) to the service.
DEFAULT_STT_QUANTIZATION = "float16"
QUANTIZATIONS = (
    "int8",
    "int8_float16",
    "int8_bfloat16",
    "int8_float32",
    "int16",
    "float16",
    "bfloat16",
    "float32",
)

# Files a Whisper trainer checkpoint may lack, taken from the base model when absent.
WHISPER_BASE_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "normalizer.json",
    "added_tokens.json",
    "special_tokens_map.json",
    "preprocessor_config.json",
    "generation_config.json",
)
# Without these a checkpoint is completed from the base model.
WHISPER_REQUIRED_FILES = ("tokenizer.json", "preprocessor_config.json", "generation_config.json")
WHISPER_COPY_FILES = ("tokenizer.json", "preprocessor_config.json")
VITS_REQUIRED_FILES = ("vocab.json", "tokenizer_config.json")
TRAINER_FILES = ("trainer_state.json", "training_args.json")
VITS_TOKENIZER_FILES = (
    "vocab.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)


class ConversionError(ModelsError):
    """A source folder cannot be converted (missing files, unsupported architecture...)."""


def convert_nllb(
    src: Path,
    out: Path,
    quantization: str | None = DEFAULT_MT_QUANTIZATION,
    *,
    logits_bias: Any | None = None,
) -> Path:
    """Convert an NLLB/M2M100 transformers folder to CTranslate2 at `out`.

    `logits_bias` (a torch tensor of shape [1, vocab]) becomes the output projection bias;
    the demo uses it to keep special tokens out of a random model's output.
    """
    if not (src / SPM_FILE).is_file():
        raise ConversionError(f"{src} has no {SPM_FILE}: not an NLLB folder")
    converter = _nllb_converter(src, logits_bias)
    _run_converter(converter, out, quantization)
    return out


def _nllb_converter(src: Path, logits_bias: Any | None) -> Any:
    ct2 = require("ctranslate2")
    base = ct2.converters.TransformersConverter

    class _BiasedConverter(base):  # type: ignore[misc, valid-type]
        def load_model(self, model_class: Any, path: str, **kwargs: Any) -> Any:
            model = super().load_model(model_class, path, **kwargs)
            # Read by CTranslate2's BART/M2M100 loader as the projection bias.
            model.final_logits_bias = logits_bias
            return model

    cls = base if logits_bias is None else _BiasedConverter
    return cls(str(src), copy_files=[SPM_FILE])


def convert_whisper(
    src: Path,
    out: Path,
    quantization: str | None = DEFAULT_STT_QUANTIZATION,
    *,
    extra_dir: Path | None = None,
) -> Path:
    """Convert a Whisper transformers folder (or trainer checkpoint) for faster-whisper.

    Files of WHISPER_BASE_FILES missing from `src` are taken from `extra_dir`.
    """
    if not (src / "config.json").is_file():
        raise ConversionError(f"{src} has no config.json: not a transformers checkpoint")
    with tempfile.TemporaryDirectory(prefix="milo-whisper-") as tmp:
        merged = merge_folders(src, extra_dir, Path(tmp), WHISPER_BASE_FILES)
        _ensure_fast_tokenizer(merged)
        copy = [name for name in WHISPER_COPY_FILES if (merged / name).is_file()]
        converter = require("ctranslate2").converters.TransformersConverter(
            str(merged), copy_files=copy
        )
        _run_converter(converter, out, quantization)
    return out


def merge_folders(src: Path, extra: Path | None, dest: Path, wanted: Sequence[str]) -> Path:
    """Fill `dest` with links to every file of `src`, then to `wanted` files only in `extra`."""
    for path in src.iterdir():
        if path.is_file():
            (dest / path.name).symlink_to(path.resolve())
    for name in wanted:
        candidate = extra / name if extra is not None else None
        if candidate is not None and candidate.is_file() and not (dest / name).exists():
            (dest / name).symlink_to(candidate.resolve())
    return dest


def _ensure_fast_tokenizer(folder: Path) -> None:
    """faster-whisper reads tokenizer.json; build it from vocab.json/merges.txt if needed."""
    if (folder / "tokenizer.json").is_file():
        return
    transformers = require("transformers")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise ConversionError(
            "no tokenizer files (tokenizer.json, or vocab.json + merges.txt): "
            "give the base model (e.g. openai/whisper-medium)"
        ) from exc
    # Saved aside: `folder` holds symlinks into the user's checkpoint and the hub cache,
    # which save_pretrained would write through.
    with tempfile.TemporaryDirectory(prefix="milo-tokenizer-") as tmp:
        tokenizer.save_pretrained(tmp)
        shutil.copyfile(Path(tmp) / "tokenizer.json", folder / "tokenizer.json")


def _run_converter(converter: Any, out: Path, quantization: str | None) -> None:
    with staging_dir(out) as staging:
        logger.info("converting to CTranslate2 (%s) -> %s", quantization or "float32", out)
        converter.convert(str(staging), quantization=quantization, force=True)


def install_gguf(src: Path, out_file: Path, *, move: bool = False) -> Path:
    """Put a GGUF file at `out_file` (usually <models>/llm/model.gguf), atomically."""
    with src.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ConversionError(f"{src} is not a GGUF file")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.tmp")
    if move:
        shutil.move(str(src), tmp)
    else:
        shutil.copyfile(src, tmp)
    tmp.replace(out_file)
    return out_file


def install_vits(src: Path, out: Path, *, extra_dir: Path | None = None) -> Path:
    """Put a VITS folder (facebook/mms-tts-mlg or a fine-tune) at `out`.

    Files are copied as they are when the weights are safetensors (no re-serialization);
    a `pytorch_model.bin` checkpoint is loaded and saved again as safetensors. Tokenizer
    files missing from `src` are taken from `extra_dir` (the base model).
    """
    with tempfile.TemporaryDirectory(prefix="milo-vits-") as tmp:
        merged = merge_folders(src, extra_dir, Path(tmp), VITS_TOKENIZER_FILES)
        if not (merged / "vocab.json").is_file():
            raise ConversionError(f"{src} has no vocab.json; give the base model (mms-tts-mlg)")
        with staging_dir(out) as staging:
            _copy_vits_files(merged, staging)
    return out


def _copy_vits_files(src: Path, dest: Path) -> None:
    for path in src.iterdir():
        if path.suffix == ".json" and path.name not in TRAINER_FILES:
            shutil.copyfile(path, dest / path.name)
    weights = src / "model.safetensors"
    if weights.is_file():
        shutil.copyfile(weights, dest / weights.name)
        return
    transformers = require("transformers")
    try:
        model = transformers.VitsModel.from_pretrained(str(src))
    except OSError as exc:
        raise ConversionError(f"{src} has no VITS weights") from exc
    model.save_pretrained(str(dest))
