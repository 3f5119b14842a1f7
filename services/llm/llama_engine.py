"""The local model: a GGUF chat model on llama.cpp through llama-cpp-python, with
continuous batching.

One llama.cpp context holds `parallel` sequences of `context_tokens` each; replies are
generated together, a new request joining the running batch at the next step and a
finished or cancelled one leaving at once (see `llama_batch.BatchScheduler`). `generate`
may be called from several threads at once: each call blocks on its own reply only.

The prompt is made with the chat template stored in the GGUF (llama-cpp-python's Jinja2
formatter, as its own `create_chat_completion` does). Tokens are sampled one by one with a
sampler chain per request, so that the cancel flag is checked between tokens, tokens are
counted exactly, and text is assembled once per token (see `text.ReplyText`).
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from services.llm.domain import ChatMessage, Event, Finish, FinishReason, Role, Sampling
from services.llm.engine import TemplateError
from services.llm.llama_batch import BatchScheduler, Job

log = logging.getLogger(__name__)


def _import_llama_cpp(omp_wait_policy: str | None) -> Any:
    if omp_wait_policy:  # read once, when llama.cpp's OpenMP runtime loads with it
        os.environ.setdefault("OMP_WAIT_POLICY", omp_wait_policy.upper())
    try:
        import llama_cpp
    except ImportError as exc:
        raise RuntimeError(
            "the LLM service needs llama-cpp-python: pip install 'milo[llm]'"
        ) from exc
    return llama_cpp


class LlamaEngine:
    """One llama.cpp context, `parallel` replies generated at once (continuous batching).

    `context_tokens` is the context of each sequence (prompt and reply together); the KV
    cache holds `parallel * context_tokens` tokens. `prefill_chunk` bounds the prompt
    tokens evaluated per step, so that a long prompt does not stall the others' tokens.
    """

    def __init__(
        self,
        model_path: Path,
        context_tokens: int = 2048,
        gpu_layers: int = -1,
        threads: int | None = None,
        model_id: str | None = None,
        omp_wait_policy: str | None = None,
        parallel: int = 8,
        prefill_chunk: int = 256,
    ) -> None:
        self.model_path = model_path
        self.context_tokens = context_tokens
        self.gpu_layers = gpu_layers
        self.threads = threads
        self.omp_wait_policy = omp_wait_policy  # None: leave OMP_WAIT_POLICY alone
        self.parallel = parallel
        self.prefill_chunk = prefill_chunk
        self._configured_id = model_id
        self.model_id = model_id or model_path.stem
        self.device = "cpu"
        self._lib: Any = None
        self._model: Any = None
        self._ctx: Any = None
        self._scheduler: BatchScheduler | None = None
        self._format: Any = None
        self._system_in_user = False  # the template has no system role (Mistral v0.1/v0.2)
        self._lock = threading.Lock()  # load and close

    def load(self) -> None:
        """Open the GGUF model and its llama.cpp context, read its chat template, warm up
        (blocking). Raises FileNotFoundError without the file, RuntimeError without
        llama-cpp-python."""
        lib = self._lib = _import_llama_cpp(self.omp_wait_policy)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"no GGUF model at {self.model_path}")
        start = time.monotonic()
        with self._lock:
            self._open(lib)
        self._format = self._chat_formatter()
        self._system_in_user = not self._template_takes_system()
        if self._system_in_user:
            log.warning(
                "the chat template refuses system messages: the system prompt goes "
                "before the first user message instead"
            )
        name = self._model.metadata().get("general.name")
        self.model_id = self._configured_id or name or self.model_path.stem
        self.device = self._device()
        log.info(
            "loaded %s (%s) on %s, %d sequences of %d tokens, in %.2fs",
            self.model_id,
            self.model_path,
            self.device,
            self.parallel,
            self.context_tokens,
            time.monotonic() - start,
        )
        self._warm_up()

    def _open(self, lib: Any) -> None:
        from llama_cpp import _internals as internals
        from llama_cpp import _logger

        _logger.set_verbose(False)  # llama.cpp's own log: errors only, as Llama(verbose=False)
        lib.llama_backend_init()
        mparams = lib.llama_model_default_params()
        mparams.n_gpu_layers = 0x7FFFFFFF if self.gpu_layers == -1 else self.gpu_layers
        self._model = internals.LlamaModel(
            path_model=str(self.model_path), params=mparams, verbose=False
        )
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = self.parallel * self.context_tokens
        cparams.n_seq_max = self.parallel
        cparams.kv_unified = True  # one cache, prefixes shared (see llama_batch)
        cparams.n_batch = cparams.n_ubatch = self.prefill_chunk + self.parallel
        if self.threads:
            cparams.n_threads = cparams.n_threads_batch = self.threads
        self._ctx = internals.LlamaContext(model=self._model, params=cparams, verbose=False)
        self._scheduler = BatchScheduler(
            lib, internals, self._model, self._ctx, self.parallel, self.prefill_chunk
        )

    def _chat_formatter(self) -> Any:
        template = self._model.metadata().get("tokenizer.chat_template")
        if not template:
            raise RuntimeError(f"{self.model_path} has no chat template (tokenizer.chat_template)")
        model = self._model
        return self._lib.llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(model.token_eos()),
            bos_token=model.token_get_text(model.token_bos()),
        )

    def _template_takes_system(self) -> bool:
        probe = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
        try:
            self._format(messages=probe)
        except Exception:  # jinja2 errors and the template's raise_exception
            return False
        return True

    def _device(self) -> str:
        if self.gpu_layers == 0 or not self._lib.llama_supports_gpu_offload():
            return "cpu"
        info = self._lib.llama_print_system_info() or b""
        return "cuda" if b"CUDA" in info else "gpu"

    def _warm_up(self) -> None:
        start = time.monotonic()
        hello = (ChatMessage(Role.USER, "Bonjour"),)
        for _ in self.generate(hello, Sampling(temperature=0, max_tokens=2), threading.Event()):
            pass
        log.info("warm-up took %.2fs", time.monotonic() - start)

    def close(self) -> None:
        """Cancel the replies in flight, then free the context and the model."""
        with self._lock:
            if self._scheduler is not None:
                self._scheduler.close()
                self._scheduler = None
            if self._ctx is not None:
                self._ctx.close()
                self._ctx = None
            if self._model is not None:
                self._model.close()
                self._model = None

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """The prompt's length in tokens once the chat template is applied; raises TemplateError
        when the template refuses the messages."""
        return len(self._prompt(messages))

    def _prompt(self, messages: Sequence[ChatMessage]) -> list[int]:
        try:
            formatted = self._format(messages=self._template_messages(messages))
        except Exception as exc:  # jinja2 errors and the template's raise_exception
            raise TemplateError(str(exc)) from exc
        return list(
            self._model.tokenize(
                formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True
            )
        )

    def _template_messages(self, messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
        out = [m.as_dict() for m in messages]
        if self._system_in_user and len(out) > 1 and out[0]["role"] == "system":
            system = out.pop(0)["content"]
            first = next((m for m in out if m["role"] == "user"), out[0])
            first["content"] = f"{system}\n\n{first['content']}"
        return out

    def generate(
        self, messages: Sequence[ChatMessage], sampling: Sampling, cancel: threading.Event
    ) -> Iterator[Event]:
        """Blocks on this reply only: other threads may generate at the same time."""
        if self._scheduler is None:
            raise RuntimeError("the model is not loaded")
        prompt = self._prompt(messages)
        budget = min(sampling.max_tokens, self.context_tokens - len(prompt))
        if cancel.is_set() or budget <= 0:
            reason = FinishReason.CANCELLED if cancel.is_set() else FinishReason.LENGTH
            yield Finish(reason, len(prompt), 0)
            return
        events: queue.SimpleQueue[Event | BaseException] = queue.SimpleQueue()
        job = self.submit(prompt, sampling, cancel, events.put, budget)
        try:
            while True:
                event = events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Finish):
                    return
        finally:
            job.abandoned = True  # a caller that stops reading frees the sequence

    def submit(
        self,
        prompt: list[int],
        sampling: Sampling,
        cancel: threading.Event,
        emit: Callable[[Event | BaseException], None],
        budget: int,
    ) -> Job:
        """Start a reply to `prompt` (tokens); its events go to `emit`, called on the
        scheduler thread (Pieces, then one Finish, or the exception that failed it)."""
        if self._scheduler is None:
            raise RuntimeError("the model is not loaded")
        seed = sampling.seed % 2**32 if sampling.seed is not None else random.getrandbits(32)
        job = Job(prompt, sampling, seed, budget, cancel, emit)
        self._scheduler.submit(job)
        return job
