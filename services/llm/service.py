"""The LLM service as the runtime hosts it: builds the engine, the model queue, the optional
cloud client and the servicer; loads and warms up the model; releases it all on close."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future

import grpc

from milo.llm.v1 import llm_pb2, llm_pb2_grpc
from services.llm import convert, metrics
from services.llm.chat import ChatRunner, CloudModel
from services.llm.config import LlmSettings
from services.llm.domain import Sampling
from services.llm.engine import ChatEngine
from services.llm.llama_engine import LlamaEngine
from services.llm.servicer import LlmServicer
from services.runtime.admission import Admission

log = logging.getLogger(__name__)


def _on_queue_change(active: int, queued: int) -> None:
    metrics.QUEUE_DEPTH.set(queued)


class LlmService:
    name = "llm"
    service_names = (llm_pb2.DESCRIPTOR.services_by_name["Llm"].full_name,)

    def __init__(
        self,
        settings: LlmSettings,
        engine: ChatEngine | None = None,
        cloud: CloudModel | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine or LlamaEngine(
            settings.gguf_path, settings.context_tokens, settings.gpu_layers,
            settings.threads, settings.model_id, settings.omp_wait_policy,
            settings.parallel, settings.prefill_chunk_tokens,
        )  # fmt: skip
        self._cloud = cloud
        parallel = getattr(self.engine, "parallel", 1)  # replies the engine makes at once
        self.queue = Admission(parallel, settings.max_queue, on_change=_on_queue_change)
        self.runner: ChatRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def model_id(self) -> str:
        return self.settings.model_id or self.engine.model_id

    @property
    def device(self) -> str:
        return self.engine.device

    def register(self, server: grpc.aio.Server) -> None:
        self._loop = asyncio.get_running_loop()
        self.runner = ChatRunner(self.engine, self.queue, self._cloud or self._make_cloud(),
                                 self.settings.cloud_first_token_ms / 1000.0)
        defaults = convert.Defaults(self.default_sampling(), self.settings.system_prompt,
                                    self.engine.context_tokens)
        servicer = LlmServicer(self.runner, defaults, self.describe)
        llm_pb2_grpc.add_LlmServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]

    def _make_cloud(self) -> CloudModel | None:
        s = self.settings
        if not s.cloud_enabled or s.cloud_api_key is None or s.cloud_model is None:
            return None
        from services.llm.cloud import AnthropicClient

        log.info("cloud model %s at %s is tried first (budget %d ms to first text)",
                 s.cloud_model, s.cloud_base_url, s.cloud_first_token_ms)
        return AnthropicClient(s.cloud_base_url, s.cloud_api_key.get_secret_value(),
                               s.cloud_model, read_timeout_s=s.cloud_read_timeout_s)

    def default_sampling(self) -> Sampling:
        s = self.settings
        return Sampling(temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                        repeat_penalty=s.repeat_penalty, max_tokens=s.max_tokens,
                        stop=tuple(s.stop))

    def describe(self) -> llm_pb2.DescribeResponse:
        cloud = self.runner.cloud if self.runner else None
        return llm_pb2.DescribeResponse(
            model_id=self.model_id,
            context_tokens=self.engine.context_tokens,
            default_max_tokens=self.settings.max_tokens,
            default_system_prompt=self.settings.system_prompt,
            cloud_enabled=cloud is not None,
            cloud_model=cloud.model if cloud is not None else "",
            max_queue=self.settings.max_queue,
            device=self.device,
            default_sampling=convert.sampling_options(self.default_sampling()),
        )

    def load(self) -> None:
        self.engine.load()

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
            cloud = self.runner.cloud
            if cloud is not None and self._loop is not None and self._loop.is_running():
                closing: Future[None] = asyncio.run_coroutine_threadsafe(cloud.aclose(), self._loop)
                closing.result(timeout=5)
        self.engine.close()
