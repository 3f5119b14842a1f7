"""Put a fine-tuned checkpoint into service: convert it to CTranslate2 into the models folder
(through `services.models.fetch.prepare_stt`, the code behind `milo models convert stt`),
record its manifest entry, then score it with `milo eval stt` on the test split, beside the
base model.

The evaluation is the real path: the test clips are written as 16 kHz WAV files with a JSONL
manifest (`<run>/eval/test/`), an STT service (`python -m services.stt`) is started on the
exported model on a free port, and `milo eval stt` sends it every clip; the same is done
with the base model converted to CTranslate2 (kept in `<run>/eval/base-ct2/` for the next
export). The STT service started from that models folder then serves the new model with no
further step.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import wave
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from services.train import checkpoints
from services.train.data import DatasetSpec, checker, load_audio, screen, select_splits
from services.train.errors import TrainError

log = logging.getLogger(__name__)

EVAL_DIR = "eval"
SERVICE_START_TIMEOUT = 600.0


@dataclass(frozen=True)
class ExportConfig:
    """What to export and how: the checkpoint, the models folder, the base model and dataset
    (default: the run's, from milo-train.json), the CTranslate2 quantization, whether to score
    the result and the base model on the test split (at most `max_test_samples` clips), the
    device and the language."""

    checkpoint: Path
    models_dir: Path
    base: str | None = None  # default: the run's base model (milo-train.json)
    dataset: DatasetSpec | None = None  # default: the run's dataset
    quantization: str = "float16"
    evaluate: bool = True
    baseline: bool = True
    max_test_samples: int | None = None
    device: str = "auto"
    language: str = "mg"


def export(cfg: ExportConfig) -> dict[str, Any]:
    """Convert and record `cfg.checkpoint`; evaluate it unless told not to. Returns the
    manifest entry (with `test_wer`/`test_cer` once evaluated)."""
    from services.models.layout import read_manifest

    checkpoint = cfg.checkpoint.expanduser().resolve()
    if not (checkpoint / "config.json").is_file():
        raise TrainError(f"{checkpoint} is not a model checkpoint (no config.json)")
    run = checkpoints.read_json(checkpoint.parent / checkpoints.RUN_FILE)
    base = cfg.base or run.get("model")
    entry = convert(checkpoint, cfg, base, run)
    print(
        f"exported {checkpoint.name} -> {cfg.models_dir / 'stt'} (validation WER "
        f"{_pct(entry.get('validation_wer'))})",
        flush=True,
    )
    if not cfg.evaluate:
        return entry
    source = cfg.dataset or (DatasetSpec(run["dataset"]) if run.get("dataset") else None)
    if source is None:
        raise TrainError("no dataset to evaluate on: pass --dataset (or --no-eval)")
    manifest = write_test_manifest(
        source, checkpoint.parent / EVAL_DIR / "test", cfg.max_test_samples
    )
    results = {"fine-tuned": evaluate_model(cfg.models_dir / "stt", manifest, cfg)}
    if cfg.baseline and base:
        base_ct2 = convert_base(base, checkpoint.parent / EVAL_DIR / "base-ct2", cfg)
        results["base"] = evaluate_model(base_ct2, manifest, cfg)
    print(comparison(results, base, checkpoint.name, manifest), flush=True)
    entry = _record(
        {
            **read_manifest(cfg.models_dir).get("stt", {}),
            "test_wer": round(100 * results["fine-tuned"]["wer"], 2),
            "test_cer": round(100 * results["fine-tuned"]["cer"], 2),
        },
        cfg.models_dir,
    )
    report = {
        name: {k: r[k] for k in ("wer", "cer", "utterances", "model")}
        for name, r in results.items()
    }
    (checkpoint.parent / EVAL_DIR / "report.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return entry


def convert(
    checkpoint: Path, cfg: ExportConfig, base: str | None, run: dict[str, Any]
) -> dict[str, Any]:
    """The checkpoint -> <models>/stt, and its manifest entry."""
    from services.models import fetch
    from services.models._util import ModelsError

    state = checkpoints.read_json(checkpoint / checkpoints.STATE_FILE)
    step = int(state.get("global_step") or checkpoints.step_of(checkpoint))
    scores: dict[str, Any] = next(
        (
            e
            for e in reversed(state.get("log_history", []))
            if e.get("step") == step and "eval_wer" in e
        ),
        {},
    )
    try:
        manifest = fetch.prepare_stt(
            cfg.models_dir,
            str(checkpoint),
            cfg.quantization,
            base=local_model(base) if base else None,
            force=True,
        )
    except ModelsError as exc:
        raise TrainError(f"cannot convert {checkpoint}: {exc}") from exc
    name = Path(base).name if base else "whisper"
    entry = {
        **manifest["stt"],
        "id": f"{name}-{cfg.language}-ft-step{step}",
        "checkpoint": str(checkpoint),
        "base_model": base,
        "dataset": run.get("dataset"),
        "steps": step,
        "language": cfg.language,
        "validation_wer": scores.get("eval_wer"),
        "validation_cer": scores.get("eval_cer"),
    }
    return _record(entry, cfg.models_dir)


def _record(entry: dict[str, Any], root: Path) -> dict[str, Any]:
    from services.models.layout import record_entry

    return dict(record_entry(root, "stt", entry)["stt"])


def local_model(model: str) -> str:
    """A hub id -> its folder in the local Hugging Face cache (no network); a folder as it is."""
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser())
    from huggingface_hub import snapshot_download

    try:
        return str(snapshot_download(model, local_files_only=True))
    except Exception as exc:  # huggingface_hub raises several types for "not cached"
        raise TrainError(
            f"{model} is not in the local Hugging Face cache ({exc}); download it "
            "once, or pass a folder with --base"
        ) from exc


def convert_base(base: str, dest: Path, cfg: ExportConfig) -> Path:
    """The base model in CTranslate2 form for the side-by-side score (converted once)."""
    from services.models import convert as ct2

    if not (dest / "model.bin").is_file():
        print(f"converting the base model {base} for the comparison ...", flush=True)
        ct2.convert_whisper(Path(local_model(base)), dest, cfg.quantization)
    return dest


def write_test_manifest(spec: DatasetSpec, folder: Path, limit: int | None) -> Path:
    """The test split (the eval split when there is none) as WAV files + manifest.jsonl."""
    from services.train.data import open_dataset

    manifest = folder / "manifest.jsonl"
    if manifest.is_file():
        return manifest
    dataset = open_dataset(spec)
    if spec.eval_split is None and "test" in dataset:
        spec = replace(spec, eval_split="test")  # only the test split is needed here
    splits = select_splits(dataset, spec)
    role = "test" if splits.test is not None else "eval"
    part = splits.test if splits.test is not None else splits.eval
    if limit:
        part = part.select(range(min(limit, len(part))))
    if role == "eval":
        print(f"no test split: scoring on {splits.names['eval']!r}", flush=True)
    result = screen(
        part,
        checker(splits.audio_column, splits.text_column, splits.root, lambda text: 0, 1 << 30),
        splits.names[role],
    )
    print(result.summary(f"{role} split {splits.names[role]!r}"), flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, row in enumerate(result.dataset):
        clip = folder / f"{index:06d}.wav"
        _write_wav(clip, load_audio(row[splits.audio_column], splits.root))
        lines.append(
            json.dumps({"audio": clip.name, "text": row[splits.text_column]}, ensure_ascii=False)
        )
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(manifest)
    return manifest


def _write_wav(path: Path, samples: np.ndarray) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16_000)
        handle.writeframes(pcm)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (another program may take it before it is used)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def evaluate_model(model_dir: Path, manifest: Path, cfg: ExportConfig) -> dict[str, Any]:
    """Start an STT service on `model_dir`, run `milo eval stt --json` against it, stop it."""
    import time

    from gateway.up import Child, stop_all, wait_serving

    port, metrics = free_port(), free_port()
    env = {
        **os.environ,
        "MILO_STT_MODEL_DIR": str(model_dir),
        "MILO_STT_HOST": "127.0.0.1",
        "MILO_STT_PORT": str(port),
        "MILO_STT_METRICS_HOST": "127.0.0.1",
        "MILO_STT_METRICS_PORT": str(metrics),
        "MILO_STT_LANGUAGE": cfg.language,
        "MILO_STT_DEVICE": cfg.device,
        "MILO_STT_MAX_AUDIO_MS": "60000",
    }
    logfile = manifest.parent.parent / f"stt-{model_dir.name}.log"
    child = Child("stt", port, metrics, env)
    with logfile.open("wb") as out:
        child.proc = subprocess.Popen(
            [sys.executable, "-m", "services.stt"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            wait_serving(child, time.monotonic() + SERVICE_START_TIMEOUT)
        except (RuntimeError, TimeoutError) as exc:
            raise TrainError(
                f"the STT service did not start on {model_dir}: {exc} (log: {logfile})"
            ) from exc
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "services.cli",
                "eval",
                "stt",
                "--manifest",
                str(manifest),
                "--address",
                f"127.0.0.1:{port}",
                "--language",
                cfg.language,
                "--json",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise TrainError(f"milo eval stt failed on {model_dir}: {done.stderr.strip()}")
        return dict(json.loads(done.stdout))
    finally:
        stop_all([child])


def comparison(
    results: dict[str, dict[str, Any]], base: str | None, name: str, manifest: Path
) -> str:
    """The test-split WER and CER (percent) of the base and fine-tuned models, as a table."""
    count = next(iter(results.values()))["utterances"]
    lines = [
        f"milo eval stt on {count} test clips ({manifest}):",
        f"  {'model':<44}{'WER':>9}{'CER':>9}",
    ]
    labels = {"base": f"base {base}", "fine-tuned": f"fine-tuned {name}"}
    for key in ("base", "fine-tuned"):
        if key in results:
            r = results[key]
            lines.append(f"  {labels[key]:<44}{100 * r['wer']:8.2f}%{100 * r['cer']:8.2f}%")
    return "\n".join(lines)


def _pct(value: Any) -> str:
    return f"{value:.2f}%" if isinstance(value, int | float) else "not measured"
