"""The real engine: an NLLB model on CTranslate2, with its SentencePiece tokenizer.

    source = [src_code] + sentencepiece pieces + ["</s>"], target_prefix = [tgt_code]

The output is bounded by the length guard (CTranslate2's `max_decoding_length` is per call,
so it is set for the longest input of the batch and each output is then cut to its own
limit), `no_repeat_ngram_size`, and the loop trimmer.

Lengths never pass what the model supports: the number of positions is read from the model
(`ct2_model.max_positions`: 1024 on NLLB-200 600M, 512 on the demo model); an input longer
than `max_input_tokens` (itself at most positions - 2, for the language code and </s>) is
translated in windows of that many tokens whose outputs are joined, and the decoding length
is clamped so that no position past the table is ever asked for. Without the clamp a single
over-long input failed the whole CTranslate2 batch, other callers' sentences included.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from services.runtime.model_folder import manifest_model_id
from services.translate.ct2_model import max_positions
from services.translate.engine import Job, Output
from services.translate.guards import LengthLimit, trim_loop
from services.translate.languages import Language
from services.translate.vocab import allowed_pieces, write_vmap

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'milo[translate]'"
SPM_FILE = "sentencepiece.bpe.model"
EOS = "</s>"
# Restrict the output vocabulary only when that drops at least a tenth of it.
VMAP_MAX_SHARE = 0.9
_LANGUAGE_CODE = re.compile(r"^[a-z]{3}_[A-Z][a-z]{3}$")


class EngineUnavailable(RuntimeError):
    """The engine's library is not installed, or the model folder is unusable."""


@dataclass(frozen=True)
class EngineConfig:
    """How to load and run the CTranslate2 model: `device` "cpu", "cuda" or "auto";
    `compute_type` as CTranslate2 names it ("int8", "float16", "auto"); `threads` 0 is one per
    CPU core; `length` and the two decoding penalties guard against runaway output;
    `max_input_tokens` per window; `restrict_to` limits the output vocabulary to these languages
    (empty: all); `model_id` overrides the name taken from the manifest or folder."""

    model_dir: Path
    device: str = "auto"  # "cpu", "cuda" or "auto"
    compute_type: str = "auto"
    threads: int = 0  # 0: one per CPU core
    length: LengthLimit = field(default_factory=LengthLimit)
    no_repeat_ngram_size: int = 4
    repetition_penalty: float = 1.0
    max_input_tokens: int = 256
    restrict_to: tuple[Language, ...] = ()  # output vocabulary for these languages; () = all
    model_id: str | None = None


def _require(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EngineUnavailable(f"the translate service needs '{module}': {INSTALL_HINT}") from exc


class Ct2Engine:
    """`TranslationEngine` over CTranslate2; `load` reads the model (blocking), `translate`
    runs one CTranslate2 batch."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        folder = config.model_dir
        self.model_id = (
            config.model_id or manifest_model_id(folder, "translate") or folder.absolute().name
        )
        self.device, self.compute_type = config.device, config.compute_type
        self._translator: Any = None

    def load(self) -> None:
        """Read the model, its SentencePiece model and vocabulary (blocking). Raises
        EngineUnavailable if the folder lacks model.bin or the SentencePiece model, or if
        ctranslate2 or sentencepiece is not installed."""
        config, folder = self.config, self.config.model_dir
        _check_folder(folder)
        ct2, spm = _require("ctranslate2"), _require("sentencepiece")
        self.vocabulary = read_vocabulary(folder)
        self.device = resolve_device(ct2, config.device)
        self.vocab_size = len(self.vocabulary)
        start = time.monotonic()
        self._translator, self.output_vocab_size = self._load_translator(ct2)
        self._vmap_targets = frozenset(lang.model_code for lang in config.restrict_to)
        self.compute_type = str(self._translator.compute_type)
        self._sp = spm.SentencePieceProcessor(model_file=str(folder / SPM_FILE))
        self._pieces = _decodable_pieces(self._sp)
        self.max_positions = max_positions(folder)
        self.max_input_tokens, self.max_decoding = input_and_decoding_limits(
            config.max_input_tokens, self.max_positions
        )
        log.info(
            "loaded %s from %s on %s (%s) in %.2fs; output vocabulary %d of %d pieces; "
            "%s positions, inputs cut in windows of %d tokens",
            self.model_id,
            folder,
            self.device,
            self.compute_type,
            time.monotonic() - start,
            self.output_vocab_size,
            self.vocab_size,
            self.max_positions or "unbounded",
            self.max_input_tokens,
        )

    def _load_translator(self, ct2: Any) -> tuple[Any, int]:
        cfg = self.config
        threads = cfg.threads or os.cpu_count() or 1
        kwargs = {
            "device": self.device,
            "compute_type": cfg.compute_type,
            "inter_threads": 1,
            "intra_threads": threads,
        }
        allowed = allowed_pieces(self.vocabulary, cfg.restrict_to) if cfg.restrict_to else []
        if not allowed or len(allowed) > VMAP_MAX_SHARE * len(self.vocabulary):
            # Each call copies the kept rows of the output layer: not worth it for a few.
            return ct2.Translator(str(cfg.model_dir), **kwargs), len(self.vocabulary)
        with tempfile.TemporaryDirectory(prefix="milo-translate-vmap-") as tmp:
            overlay = Path(tmp)
            for path in cfg.model_dir.iterdir():  # the model's files, read where they are
                (overlay / path.name).symlink_to(path.resolve())
            codes = [lang.model_code for lang in cfg.restrict_to]
            write_vmap(overlay / "vmap.txt", self.vocabulary, allowed, codes)
            return ct2.Translator(str(overlay), **kwargs), len(allowed)

    @property
    def restricted(self) -> bool:
        """True when the output vocabulary is cut down to `restrict_to`'s languages (a vmap)."""
        return self.output_vocab_size < self.vocab_size

    def language_codes(self) -> frozenset[str]:
        """The NLLB language codes in the model's vocabulary ("plt_Latn", ...)."""
        return frozenset(t for t in self.vocabulary if _LANGUAGE_CODE.match(t))

    def translate(self, jobs: Sequence[Job], beam_size: int) -> list[Output]:
        """One output per job, in order: inputs longer than `max_input_tokens` are translated in
        windows and joined; each output is cut by the length and loop guards (`truncated`)."""
        cfg = self.config
        windows = [
            (i, w)
            for i, job in enumerate(jobs)
            for w in token_windows(self._sp.encode(job.text, out_type=str), self.max_input_tokens)
        ]
        limits = [self._limit(len(w)) for _, w in windows]
        results = self._translator.translate_batch(
            [[jobs[i].source, *w, EOS] for i, w in windows],
            target_prefix=[[jobs[i].target] for i, _ in windows],
            beam_size=beam_size,
            max_decoding_length=max(limits) + 1,  # + the target code
            no_repeat_ngram_size=cfg.no_repeat_ngram_size,
            repetition_penalty=cfg.repetition_penalty,
            return_end_token=True,
            use_vmap=self.restricted and all(job.target in self._vmap_targets for job in jobs),
        )
        parts: list[list[Output]] = [[] for _ in jobs]
        for (i, w), r, limit in zip(windows, results, limits, strict=True):
            parts[i].append(self._output(r.hypotheses[0][1:], limit, len(w)))
        return [join_outputs(p) for p in parts]

    def _limit(self, input_tokens: int) -> int:
        """Output tokens allowed for an input: the length guard, within the model."""
        return min(self.config.length.max_output(input_tokens), self.max_decoding)

    def _output(self, tokens: list[str], limit: int, input_tokens: int) -> Output:
        ended = bool(tokens) and tokens[-1] == EOS
        if ended:
            tokens = tokens[:-1]
        too_long = not ended or len(tokens) > limit
        tokens, looped = trim_loop(tokens[:limit])
        text = self._sp.decode([t for t in tokens if t in self._pieces])
        return Output(text, input_tokens, len(tokens), truncated=looped or too_long)

    def close(self) -> None:
        """Unload the model from memory (CPU or GPU)."""
        if self._translator is not None:
            self._translator.unload_model()


def input_and_decoding_limits(max_input_tokens: int, positions: int | None) -> tuple[int, int]:
    """(input tokens per window, output tokens per input) that fit in `positions`: the
    source adds the language code and </s>; the decoding length counts the target code
    too (measured on the demo model: 510 input pieces and a decoding length of 512 pass,
    one more fails); one position is kept spare on the output side."""
    if positions is None:
        return max(1, max_input_tokens), 1 << 30
    return max(1, min(max_input_tokens, positions - 2)), max(1, positions - 2)


def token_windows(pieces: list[str], size: int) -> list[list[str]]:
    """`pieces` in consecutive windows of at most `size` (one empty window for none)."""
    return [pieces[i : i + size] for i in range(0, len(pieces), size)] or [[]]


def join_outputs(parts: Sequence[Output]) -> Output:
    """The outputs of one input's windows as one output."""
    if len(parts) == 1:
        return parts[0]
    return Output(
        " ".join(p.text for p in parts if p.text),
        sum(p.input_tokens for p in parts),
        sum(p.output_tokens for p in parts),
        truncated=any(p.truncated for p in parts),
    )


def _check_folder(folder: Path) -> None:
    missing = [n for n in ("model.bin", SPM_FILE) if not (folder / n).is_file()]
    if missing:
        raise EngineUnavailable(
            f"no translation model in {folder} (missing {', '.join(missing)}): build the demo "
            "set with `milo models demo`, or point MILO_TRANSLATE_MODEL_DIR at an NLLB model "
            "converted to CTranslate2"
        )


def read_vocabulary(folder: Path) -> list[str]:
    """The model's target vocabulary, as CTranslate2 saved it (JSON list or text lines)."""
    for name in ("shared_vocabulary", "target_vocabulary"):
        if (folder / f"{name}.json").is_file():
            return list(json.loads((folder / f"{name}.json").read_text("utf-8")))
        if (folder / f"{name}.txt").is_file():
            return (folder / f"{name}.txt").read_text("utf-8").splitlines()
    raise EngineUnavailable(f"no shared_vocabulary.json in {folder}: not a CTranslate2 model")


def resolve_device(ct2: Any, device: str) -> str:
    """`device` as given, or for "auto", "cuda" when CTranslate2 sees a CUDA device, else "cpu"."""
    if device != "auto":
        return device
    return "cuda" if ct2.get_cuda_device_count() > 0 else "cpu"


def _decodable_pieces(sp: Any) -> frozenset[str]:
    """Pieces that decode to text: not control symbols, language codes or <unk>."""
    return frozenset(
        sp.id_to_piece(i)
        for i in range(sp.get_piece_size())
        if not (sp.is_control(i) or sp.is_unknown(i))
    )
