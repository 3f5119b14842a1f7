"""Tier 1: GPU memory metrics from NVML (a stand-in NVML here: no GPU on CI machines)."""

from __future__ import annotations

import os
import sys
import types

from services.runtime import gpu


def fake_nvml(fail: bool = False) -> types.ModuleType:
    nvml = types.ModuleType("pynvml")

    def init() -> None:
        if fail:
            raise RuntimeError("NVML Shared Library Not Found")

    nvml.nvmlInit = init
    nvml.nvmlDeviceGetCount = lambda: 1
    nvml.nvmlDeviceGetHandleByIndex = lambda i: f"gpu{i}"
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=6 << 30, total=16 << 30)
    nvml.nvmlDeviceGetComputeRunningProcesses = lambda h: [
        types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=2 << 30),
        types.SimpleNamespace(pid=1, usedGpuMemory=4 << 30),
    ]
    return nvml


def samples(collector: gpu.GpuMemoryCollector) -> dict[str, float]:
    return {
        f"{m.name}{{{s.labels['gpu']}}}": s.value for m in collector.collect() for s in m.samples
    }


def test_card_and_process_memory_are_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml())
    got = samples(gpu.GpuMemoryCollector("tts"))
    assert got == {
        "milo_gpu_memory_used_bytes{0}": 6 << 30,
        "milo_gpu_memory_total_bytes{0}": 16 << 30,
        "milo_gpu_memory_process_bytes{0}": 2 << 30,
    }


def test_no_driver_means_no_metrics_and_no_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(fail=True))
    assert samples(gpu.GpuMemoryCollector("tts")) == {}
