"""Speech datasets for `milo train stt`: where they come from, which columns hold what, and
which clips are usable.

Three sources, told apart by what `--dataset` names:

- a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk` (it holds
  `dataset_dict.json` or `state.json`);
- a Hugging Face audiofolder: audio files plus `metadata.csv` (or `metadata.jsonl`) with a
  `file_name` column and a text column, at the top (one `train` split) or in one
  sub-folder per split (`train/`, `validation/`, `test/`); the metadata is read with
  datasets' csv/json builders (its `audiofolder` builder would encode every clip with
  torchcodec on load);
- otherwise a Hugging Face dataset id (`badrex/malagasy-speech-full`), read from the local
  Hugging Face cache (`datasets`' prepared Arrow files, else the hub's downloaded snapshot:
  `load_hub_dataset`): `milo train` runs offline unless given `--online`.

Audio is never decoded by `datasets` (its Audio feature is cast to `decode=False`): the bytes
or the file go through the project's own decoder (services/stt/audio.py: PyAV, any format,
resampled to 16 kHz mono float32), the same code the STT service runs.

Before training every split is screened once (`screen`): clips that do not decode, are
longer than Whisper's 30 s window, or whose text is empty once normalized or longer than
the decoder's 448 tokens are skipped and counted, so that no bad file can stop an epoch.
`datasets` caches the screening next to the dataset, so a resumed run does not redo it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.train.errors import TrainError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
MAX_SECONDS = 30.0  # Whisper's window: longer clips would be cut, their text would not
MAX_DECODE_SECONDS = 600.0  # never decode more than this of one file
AUDIO_COLUMNS = ("audio", "file_name", "file", "path", "audio_filepath")
TEXT_COLUMNS = (
    "sentence",
    "text",
    "transcription",
    "transcript",
    "normalized_text",
    "raw_transcription",
)
EVAL_SPLITS = ("validation", "valid", "dev", "eval")
METADATA_FILES = ("metadata.csv", "metadata.jsonl")
SKIP_COLUMN = "_milo_skip"
TOKENS_COLUMN = "_milo_tokens"
SECONDS_COLUMN = "_milo_seconds"


class UnreadableAudio(ValueError):
    """One clip cannot be decoded (missing file, not audio, empty)."""


@dataclass(frozen=True)
class DatasetSpec:
    """What the user asked for. `None` columns and splits are found by name."""

    source: str
    audio_column: str | None = None
    text_column: str | None = None
    train_split: str = "train"
    eval_split: str | None = None
    test_split: str | None = None
    cache_dir: Path | None = None


@dataclass
class Splits:
    """The splits training uses, raw (audio not decoded), with the columns found."""

    train: Any
    eval: Any
    test: Any | None
    audio_column: str
    text_column: str
    names: dict[str, str]  # role (train/eval/test) -> split name in the dataset
    root: Path | None  # where relative audio paths start


@dataclass
class Screened:
    """A split after screening: the usable clips and what was skipped, and why."""

    dataset: Any
    total: int
    skipped: Counter[str] = field(default_factory=Counter)
    first_skipped: dict[str, str] = field(default_factory=dict)
    max_label_tokens: int = 0
    seconds: float = 0.0

    def summary(self, name: str) -> str:
        """One line for `name`: usable clips of the total, hours of audio, and the skips by
        reason with the first clip of each."""
        kept = self.total - sum(self.skipped.values())
        text = f"{name}: {kept:,} of {self.total:,} clips usable ({self.seconds / 3600:.2f} h)"
        if self.skipped:
            parts = [
                f"{n} {reason} (first: {self.first_skipped[reason]})"
                for reason, n in self.skipped.most_common()
            ]
            text += "; skipped " + "; ".join(parts)
        return text


def open_dataset(spec: DatasetSpec) -> Any:
    """The DatasetDict `spec.source` names (see the module docstring for the three kinds)."""
    import datasets

    local = Path(spec.source).expanduser()
    if local.is_dir():
        if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
            try:
                loaded = datasets.load_from_disk(str(local))
            except (IndexError, ValueError, OSError) as exc:  # an empty split, a bad file
                raise TrainError(f"cannot read the save_to_disk folder {local}: {exc!r}") from exc
            if isinstance(loaded, datasets.Dataset):
                loaded = datasets.DatasetDict({"train": loaded})
            return loaded
        if _metadata_files(local):
            return load_audiofolder(datasets, local, spec)
        raise TrainError(
            f"{local} is neither a save_to_disk folder (dataset_dict.json) nor an audiofolder "
            f"(audio files with a {' or '.join(METADATA_FILES)} naming them in `file_name`)"
        )
    if local.exists():
        raise TrainError(f"{local} is a file; --dataset takes a folder or a dataset id")
    return load_hub_dataset(datasets, spec)


def load_hub_dataset(datasets: Any, spec: DatasetSpec) -> Any:
    """A Hugging Face dataset id, from either local cache `load_dataset` offline can meet.

    1. `datasets`' own cache (HF_DATASETS_CACHE, `owner___name/<config>/<version>/<hash>/`:
       the Arrow files a past `load_dataset(id)` prepared): what `datasets` reads by itself
       in offline mode (its `CachedDatasetModuleFactory`).
    2. The hub cache (HF_HUB_CACHE, `datasets--owner--name/snapshots/<rev>/`, `refs/main`):
       the files `hf download --repo-type dataset ID` (or a `load_dataset` whose Arrow cache
       was since cleared) left there. `datasets` 4.x/5.x in offline mode never looks there,
       so the snapshot folder is found with huggingface_hub (`local_files_only`) and loaded
       as a local dataset (its README's `configs`, else the usual `data/<split>-*` names).

    With --online (HF_HUB_OFFLINE unset) step 1 downloads as usual. Raises TrainError when
    the id is in neither cache, saying how to fetch it."""
    cache = str(spec.cache_dir) if spec.cache_dir else None
    try:
        return datasets.load_dataset(spec.source, cache_dir=cache)
    except (FileNotFoundError, ConnectionError) as exc:  # offline and not prepared
        not_prepared = exc
    except ValueError as exc:  # datasets' builders report bad layouts this way
        raise TrainError(f"cannot read dataset {spec.source!r}: {exc}") from exc
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = snapshot_download(spec.source, repo_type="dataset", local_files_only=True)
    except (LocalEntryNotFoundError, ValueError) as exc:  # ValueError: not an owner/name id
        from huggingface_hub import constants

        raise TrainError(
            f"dataset {spec.source!r} is not cached on this machine: neither prepared by "
            f"`datasets` in {cache or datasets.config.HF_DATASETS_CACHE} nor downloaded to "
            f"the hub cache {constants.HF_HUB_CACHE} ({not_prepared}). Download it once "
            f"with network access: `hf download --repo-type dataset {spec.source}` (or run "
            "this command once with --online); or pass a save_to_disk folder or an "
            "audiofolder"
        ) from exc
    log.info("dataset %s: reading the hub cache snapshot %s", spec.source, snapshot)
    return _load(datasets, snapshot, spec)


def _metadata_files(folder: Path) -> list[Path]:
    return [
        p
        for name in METADATA_FILES
        for p in [folder / name, *folder.glob(f"*/{name}")]
        if p.is_file()
    ]


def load_audiofolder(datasets: Any, folder: Path, spec: DatasetSpec) -> Any:
    """The audiofolder layout, read with datasets' csv/json builders; `file_name` becomes an
    absolute path. (datasets' own `audiofolder` builder encodes every clip with torchcodec
    while loading; Milo decodes audio itself, so it only needs the metadata.)"""
    splits: dict[str, Any] = {}
    for meta in _metadata_files(folder):
        name = "train" if meta.parent == folder else meta.parent.name
        if name in splits:
            raise TrainError(f"{folder}: two metadata files for the split {name!r}")
        kind = "csv" if meta.suffix == ".csv" else "json"
        rows = [line for line in meta.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(rows) <= (1 if kind == "csv" else 0):
            raise TrainError(f"the {name} split of {folder} is empty: {meta} lists no clip")
        part = _load(datasets, kind, spec, data_files=str(meta), split="train")
        if "file_name" not in part.column_names:
            raise TrainError(
                f"{meta} has no `file_name` column (columns: "
                f"{', '.join(part.column_names)}): the audiofolder layout names "
                "each clip's file in `file_name`"
            )
        base = meta.parent.resolve()
        splits[name] = part.map(
            lambda row, base=base: {"file_name": str(base / str(row["file_name"]))},
            desc=f"locating the {name} clips",
        )
    return datasets.DatasetDict(splits)


def _load(datasets: Any, path: str, spec: DatasetSpec, **kwargs: Any) -> Any:
    cache = str(spec.cache_dir) if spec.cache_dir else None
    try:
        return datasets.load_dataset(path, cache_dir=cache, **kwargs)
    except (FileNotFoundError, ValueError) as exc:  # datasets reports bad layouts as these
        raise TrainError(f"cannot read dataset {path!r}: {exc}") from exc


def select_splits(dataset: Any, spec: DatasetSpec) -> Splits:
    """Pick the train/eval/test splits and the audio and text columns, or say what is wrong."""
    names = list(dataset)
    roles = {"train": spec.train_split}
    roles["eval"] = spec.eval_split or next((n for n in EVAL_SPLITS if n in names), "")
    test = spec.test_split or ("test" if "test" in names else "")
    for role, name in roles.items():
        if not name:
            raise TrainError(
                f"dataset {spec.source} has no validation split (splits: {', '.join(names)}); "
                "name one with --eval-split (it may be `train` to score the training data)"
            )
        if name not in names:
            raise TrainError(
                f"dataset {spec.source} has no split {name!r} for {role} "
                f"(splits: {', '.join(names)})"
            )
    if test and test not in names:
        raise TrainError(
            f"dataset {spec.source} has no split {test!r} (splits: {', '.join(names)})"
        )
    if test:
        roles["test"] = test
    for role, name in roles.items():
        if len(dataset[name]) == 0:
            raise TrainError(f"the {role} split {name!r} of {spec.source} is empty")
    audio, text = find_columns(dataset[roles["train"]], spec)
    splits = {role: _prepare(dataset[name], audio, text, spec) for role, name in roles.items()}
    local = Path(spec.source).expanduser()
    return Splits(
        train=splits["train"],
        eval=splits["eval"],
        test=splits.get("test"),
        audio_column=audio,
        text_column=text,
        names=roles,
        root=local.resolve() if local.is_dir() else None,
    )


def find_columns(dataset: Any, spec: DatasetSpec) -> tuple[str, str]:
    """(audio column, text column): the ones named, else found by feature type and name."""
    import datasets

    features = dataset.features
    columns = ", ".join(features) or "none"
    audio = (
        spec.audio_column
        or next((n for n, f in features.items() if isinstance(f, datasets.Audio)), None)
        or next((n for n in AUDIO_COLUMNS if n in features), None)
    )
    if audio is None or audio not in features:
        what = f"no column {audio!r}" if audio else "no audio column"
        raise TrainError(
            f"dataset {spec.source} has {what} (columns: {columns}); name it with --audio-column"
        )
    text = spec.text_column or next((n for n in TEXT_COLUMNS if n in features), None)
    if text is None or text not in features:
        what = f"no column {text!r}" if text else "no text column"
        raise TrainError(
            f"dataset {spec.source} has {what} (columns: {columns}); "
            "name the transcript column with --text-column"
        )
    if getattr(features[text], "dtype", None) not in ("string", "large_string"):
        raise TrainError(
            f"column {text!r} of {spec.source} is not text "
            f"({features[text]}); name the transcript column with --text-column"
        )
    return audio, text


def _prepare(split: Any, audio: str, text: str, spec: DatasetSpec) -> Any:
    import datasets

    for column in (audio, text):
        if column not in split.features:
            raise TrainError(f"a split of {spec.source} lacks the column {column!r}")
    if isinstance(split.features[audio], datasets.Audio):
        split = split.cast_column(audio, datasets.Audio(decode=False))
    return split.select_columns([audio, text])


def audio_bytes(value: Any, root: Path | None) -> bytes:
    """The encoded bytes of one audio cell: {"bytes", "path"} (Audio, decode=False) or a path."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        value = value.get("path")
    if not isinstance(value, str) or not value:
        raise UnreadableAudio("the audio cell holds neither bytes nor a path")
    path = Path(value)
    if not path.is_absolute() and root is not None:
        path = root / path
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UnreadableAudio(f"{path}: {exc.strerror or exc}") from exc


def load_audio(value: Any, root: Path | None) -> np.ndarray:
    """One audio cell -> 16 kHz mono float32, decoded by the STT service's own code."""
    from services.runtime.errors import InvalidArgument
    from services.stt.audio import AudioSpec, decode_clip

    data = audio_bytes(value, root)
    try:
        return decode_clip(data, AudioSpec(), int(MAX_DECODE_SECONDS * SAMPLE_RATE))
    except InvalidArgument as exc:
        name = value.get("path") if isinstance(value, dict) else value
        raise UnreadableAudio(f"{name or 'embedded audio'}: {exc}") from exc


def describe_cell(value: Any) -> str:
    """A dataset audio cell in words for messages: its path, or "embedded audio"."""
    if isinstance(value, dict):
        return str(value.get("path") or "embedded audio")
    return str(value)


def checker(
    audio: str,
    text: str,
    root: Path | None,
    count_tokens: Callable[[str], int],
    max_tokens: int,
    max_seconds: float = MAX_SECONDS,
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The per-clip check `screen` maps over a split: why to skip it ("" = keep).
    `max_seconds`: the model's audio window (30 s for Whisper)."""
    from services.stt.normalize import normalize

    def check(row: dict[str, Any]) -> dict[str, Any]:
        transcript = row[text]
        name = describe_cell(row[audio])
        if not isinstance(transcript, str) or not normalize(transcript):
            return _verdict(f"empty text|{name}")
        tokens = count_tokens(transcript)
        if tokens > max_tokens:
            return _verdict(f"text over {max_tokens} tokens|{name}", tokens)
        try:
            samples = load_audio(row[audio], root)
        except UnreadableAudio as exc:
            return _verdict(f"unreadable audio|{exc}", tokens)
        seconds = samples.size / SAMPLE_RATE
        if seconds > max_seconds:
            return _verdict(f"longer than {max_seconds:g} s|{name}", tokens, seconds)
        return _verdict("", tokens, seconds)

    return check


def _verdict(skip: str, tokens: int = 0, seconds: float = 0.0) -> dict[str, Any]:
    return {SKIP_COLUMN: skip, TOKENS_COLUMN: tokens, SECONDS_COLUMN: seconds}


def screen(
    split: Any, check: Callable[[dict], dict], name: str, num_proc: int | None = None
) -> Screened:
    """Run `check` over every clip once; keep the usable ones and count the others."""
    checked = split.map(check, num_proc=num_proc, desc=f"checking the {name} clips")
    reasons = checked[SKIP_COLUMN]
    result = Screened(dataset=None, total=len(reasons))
    for reason in reasons:
        if reason:
            kind, _, example = reason.partition("|")
            result.skipped[kind] += 1
            result.first_skipped.setdefault(kind, example)
    keep = [i for i, reason in enumerate(reasons) if not reason]
    kept = checked.select(keep)
    result.max_label_tokens = max(kept[TOKENS_COLUMN], default=0)
    result.seconds = float(sum(kept[SECONDS_COLUMN]))
    result.dataset = kept.remove_columns([SKIP_COLUMN, TOKENS_COLUMN, SECONDS_COLUMN])
    return result
