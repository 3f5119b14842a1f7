"""The VITS engine: transformers `VitsModel` + `VitsTokenizer` on torch (cpu or cuda).

VITS samples noise (prior latents and stochastic durations); here each segment draws it
from its own generator seeded with its seed (services.tts.vits_batch), so the same (text,
voice, speed, seed) gives the same samples, alone or in a padded batch with other
requests' segments (`synthesize_batch`, fed by services.tts.batcher). One forward pass
runs at a time (a lock).

Memory: on CPU, torch runs these convolutions through oneDNN, which compiles a kernel for
each distinct input shape and caches it (1024 entries by default, each up to a few hundred
KiB). VITS gives a new shape with nearly every segment (its text length, and the frame
count its sampled durations give), so under steady load that cache grew the process by
about 15 MiB a minute for hours. `_import_torch` bounds it to ONEDNN_CACHE_CAPACITY entries
(ONEDNN_PRIMITIVE_CACHE_CAPACITY, read at the first convolution; a value set in the
environment wins): enough for the shapes one forward pass reuses, and the audio is the same.
Source: oneDNN's primitive cache documentation (dev_guide_primitive_cache).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.runtime.model_folder import manifest_model_id
from services.tts.audio import Samples
from services.tts.engine import Segment
from services.tts.vits_batch import SynthesisItem, forward_batch

log = logging.getLogger(__name__)

WARMUP_TEXT = "manao ahoana tompoko"
ONEDNN_CACHE_CAPACITY = 64  # compiled CPU kernels kept; see the module docstring


def _import_torch() -> tuple[Any, Any]:
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_CACHE_CAPACITY))
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise RuntimeError(
            "the TTS engine needs torch and transformers: pip install 'milo[tts]'"
        ) from exc
    return torch, transformers


class VitsEngine:
    """An MMS-TTS (VITS) model folder saved by transformers."""

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        threads: int = 0,
        voice: str = "mlg",
        noise_scale: float | None = None,
        noise_scale_duration: float | None = None,
        model_id: str | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self._want_device, self._want_dtype, self._threads = device, dtype, threads
        self._voice = voice
        self._noise = (noise_scale, noise_scale_duration)
        self.model_id = (
            model_id or manifest_model_id(self.model_dir, "tts") or self.model_dir.resolve().name
        )
        self.device = device
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._torch: Any = None
        self._sample_rate = 16_000
        self._voices: tuple[str, ...] = (voice,)
        self._vocab: frozenset[str] = frozenset()

    @property
    def sample_rate(self) -> int:
        """The model's output rate in Hz (16000 for MMS-TTS); read from its config on load."""
        return self._sample_rate

    @property
    def voices(self) -> Sequence[str]:
        """Voice names: `voice`, or "voice-0", "voice-1", ... for a model with several speakers."""
        return self._voices

    @property
    def vocab(self) -> frozenset[str]:
        """The characters the model can say (single-character vocabulary entries)."""
        return self._vocab

    def load(self) -> None:
        """Load the model and tokenizer on the device, then warm up (blocking). Raises
        FileNotFoundError without config.json, RuntimeError without torch/transformers, for a
        CUDA or float16 request that cannot be met, or for a tokenizer that wants phonemes."""
        torch, transformers = _import_torch()
        self._torch = torch
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(
                f"no VITS model in {self.model_dir}: run 'milo models demo' or set "
                "MILO_TTS_MODEL_DIR"
            )
        start = time.monotonic()
        if self._threads:
            torch.set_num_threads(self._threads)
        device, dtype = self._resolve(torch)
        if device == "cuda":
            torch.backends.cudnn.deterministic = True  # same seed, same audio on a GPU too
            torch.backends.cudnn.benchmark = False
        model = transformers.VitsModel.from_pretrained(str(self.model_dir))
        self._model = model.to(device=device, dtype=dtype).eval()
        self._tokenizer = transformers.VitsTokenizer.from_pretrained(str(self.model_dir))
        self._configure(self._model.config)
        self.device = f"{device} ({str(dtype).removeprefix('torch.')})"
        self.synthesize(self._warmup_text(), self._voices[0], 1.0, 0)
        log.info(
            "VITS %s loaded on %s in %.2fs: %d Hz, %d voice(s), %d symbols",
            self.model_id,
            self.device,
            time.monotonic() - start,
            self._sample_rate,
            len(self._voices),
            len(self._vocab),
        )

    def _resolve(self, torch: Any) -> tuple[str, Any]:
        device = self._want_device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device cuda was asked for but torch sees no CUDA GPU")
        dtype = torch.float32
        if self._want_dtype == "float16" or (
            self._want_dtype == "auto"
            and device == "cuda"
            and torch.cuda.get_device_capability()[0] >= 7
        ):
            dtype = torch.float16
        if dtype == torch.float16 and device == "cpu":
            raise RuntimeError("float16 needs a GPU; use dtype float32 on cpu")
        return device, dtype

    def _configure(self, config: Any) -> None:
        self._sample_rate = int(config.sampling_rate)
        speakers = int(getattr(config, "num_speakers", 1) or 1)
        if speakers > 1:
            self._voices = tuple(f"{self._voice}-{i}" for i in range(speakers))
        noise, noise_duration = self._noise
        if noise is not None:
            self._model.noise_scale = noise
        if noise_duration is not None:
            self._model.noise_scale_duration = noise_duration
        self._vocab = sayable_symbols(self._tokenizer)
        if getattr(self._tokenizer, "phonemize", False):
            raise RuntimeError(
                f"{self.model_dir}: the tokenizer wants phonemes (phonemize=true); Milo's TTS "
                "reads Malagasy letters like MMS-TTS (phonemize=false)"
            )

    def _warmup_text(self) -> str:
        text = "".join(c for c in WARMUP_TEXT if c in self._vocab)
        return text or "".join(sorted(self._vocab))[:8]

    def synthesize(self, text: str, voice: str, speed: float, seed: int) -> Samples:
        """Mono float32 samples at `sample_rate` for one text; `speed` 1.0 is the model's pace
        and `seed` makes the output repeatable."""
        return self.synthesize_batch([Segment(text, voice, speed, seed)])[0]

    def synthesize_batch(self, segments: Sequence[Segment]) -> list[Samples]:
        """Each segment's samples, from one padded forward pass (services.tts.vits_batch):
        the same as `synthesize` of each alone, whatever else is in the batch."""
        if self._model is None:
            raise RuntimeError("the VITS model is not loaded")
        torch = self._torch
        items = [
            SynthesisItem(
                input_ids=self._tokenizer(s.text)["input_ids"],
                speaker=self._voices.index(s.voice) if len(self._voices) > 1 else None,
                speed=s.speed,
                seed=s.seed,
            )
            for s in segments
        ]
        with self._lock, torch.inference_mode():
            model = self._model
            return forward_batch(
                torch, model, items, float(model.noise_scale), float(model.noise_scale_duration)
            )

    def close(self) -> None:
        """Release the model (and the CUDA cache on a GPU)."""
        with self._lock:
            self._model = None
            self._tokenizer = None
        if self._torch is not None and self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()


def sayable_symbols(tokenizer: Any) -> frozenset[str]:
    """The single characters of the vocabulary, less a non-letter padding symbol (the
    blank interleaved by add_blank, "_" in the demo set; in real MMS vocabularies id 0 can
    be a true letter, which is kept)."""
    symbols = {s for s in tokenizer.get_vocab() if len(s) == 1}
    pad = tokenizer.pad_token
    if isinstance(pad, str) and len(pad) == 1 and not pad.isalpha() and pad != " ":
        symbols.discard(pad)
    return frozenset(symbols)
