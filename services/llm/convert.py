"""Protobuf <-> domain types, and the checks on a Chat request. Bad input raises
InvalidArgument with a message that says what to fix; unset optional fields take the server
defaults."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from milo.llm.v1 import llm_pb2
from services.llm.core import LlmCore
from services.llm.domain import (
    ChatDone,
    ChatMessage,
    ChatRequest,
    Defaults,
    FinishReason,
    Role,
    Sampling,
)
from services.runtime.errors import InvalidArgument

MAX_MESSAGES = 1000
MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 200

_ROLES = {
    llm_pb2.ROLE_SYSTEM: Role.SYSTEM,
    llm_pb2.ROLE_USER: Role.USER,
    llm_pb2.ROLE_ASSISTANT: Role.ASSISTANT,
}
_FINISH = {
    FinishReason.STOP: llm_pb2.FINISH_REASON_STOP,
    FinishReason.LENGTH: llm_pb2.FINISH_REASON_LENGTH,
    FinishReason.CANCELLED: llm_pb2.FINISH_REASON_CANCELLED,
}


def chat_request(request: llm_pb2.ChatRequest, defaults: Defaults) -> ChatRequest:
    """The domain request for a Chat request, with the server's defaults for unset fields; raises
    InvalidArgument (saying what to fix) for bad messages or sampling values."""
    messages = _messages(request.messages, defaults.system_prompt)
    sampling = _sampling(request.sampling, defaults)
    allow_cloud = request.allow_cloud if request.HasField("allow_cloud") else True
    return ChatRequest(messages=messages, sampling=sampling, allow_cloud=allow_cloud)


def _messages(items: list[llm_pb2.Message], system_prompt: str) -> tuple[ChatMessage, ...]:
    if not items:
        raise InvalidArgument("messages is empty: send at least one user message")
    if len(items) > MAX_MESSAGES:
        raise InvalidArgument(f"{len(items)} messages: at most {MAX_MESSAGES} are accepted")
    out = []
    for i, item in enumerate(items):
        role = _ROLES.get(item.role)
        if role is None:
            raise InvalidArgument(
                f"messages[{i}].role is {_role_name(item.role)}: use ROLE_USER, ROLE_ASSISTANT, "
                "or ROLE_SYSTEM (first message only)"
            )
        if role is Role.SYSTEM and i > 0:
            raise InvalidArgument(f"messages[{i}] is a system message: only the first may be")
        out.append(ChatMessage(role, item.content))
    if out[-1].role is not Role.USER:
        raise InvalidArgument("the last message must be the user's (ROLE_USER)")
    if not out[-1].content.strip():
        raise InvalidArgument("the last user message is empty")
    if out[0].role is not Role.SYSTEM:
        out.insert(0, ChatMessage(Role.SYSTEM, system_prompt))
    return tuple(out)


def _role_name(value: int) -> str:
    try:
        return llm_pb2.Role.Name(value)  # type: ignore[arg-type]
    except ValueError:
        return f"{value} (unknown)"


def _sampling(options: llm_pb2.SamplingOptions, defaults: Defaults) -> Sampling:
    base, out = defaults.sampling, dict[str, Any]()
    if options.HasField("temperature"):
        out["temperature"] = _in_range("temperature", options.temperature, 0.0, 2.0)
    if options.HasField("top_p"):
        out["top_p"] = _in_range("top_p", options.top_p, 0.0, 1.0, low_open=True)
    if options.HasField("top_k"):
        out["top_k"] = options.top_k
    if options.HasField("repeat_penalty"):
        out["repeat_penalty"] = _in_range("repeat_penalty", options.repeat_penalty, 1.0, 2.0)
    if options.HasField("max_tokens"):
        limit = defaults.context_tokens - 1
        if not 1 <= options.max_tokens <= limit:
            raise InvalidArgument(
                f"sampling.max_tokens is {options.max_tokens}: it must be "
                f"in [1, {limit}] (the context is {defaults.context_tokens})"
            )
        out["max_tokens"] = options.max_tokens
    if options.HasField("seed"):
        out["seed"] = options.seed
    stops = _stops(list(options.stop))
    return replace(base, stop=tuple(dict.fromkeys((*base.stop, *stops))), **out)


def _in_range(name: str, value: float, low: float, high: float, low_open: bool = False) -> float:
    ok = math.isfinite(value) and (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise InvalidArgument(
            f"sampling.{name} is {value:g}: it must be in {bracket}{low:g}, {high:g}]"
        )
    return value


def _stops(stops: list[str]) -> list[str]:
    if len(stops) > MAX_STOP_STRINGS:
        raise InvalidArgument(f"{len(stops)} stop strings: at most {MAX_STOP_STRINGS}")
    for i, stop in enumerate(stops):
        if not stop or len(stop) > MAX_STOP_CHARS:
            raise InvalidArgument(f"sampling.stop[{i}] must have 1 to {MAX_STOP_CHARS} characters")
    return stops


def sampling_options(sampling: Sampling) -> llm_pb2.SamplingOptions:
    """The server defaults as Describe shows them."""
    options = llm_pb2.SamplingOptions(
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        repeat_penalty=sampling.repeat_penalty,
        max_tokens=sampling.max_tokens,
        stop=list(sampling.stop),
    )
    if sampling.seed is not None:
        options.seed = sampling.seed
    return options


def delta(text: str) -> llm_pb2.ChatResponse:
    """A response carrying one piece of reply text."""
    return llm_pb2.ChatResponse(delta=llm_pb2.ChatDelta(text=text))


def done(result: ChatDone) -> llm_pb2.ChatResponse:
    """The last response of a reply: finish reason, token usage, timings and which model
    answered."""
    return llm_pb2.ChatResponse(
        done=llm_pb2.ChatDone(
            finish_reason=_FINISH[result.reason],
            usage=llm_pb2.Usage(
                prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens
            ),
            time_to_first_token_ms=result.time_to_first_token_ms,
            tokens_per_second=result.tokens_per_second,
            queue_ms=result.queue_ms,
            trimmed_messages=result.trimmed_messages,
            backend=result.backend,
            model_id=result.model_id,
        )
    )


def describe(core: LlmCore) -> llm_pb2.DescribeResponse:
    """The model, its context, the server defaults, the queue and the cloud model."""
    engine, defaults, cloud = core.engine, core.defaults, core.cloud
    return llm_pb2.DescribeResponse(
        model_id=engine.model_id,
        context_tokens=engine.context_tokens,
        default_max_tokens=defaults.sampling.max_tokens,
        default_system_prompt=defaults.system_prompt,
        cloud_enabled=cloud is not None,
        cloud_model=cloud.model if cloud is not None else "",
        max_queue=core.queue.max_queue,
        device=engine.device,
        default_sampling=sampling_options(defaults.sampling),
    )
