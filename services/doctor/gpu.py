"""The GPU (NVML: name, driver, compute capability, free memory) and whether the four
models fit in it with the configured settings.

The estimate per service is the process's CUDA context, the weights at their compute
type, and what the engine allocates beside them; the figures are those of the VRAM budget
in deploy/README.md (measured with `nvidia-smi` on the stack):

    context       0.4 GiB a process (CUDA runtime, cuBLAS handles)
    stt, translate weights = model.bin x (bytes per weight at the compute type /
                  bytes per weight as stored), + 0.2 GiB CTranslate2 cache cap
    llm           the GGUF file (all layers on the GPU) x the share of layers offloaded,
                  + the f16 KV cache: 2 (K and V) x layers x KV heads x head size x 2 bytes
                  x tokens (context per sequence x parallel sequences), + 0.4 GiB buffers
    tts           the safetensors file at the dtype, + 0.2 GiB activations
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.doctor.report import Finding, fail, ok, warn
from services.models.layout import Layout, read_manifest

GIB = 1024**3
CONTEXT_BYTES = int(0.4 * GIB)
CT2_CACHE_BYTES = int(0.2 * GIB)
LLM_BUFFERS_BYTES = int(0.4 * GIB)
TTS_ACTIVATION_BYTES = int(0.2 * GIB)

# Bytes per weight of CTranslate2 compute types and quantizations (the weight part).
_CT2_BYTES = {
    "int8": 1,
    "int8_float16": 1,
    "int8_float32": 1,
    "int8_bfloat16": 1,
    "int16": 2,
    "float16": 2,
    "bfloat16": 2,
    "float32": 4,
}


@dataclass(frozen=True)
class Gpu:
    """One card as NVML reports it. Memory in bytes."""

    index: int
    name: str
    driver: str
    capability: tuple[int, int]
    total: int
    free: int


def probe_gpus() -> list[Gpu]:
    """The NVIDIA GPUs this process can see; [] without a driver or the NVML library."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no package, no driver: a CPU machine
        return []
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            gpus.append(
                Gpu(
                    index,
                    _text(pynvml.nvmlDeviceGetName(handle)),
                    driver,
                    (int(major), int(minor)),
                    int(memory.total),
                    int(memory.free),
                )
            )
        return gpus
    finally:
        pynvml.nvmlShutdown()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ct2_weights(folder: Path, stored: str | None, compute: str) -> int:
    size = (folder / "model.bin").stat().st_size if (folder / "model.bin").is_file() else 0
    stored_bytes = _CT2_BYTES.get(stored or "float32", 4)
    run_bytes = _CT2_BYTES.get(compute, stored_bytes)  # "auto"/"default": as stored
    return size * run_bytes // stored_bytes


def estimate_vram(
    root: Path,
    env: Mapping[str, str] | None = None,
    only: tuple[str, ...] = ("stt", "translate", "llm", "tts"),
) -> dict[str, int]:
    """Estimated GPU bytes per service on `root` with the settings in `env` (MILO_*)."""
    env = os.environ if env is None else env
    layout, manifest = Layout(root), read_manifest(root)
    stt_q = manifest.get("stt", {}).get("quantization")
    mt_q = manifest.get("translate", {}).get("quantization")
    out = {
        "stt": CONTEXT_BYTES
        + CT2_CACHE_BYTES
        + _ct2_weights(layout.stt, stt_q, env.get("MILO_STT_COMPUTE_TYPE", "int8_float16")),
        "translate": CONTEXT_BYTES
        + CT2_CACHE_BYTES
        + _ct2_weights(
            layout.translate, mt_q, env.get("MILO_TRANSLATE_COMPUTE_TYPE", "int8_float16")
        ),
        "llm": CONTEXT_BYTES + LLM_BUFFERS_BYTES + _llm_bytes(layout.llm, env),
        "tts": CONTEXT_BYTES + TTS_ACTIVATION_BYTES + _tts_bytes(layout.tts, env),
    }
    return {name: out[name] for name in only}


def kv_cache_bytes(metadata: Mapping[str, Any], tokens: int) -> int:
    """f16 K and V for `tokens` positions, from the GGUF's architecture metadata."""
    arch = metadata.get("general.architecture", "llama")
    layers = int(metadata.get(f"{arch}.block_count", 0))
    heads = int(metadata.get(f"{arch}.attention.head_count", 1)) or 1
    kv_heads = int(metadata.get(f"{arch}.attention.head_count_kv", heads))
    head_size = int(metadata.get(f"{arch}.attention.key_length", 0)) or (
        int(metadata.get(f"{arch}.embedding_length", 0)) // heads
    )
    return 2 * layers * kv_heads * head_size * 2 * tokens


def _llm_bytes(path: Path, env: Mapping[str, str]) -> int:
    from services.doctor.models import gguf_metadata

    if not path.is_file():
        return 0
    try:
        metadata = gguf_metadata(path)
    except Exception:  # reported by the model checks
        return path.stat().st_size
    context = int(env.get("MILO_LLM_CONTEXT_TOKENS", "4096"))
    parallel = int(env.get("MILO_LLM_PARALLEL_SEQUENCES", "1"))
    gpu_layers = int(env.get("MILO_LLM_GPU_LAYERS", "-1"))
    arch = metadata.get("general.architecture", "llama")
    layers = int(metadata.get(f"{arch}.block_count", 1)) or 1
    share = 1.0 if gpu_layers < 0 else min(gpu_layers, layers) / layers
    return int(path.stat().st_size * share) + kv_cache_bytes(metadata, context * parallel)


def _tts_bytes(folder: Path, env: Mapping[str, str]) -> int:
    files = list(folder.glob("*.safetensors"))
    size = sum(f.stat().st_size for f in files)
    dtype = env.get("MILO_TTS_DTYPE", "auto")
    return size // 2 if dtype in ("auto", "float16") else size  # stored as float32


def check_gpu(
    root: Path,
    gpus: list[Gpu] | None = None,
    env: Mapping[str, str] | None = None,
    only: tuple[str, ...] = ("stt", "translate", "llm", "tts"),
) -> list[Finding]:
    """Which GPU, its driver and compute capability, and whether the models fit (`only`:
    one container checks its own model against what the others left free)."""
    gpus = probe_gpus() if gpus is None else gpus
    env = os.environ if env is None else env
    wants_cuda = [
        k for k, v in env.items() if k.startswith("MILO_") and k.endswith("_DEVICE") and v == "cuda"
    ]
    if not gpus:
        if wants_cuda:
            return [
                fail(
                    "gpu",
                    f"no NVIDIA GPU is visible but {', '.join(sorted(wants_cuda))} asks for cuda",
                    "install the driver (under WSL2: on Windows) and the "
                    "NVIDIA Container Toolkit, or set the device to cpu",
                )
            ]
        return [ok("gpu", "no NVIDIA GPU visible: every model runs on the CPU")]
    gpu = gpus[0]
    findings = [
        ok(
            "gpu",
            f"{gpu.name}, driver {gpu.driver}, compute capability "
            f"{gpu.capability[0]}.{gpu.capability[1]}, {gpu.free / GIB:.1f} of "
            f"{gpu.total / GIB:.1f} GiB free",
        )
    ]
    if gpu.capability < (7, 0):
        findings.append(
            warn(
                "gpu",
                "compute capability below 7.0: no fast float16 or int8 kernels",
                "set compute types to float32",
            )
        )
    need = estimate_vram(root, env, only)
    total = sum(need.values())
    parts = ", ".join(f"{k} {v / GIB:.1f}" for k, v in need.items())
    what = "the four models" if len(need) == 4 else " and ".join(need)
    if total > gpu.free:
        findings.append(
            fail(
                "gpu",
                f"{what} need about {total / GIB:.1f} GiB ({parts}) "
                f"but {gpu.free / GIB:.1f} GiB is free",
                "lower MILO_LLM_CONTEXT_TOKENS or MILO_LLM_PARALLEL_SEQUENCES, set "
                "MILO_LLM_GPU_LAYERS to keep some layers on the CPU, or use int8 "
                "compute types (deploy/README.md, VRAM budget)",
            )
        )
    else:
        findings.append(
            ok(
                "gpu",
                f"{what} fit: about {total / GIB:.1f} GiB ({parts}) "
                f"of {gpu.free / GIB:.1f} GiB free",
            )
        )
    return findings
