"""The VITS engine: transformers `VitsModel` + `VitsTokenizer` on torch (cpu or cuda).

VITS samples noise (prior latents and stochastic durations); here each segment draws it
from its own generator seeded with its seed (services.tts.vits_batch), so the same (text,
voice, speed, seed) gives the same samples, alone or in a padded batch with other
requests' segments (`synthesize_batch`, fed by services.tts.batcher). One forward pass
runs at a time (a lock).

Memory: on CPU, torch runs these convolutions through oneDNN, and two caches keep what is
built for each distinct input shape: oneDNN's primitive cache (compiled kernels, 1024
entries by default; ONEDNN_PRIMITIVE_CACHE_CAPACITY) and PyTorch's own cache of oneDNN
computations in ideep (1024 entries by default; LRU_CACHE_CAPACITY; pytorch/pytorch#27971,
"High memory usage for CPU inference on variable input shapes"). VITS gives a new shape
with nearly every segment (its text length, and the frame count its sampled durations
give), so under steady load both grow for hours. The demo model driven with 600 batches of
1-4 random-length segments (tests/bench/bench_tts.py's voice, one process): with the
oneDNN cache bounded alone, glibc's in-use heap went 125 -> 330 MiB and was still rising;
with ideep's bounded to 16 as well, 125 -> 152 MiB, flat from the 180th batch on, in the
same time (78 s both). `_import_torch` sets both bounds (ONEDNN_CACHE_CAPACITY,
IDEEP_CACHE_CAPACITY: enough for the shapes one forward pass reuses; read at the first
convolution; a value set in the environment wins); the audio is the same.
Sources: oneDNN's primitive cache documentation (dev_guide_primitive_cache); ideep's
`lru_cache.hpp` (computation_cache, capacity from LRU_CACHE_CAPACITY).
And glibc: the padded batches allocate tensors of a different size each time; once a large
freed block has raised glibc's mmap threshold, they come from the heap, whose freed pages
glibc keeps (the demo model driven with 60 batches of 1-4 random-length segments: heap
174 -> 591 MiB, 395 MiB of it free, RSS 455 -> 853 MiB; trimmed after each batch, RSS
407 -> 513 MiB). `synthesize_batch` hands them back with malloc_trim(0) at most every
TRIM_INTERVAL_S (glibc only; elsewhere nothing is done).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from services.runtime.model_folder import manifest_model_id
from services.tts.audio import Samples
from services.tts.engine import Segment
from services.tts.vits_batch import SynthesisItem, forward_batch

log = logging.getLogger(__name__)

WARMUP_TEXT = "manao ahoana tompoko"
ONEDNN_CACHE_CAPACITY = 64  # compiled CPU kernels kept; see the module docstring
IDEEP_CACHE_CAPACITY = 16  # PyTorch's cached oneDNN computations; see the module docstring
TRIM_INTERVAL_S = 2.0  # least time between two malloc_trim calls


def malloc_trim() -> Callable[[], object] | None:
    """glibc's `malloc_trim(0)` (hands the heap's free pages back to the system), or None
    where there is none (not Linux, or a libc without it, such as musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


def _import_torch() -> tuple[Any, Any]:
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_CACHE_CAPACITY))
    os.environ.setdefault("LRU_CACHE_CAPACITY", str(IDEEP_CACHE_CAPACITY))
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
        self._trim = malloc_trim()
        self._trimmed = 0.0  # time.monotonic() of the last trim

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
            out = forward_batch(
                torch, model, items, float(model.noise_scale), float(model.noise_scale_duration)
            )
            now = time.monotonic()
            if self._trim is not None and now - self._trimmed >= TRIM_INTERVAL_S:
                self._trim()
                self._trimmed = now
            return out

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
