"""The output folder of a run: which checkpoint to resume, and refusing to mix two runs.

A run's folder holds `checkpoint-N/` folders written by transformers' Trainer (weights,
`optimizer.pt`, `scheduler.pt`, `rng_state.pth`, `trainer_state.json`), `metrics.csv`, and
`milo-train.json` (what the run trains: base model, its shape, dataset, language). A
checkpoint counts as complete once `trainer_state.json` is written, the Trainer's last
file; a folder left half-written by a `kill -9` during a save is passed over.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from services.train.errors import TrainError
from services.train.whisper import shape_of, size_name

log = logging.getLogger(__name__)

RUN_FILE = "milo-train.json"
STATE_FILE = "trainer_state.json"
INCOMPLETE_MARK = "checkpoint-is-incomplete.txt"  # transformers' JIT checkpoint sentinel
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def step_of(checkpoint: Path) -> int:
    """N of a `checkpoint-N` folder; -1 for any other name."""
    match = _CHECKPOINT.match(checkpoint.name)
    return int(match.group(1)) if match else -1


def is_complete(checkpoint: Path) -> bool:
    """True when the checkpoint has its trainer state and no transformers "incomplete" mark (an
    interrupted save)."""
    return (checkpoint / STATE_FILE).is_file() and not (checkpoint / INCOMPLETE_MARK).exists()


def list_checkpoints(output: Path) -> list[Path]:
    """Complete `checkpoint-N` folders of `output`, oldest step first."""
    if not output.is_dir():
        return []
    found = [p for p in output.iterdir() if p.is_dir() and step_of(p) >= 0]
    for partial in (p for p in found if not is_complete(p)):
        log.warning("passing over %s: incomplete (interrupted while saving)", partial)
    return sorted((p for p in found if is_complete(p)), key=step_of)


def resolve_resume(output: Path, resume: str | None) -> Path | None:
    """`auto` -> the newest complete checkpoint of `output` (None when there is none, with a
    notice); a path -> that checkpoint, checked; None -> None."""
    if resume is None:
        return None
    if resume == "auto":
        found = list_checkpoints(output)
        if not found:
            log.info("--resume auto: no checkpoint in %s yet, starting from the base model", output)
            return None
        return found[-1]
    path = Path(resume).expanduser()
    if not path.is_dir():
        raise TrainError(f"--resume {resume}: no such checkpoint folder")
    if not (path / STATE_FILE).is_file() and step_of(path) >= 0:
        raise TrainError(
            f"--resume {resume}: the checkpoint is incomplete (no {STATE_FILE}: "
            "its save was interrupted); resume an earlier one"
        )
    if not (path / STATE_FILE).is_file():
        raise TrainError(
            f"--resume {resume}: not a Trainer checkpoint (no {STATE_FILE}); "
            "to start from these weights, pass the folder as --model instead"
        )
    if not is_complete(path):
        raise TrainError(
            f"--resume {resume}: the checkpoint is incomplete (its save was "
            "interrupted); resume an earlier one"
        )
    return path


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; {} if the file is missing or not an object. Raises TrainError
    if it cannot be read or parsed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise TrainError(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}


def check_output(output: Path, run: dict[str, Any], resuming: bool) -> None:
    """Refuse an output folder that belongs to another run, or a fresh start over
    checkpoints that `--resume` would continue."""
    recorded = read_json(output / RUN_FILE)
    if recorded:
        for key, what in (
            ("dataset", "dataset"),
            ("shape", "model shape"),
            ("language", "language"),
        ):
            if recorded.get(key) != run.get(key):
                raise TrainError(
                    f"{output} holds another run ({what} {recorded.get(key)!r}, here "
                    f"{run.get(key)!r}; its base model was {recorded.get('model')!r}): choose "
                    "another --output, or resume that run with its own settings"
                )
    if not resuming and list_checkpoints(output):
        last = list_checkpoints(output)[-1].name
        raise TrainError(
            f"{output} already holds a run (up to {last}): add --resume auto to continue it, "
            "or choose another --output"
        )


def check_checkpoint(checkpoint: Path, shape: dict[str, Any]) -> dict[str, Any]:
    """Refuse a checkpoint of another Whisper size; returns its trainer state."""
    config = read_json(checkpoint / "config.json")
    if not config:
        raise TrainError(f"{checkpoint} has no config.json: not a model checkpoint")
    theirs = shape_of(config)
    if theirs != shape:
        diff = ", ".join(f"{k} {theirs[k]} vs {shape[k]}" for k in shape if theirs[k] != shape[k])
        raise TrainError(
            f"{checkpoint} is {size_name(theirs)} but --model is {size_name(shape)} ({diff}): "
            "resume with the --model the checkpoint was trained from"
        )
    return read_json(checkpoint / STATE_FILE)


def write_run(output: Path, run: dict[str, Any]) -> None:
    """Record the run's settings in `output`/milo-train.json, once (a resumed run keeps the first
    record)."""
    output.mkdir(parents=True, exist_ok=True)
    if not (output / RUN_FILE).is_file():
        text = json.dumps(run, indent=2, ensure_ascii=False)
        (output / RUN_FILE).write_text(text + "\n", encoding="utf-8")
