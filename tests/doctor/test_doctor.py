"""`milo doctor` and `milo up`'s pre-flight: the demo folder passes; a copy with one file
removed or damaged per model, a wrong language, or a GGUF without a chat template fails
with the matching message (tier 1 on copies of the demo set; `milo up` as a process)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from services.doctor import gpu as doctor_gpu
from services.doctor.cli import diagnose, stt_language
from services.doctor.models import check_models, template_takes_system, unsayable_characters
from services.doctor.report import exit_code, failed, format_report
from services.doctor.system import check_ports, planned_ports


def linked_copy(src: Path, dest: Path) -> Path:
    """A copy of the demo set made of hard links (cheap); mutators replace files, never
    write into them, so the shared demo set is never touched."""
    shutil.copytree(src, dest, copy_function=os.link, ignore=shutil.ignore_patterns(".*"))
    return dest


def replace(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def remove(path: Path) -> None:
    path.unlink()


def truncate(path: Path) -> None:
    replace(path, path.read_bytes()[: max(1, path.stat().st_size // 3)])


def ggu_without_template(path: Path) -> None:
    from gguf import GGUFWriter

    path.unlink()
    writer = GGUFWriter(str(path), "llama")
    writer.add_name("no-template")
    writer.add_block_count(1)
    import numpy as np

    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def drop_nllb_codes(folder: Path) -> None:
    for name in ("shared_vocabulary.json", "shared_vocabulary.txt"):
        path = folder / name
        if path.is_file():
            if name.endswith(".json"):
                words = [w for w in json.loads(path.read_text()) if w != "plt_Latn"]
                replace(path, json.dumps(words).encode())
            else:
                words = [w for w in path.read_text().splitlines() if w != "plt_Latn"]
                replace(path, ("\n".join(words) + "\n").encode())


BROKEN: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # case: (mutation of the models folder, component, words the failure must contain)
    "stt-no-tokenizer": (lambda r: remove(r / "stt/tokenizer.json"), "stt", "lacks tokenizer.json"),
    "stt-truncated-model": (lambda r: truncate(r / "stt/model.bin"), "stt", "does not load"),
    "stt-bad-tokenizer": (
        lambda r: replace(r / "stt/tokenizer.json", b"{not json"),
        "stt",
        "not readable JSON",
    ),
    "translate-no-spm": (
        lambda r: remove(r / "translate/sentencepiece.bpe.model"),
        "translate",
        "lacks sentencepiece.bpe.model",
    ),
    "translate-bad-spm": (
        lambda r: replace(r / "translate/sentencepiece.bpe.model", b"junk"),
        "translate",
        "does not load",
    ),
    "translate-no-malagasy": (
        lambda r: drop_nllb_codes(r / "translate"),
        "translate",
        "lacks plt_Latn",
    ),
    "translate-truncated-model": (
        lambda r: truncate(r / "translate/model.bin"),
        "translate",
        "does not load",
    ),
    "llm-missing": (lambda r: remove(r / "llm/model.gguf"), "llm", "lacks model.gguf"),
    "llm-truncated": (lambda r: truncate(r / "llm/model.gguf"), "llm", "not a readable GGUF"),
    "llm-no-template": (
        lambda r: ggu_without_template(r / "llm/model.gguf"),
        "llm",
        "no chat template",
    ),
    "tts-no-vocab": (lambda r: remove(r / "tts/vocab.json"), "tts", "lacks vocab.json"),
    "tts-bad-config": (lambda r: replace(r / "tts/config.json", b"{"), "tts", "not readable JSON"),
    "tts-no-rate": (
        lambda r: replace(
            r / "tts/config.json",
            json.dumps(
                {**json.loads((r / "tts/config.json").read_text()), "sampling_rate": None}
            ).encode(),
        ),
        "tts",
        "no sampling_rate",
    ),
}


@pytest.fixture(scope="module")
def demo_copy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("doctor")


def test_the_demo_folder_passes_every_check(demo_models: Path) -> None:
    findings = diagnose(demo_models, ports=False)
    assert not failed(findings), format_report(findings)
    assert exit_code(findings) == 0
    text = format_report(findings)
    for words in ("loads", "chat template", "plt_Latn", "Hz"):
        assert words in text


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_model_fails_with_its_message(
    case: str, demo_models: Path, demo_copy_root: Path
) -> None:
    mutate, component, words = BROKEN[case]
    root = linked_copy(demo_models, demo_copy_root / case)
    mutate(root)
    findings = check_models(root, stt_language="en", load=True, only=(component,))
    problems = failed(findings)
    assert {f.subject for f in problems} == {component}, format_report(findings)
    assert words in problems[0].message, format_report(findings)
    assert all(f.fix for f in problems)  # each says what to do
    assert exit_code(findings) == 1


@pytest.mark.parametrize(
    ("language", "words"), [("mg", "English-only"), ("xx", "not a Whisper language code")]
)
def test_a_wrong_stt_language_fails(language: str, words: str, demo_models: Path) -> None:
    problems = failed(check_models(demo_models, stt_language=language, only=("stt",)))
    assert len(problems) == 1 and words in problems[0].message


def test_language_follows_flag_env_then_the_demo_rule(demo_models: Path, tmp_path: Path) -> None:
    assert stt_language(demo_models, env={}) == "en"  # English-only demo set, as milo up
    assert stt_language(demo_models, env={"MILO_STT_LANGUAGE": "mg"}) == "mg"
    assert stt_language(demo_models, "fr", env={"MILO_STT_LANGUAGE": "mg"}) == "fr"
    assert stt_language(tmp_path, env={}) == "mg"


def test_system_role_detection() -> None:
    refuses = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('no system role') }}{% endif %}{{ m['content'] }}{% endfor %}"
    )
    takes = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{% endfor %}"
    assert template_takes_system(takes)
    assert not template_takes_system(refuses)


def test_unsayable_characters_are_named() -> None:
    vocab = {c: i for i, c in enumerate("_ abdefghijklmnoprstvyz'")}
    assert unsayable_characters(vocab, "_", "Ô ry zanako!") == ""  # ô folds to o
    assert unsayable_characters(vocab, "_", "ŋ 5") == "ŋ"  # 5 is read as a word


def test_busy_ports_are_named() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        problems = failed(check_ports({"stt gRPC": port}))
    assert problems and f"{port} (stt gRPC)" in problems[0].message
    assert planned_ports(40000, env={})["tts gRPC"] == 40004


def test_gpu_budget_against_free_memory(demo_models: Path) -> None:
    card = doctor_gpu.Gpu(0, "RTX 5070 Ti", "580.1", (12, 0), 16 * 1024**3, 15 * 1024**3)
    fits = doctor_gpu.check_gpu(demo_models, [card], env={})
    assert not failed(fits) and "fit" in fits[-1].message
    small = doctor_gpu.Gpu(0, "tiny", "580.1", (12, 0), 1024**3, 512 * 1024**2)
    problems = failed(doctor_gpu.check_gpu(demo_models, [small], env={}))
    assert problems and "need about" in problems[0].message
    assert failed(doctor_gpu.check_gpu(demo_models, [], env={"MILO_LLM_DEVICE": "cuda"}))
    assert not failed(doctor_gpu.check_gpu(demo_models, [], env={}))


def test_kv_cache_estimate_matches_the_vram_budget() -> None:
    """Mistral 7B: 32 layers, 8 KV heads of 128: 4096 tokens of f16 K and V = 512 MiB
    (deploy/README.md, VRAM budget)."""
    mistral = {
        "general.architecture": "llama",
        "llama.block_count": 32,
        "llama.attention.head_count": 32,
        "llama.attention.head_count_kv": 8,
        "llama.embedding_length": 4096,
    }
    assert doctor_gpu.kv_cache_bytes(mistral, 4096) == 512 * 1024**2


def test_milo_doctor_command_exit_codes(demo_models: Path, demo_copy_root: Path) -> None:
    ok_run = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.doctor",
            "--models",
            str(demo_models),
            "--no-ports",
            "--no-load",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok_run.returncode == 0, ok_run.stdout + ok_run.stderr
    assert "Milo is ready to start" in ok_run.stdout
    root = linked_copy(demo_models, demo_copy_root / "cli-broken")
    remove(root / "tts/vocab.json")
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.doctor",
            "--models",
            str(root),
            "--no-ports",
            "--no-load",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert not report["ok"]
    assert any(f["level"] == "fail" and "vocab.json" in f["message"] for f in report["findings"])


def test_milo_up_refuses_to_start_with_the_same_message(
    demo_models: Path, demo_copy_root: Path
) -> None:
    root = linked_copy(demo_models, demo_copy_root / "up-broken")
    remove(root / "stt/tokenizer.json")
    run = subprocess.run(
        [sys.executable, "-m", "services.cli", "up", "--models", str(root), "--base-port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "lacks tokenizer.json" in run.stderr
    assert "milo models fetch --only stt" in run.stderr


@pytest.mark.parametrize(
    ("component", "missing"),
    [
        ("stt", "tokenizer.json"),
        ("translate", "sentencepiece.bpe.model"),
        ("llm", "model.gguf"),
        ("tts", "vocab.json"),
    ],
)
def test_each_service_checks_its_model_before_loading(
    component: str, missing: str, demo_models: Path, demo_copy_root: Path
) -> None:
    from services.doctor.models import PreflightError, preflight

    root = linked_copy(demo_models, demo_copy_root / f"preflight-{component}")
    path = root / component / ("model.gguf" if component == "llm" else "")
    preflight(component, path)  # the demo model passes
    remove(root / component / missing)
    with pytest.raises(PreflightError, match=f"lacks {missing}"):
        preflight(component, path)


@pytest.mark.parametrize(
    ("module", "env_name", "entry", "missing"),
    [
        ("services.translate", "MILO_TRANSLATE_MODEL_DIR", "translate", "sentencepiece.bpe.model"),
        ("services.llm", "MILO_LLM_MODEL_PATH", "llm", "model.gguf"),
    ],
)
def test_a_container_entry_point_refuses_to_start_with_the_doctor_message(
    module: str, env_name: str, entry: str, missing: str, demo_models: Path, demo_copy_root: Path
) -> None:
    root = linked_copy(demo_models, demo_copy_root / f"container-{entry}")
    remove(root / entry / missing)
    prefix = env_name.rsplit("_", 2)[0] + "_"
    env = {
        **os.environ,
        env_name: str(root / entry),
        f"{prefix}PORT": "0",
        f"{prefix}METRICS_PORT": "0",
        f"{prefix}HOST": "127.0.0.1",
    }
    run = subprocess.run(
        [sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=180
    )
    assert run.returncode != 0
    assert f"lacks {missing}" in run.stderr and "milo models fetch --only" in run.stderr
