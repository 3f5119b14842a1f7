"""The LLM service's composition root: settings -> engine, model queue, optional cloud
client, core and servicer, as one `ModelService` the runtime hosts."""

from __future__ import annotations

import logging
from functools import partial

from milo.llm.v1 import llm_pb2, llm_pb2_grpc
from services.doctor.models import preflight
from services.llm import metrics
from services.llm.config import LlmSettings
from services.llm.core import CloudModel, LlmCore
from services.llm.domain import Defaults, Sampling
from services.llm.engine import ChatEngine
from services.llm.llama_engine import LlamaEngine
from services.llm.servicer import LlmServicer
from services.runtime.admission import Admission
from services.runtime.model_service import ModelService

log = logging.getLogger(__name__)

SERVICE_NAME = llm_pb2.DESCRIPTOR.services_by_name["Llm"].full_name


def _on_queue_change(active: int, queued: int) -> None:
    metrics.QUEUE_DEPTH.set(queued)


def cloud_model(settings: LlmSettings) -> CloudModel | None:
    """The cloud model tried first, when both its key and its model are set."""
    s = settings
    if not s.cloud_enabled or s.cloud_api_key is None or s.cloud_model is None:
        return None
    from services.llm.cloud import AnthropicClient

    log.info(
        "cloud model %s at %s is tried first (budget %d ms to first text)",
        s.cloud_model,
        s.cloud_base_url,
        s.cloud_first_token_ms,
    )
    return AnthropicClient(
        s.cloud_base_url,
        s.cloud_api_key.get_secret_value(),
        s.cloud_model,
        read_timeout_s=s.cloud_read_timeout_s,
    )


def default_sampling(settings: LlmSettings) -> Sampling:
    """The sampling settings a request that sets none gets."""
    s = settings
    return Sampling(
        temperature=s.temperature,
        top_p=s.top_p,
        top_k=s.top_k,
        repeat_penalty=s.repeat_penalty,
        max_tokens=s.max_tokens,
        stop=tuple(s.stop),
    )


def make_service(
    settings: LlmSettings, engine: ChatEngine | None = None, cloud: CloudModel | None = None
) -> ModelService:
    """The LLM service: a llama.cpp engine (or `engine`: tier-2 tests pass a fake), the
    queue in front of it, the cloud model (or `cloud`), the core and the servicer."""
    s = settings
    check = None if engine else partial(preflight, "llm", s.gguf_path)
    engine = engine or LlamaEngine(
        s.gguf_path,
        s.context_tokens,
        s.gpu_layers,
        s.threads,
        s.model_id,
        s.omp_wait_policy,
        s.parallel,
        s.prefill_chunk_tokens,
    )
    parallel = getattr(engine, "parallel", 1)  # replies the engine generates at once
    queue = Admission(parallel, s.max_queue, on_change=_on_queue_change)
    defaults = Defaults(default_sampling(s), s.system_prompt, engine.context_tokens)
    core = LlmCore(
        engine, queue, cloud or cloud_model(s), s.cloud_first_token_ms / 1000.0, defaults
    )
    servicer = LlmServicer(core)
    return ModelService(
        "llm",
        (SERVICE_NAME,),
        core,
        partial(llm_pb2_grpc.add_LlmServicer_to_server, servicer),  # type: ignore[arg-type]
        aclose=core.aclose,
        preflight=check,
    )
