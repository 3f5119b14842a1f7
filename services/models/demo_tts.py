"""Demo TTS: a random-weight VITS saved by transformers, with an MMS-style Malagasy vocabulary.

The tokenizer works like facebook/mms-tts-mlg's: characters, no phonemizer, lower-casing and
dropping characters outside the vocabulary (`normalize`), and id 0 interleaved between
characters (`add_blank`). In real MMS checkpoints id 0 is the first symbol of the training
alphabet and `pad_token` names it (the original vocab.txt has no pad symbol); the demo gives
id 0 to "_", which Malagasy text never contains.

Random weights synthesize noise of a plausible length (about 2-3 s for a sentence), at
16 kHz like MMS. VITS samples noise while synthesizing: for identical output call
`transformers.set_seed(n)` (or `torch.manual_seed(n)`) right before each forward pass;
the model has no `generator` argument. Setting the model attributes `noise_scale` and
`noise_scale_duration` to 0 removes the randomness altogether (they are copied from the
config when the model is built: changing `model.config` afterwards has no effect).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from services.models._util import require

logger = logging.getLogger(__name__)

DEMO_ID = "milo-demo/vits-tiny-random-mlg"
SEED = 0
SAMPLING_RATE = 16_000
PAD = "_"
# The Malagasy alphabet (no c, q, u, w, x) with its accented vowels and ñ, as lower-case
# characters like MMS reads them, plus apostrophe (an'ny), hyphen (an-tsena) and space.
LETTERS = "abdefghijklmnoprstvyz" + "ôàèìéñ"
VOCAB = (PAD, " ", "'", "-", *LETTERS)
OUTPUT_GAIN = 0.005  # scales the vocoder's last layer so random output is not clipped noise


def build_tts(dest: Path) -> dict[str, Any]:
    """Save the demo VITS model and tokenizer into `dest`; returns its manifest entry."""
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = save_tokenizer(dest)
    save_model(dest, vocab_size=len(VOCAB))
    samples = verify_tts(dest)
    logger.info("demo tts ok: %d samples at %d Hz", samples, SAMPLING_RATE)
    return {
        "id": DEMO_ID,
        "source": "random weights, VITS architecture, MMS-style Malagasy character vocabulary",
        "languages": ["mlg"],
        "sampling_rate": SAMPLING_RATE,
        "vocab_size": tokenizer.vocab_size,
    }


def save_tokenizer(dest: Path) -> Any:
    """Write the demo's character vocabulary (vocab.json) and a transformers VitsTokenizer into
    `dest`; returns that tokenizer. Raises MissingDependencyError if transformers is not
    installed."""
    transformers = require("transformers")
    vocab_file = dest / "vocab.json"
    vocab = {symbol: i for i, symbol in enumerate(VOCAB)}
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False, indent=2) + "\n", "utf-8")
    tokenizer = transformers.VitsTokenizer(
        vocab_file=str(vocab_file),
        pad_token=PAD,
        unk_token=PAD,
        language="mlg",
        add_blank=True,
        normalize=True,
        phonemize=False,
        is_uroman=False,
    )
    tokenizer.save_pretrained(str(dest))
    return tokenizer


def save_model(dest: Path, vocab_size: int) -> None:
    """Save a tiny VITS with random weights (seeded, so the same every time) into `dest`;
    `vocab_size` is the tokenizer's. Raises MissingDependencyError if torch or transformers
    is missing."""
    torch = require("torch")
    transformers = require("transformers")
    torch.manual_seed(SEED)
    model = transformers.VitsModel(_tiny_config(transformers, vocab_size))
    with torch.no_grad():
        model.decoder.conv_post.weight.mul_(OUTPUT_GAIN)
    model.save_pretrained(str(dest))


def _tiny_config(transformers: Any, vocab_size: int) -> Any:
    return transformers.VitsConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        ffn_dim=64,
        flow_size=32,
        spectrogram_bins=65,
        upsample_initial_channel=64,
        upsample_rates=[8, 8, 2, 2],
        upsample_kernel_sizes=[16, 16, 4, 4],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3, 5]],
        prior_encoder_num_flows=2,
        prior_encoder_num_wavenet_layers=2,
        posterior_encoder_num_wavenet_layers=2,
        duration_predictor_num_flows=2,
        duration_predictor_filter_channels=32,
        duration_predictor_flow_bins=4,
        depth_separable_num_layers=2,
        sampling_rate=SAMPLING_RATE,
    )


def verify_tts(folder: Path) -> int:
    """Synthesize a Malagasy sentence with VitsModel; returns the number of samples."""
    torch = require("torch")
    transformers = require("transformers")
    model = transformers.VitsModel.from_pretrained(str(folder)).eval()
    tokenizer = transformers.VitsTokenizer.from_pretrained(str(folder))
    inputs = tokenizer("Manao ahoana ianao? Tonga soa eto Madagasikara.", return_tensors="pt")
    transformers.set_seed(SEED)
    with torch.no_grad():
        waveform = model(**inputs).waveform
    if waveform.ndim != 2 or waveform.shape[-1] < SAMPLING_RATE // 4:
        raise RuntimeError(f"demo TTS produced an implausible waveform {tuple(waveform.shape)}")
    return int(waveform.shape[-1])
