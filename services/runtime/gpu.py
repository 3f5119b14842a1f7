"""GPU memory as Prometheus metrics, read when /metrics is scraped (NVML, no CUDA context).

    milo_gpu_memory_used_bytes{service,gpu}     memory in use on the card, by every process
    milo_gpu_memory_total_bytes{service,gpu}    the card's memory
    milo_gpu_memory_process_bytes{service,gpu}  this process's share, where NVML can see it
                                                (not inside most containers: other PID space)

Nothing is exported where there is no NVIDIA driver (a CPU machine): the collector is
silent, never an error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


def _nvml() -> Any | None:
    try:
        import pynvml  # from the nvidia-ml-py package

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # no package, no driver, no device: nothing to report
        return None


class GpuMemoryCollector(Collector):
    """A Prometheus collector reading GPU memory through NVML at each scrape, labelled with
    `service` and the GPU index; it yields nothing where NVML is unavailable."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._nvml = _nvml()
        if self._nvml is not None:
            log.info("GPU memory metrics from NVML (%d device(s))", self._nvml.nvmlDeviceGetCount())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The three memory gauges (bytes), one sample per GPU; nothing without NVML."""
        if self._nvml is None:
            return
        labels = ["service", "gpu"]
        used = GaugeMetricFamily("milo_gpu_memory_used_bytes", "GPU memory in use", labels=labels)
        total = GaugeMetricFamily("milo_gpu_memory_total_bytes", "GPU memory", labels=labels)
        mine = GaugeMetricFamily(
            "milo_gpu_memory_process_bytes", "GPU memory used by this process", labels=labels
        )
        for index in range(self._nvml.nvmlDeviceGetCount()):
            handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
            info = self._nvml.nvmlDeviceGetMemoryInfo(handle)
            gpu = str(index)
            used.add_metric([self.service, gpu], info.used)
            total.add_metric([self.service, gpu], info.total)
            for proc in self._nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid == os.getpid() and proc.usedGpuMemory is not None:
                    mine.add_metric([self.service, gpu], proc.usedGpuMemory)
        yield from (used, total, mine)
