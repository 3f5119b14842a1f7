"""The local model: a GGUF chat model on llama.cpp through llama-cpp-python.

The prompt is made with the chat template stored in the GGUF (llama-cpp-python's Jinja2
formatter, as its own `create_chat_completion` does). Generation is driven token by token
with `Llama.generate`, so that the cancel flag is checked between tokens, tokens are
counted exactly, and text is assembled once per token (see `text.ReplyText`).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from services.llm.domain import ChatMessage, Event, Finish, FinishReason, Piece, Role, Sampling
from services.llm.engine import TemplateError
from services.llm.text import ReplyText

log = logging.getLogger(__name__)

MIN_P = 0.05  # llama-cpp-python's default, kept so results match create_chat_completion


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
    """One llama.cpp context; one generation at a time (a lock makes sure of it)."""

    def __init__(
        self,
        model_path: Path,
        context_tokens: int = 4096,
        gpu_layers: int = -1,
        threads: int | None = None,
        model_id: str | None = None,
        omp_wait_policy: str | None = None,
    ) -> None:
        self.model_path = model_path
        self.context_tokens = context_tokens
        self.gpu_layers = gpu_layers
        self.threads = threads
        self.omp_wait_policy = omp_wait_policy  # None: leave OMP_WAIT_POLICY alone
        self._configured_id = model_id
        self.model_id = model_id or model_path.stem
        self.device = "cpu"
        self._llm: Any = None
        self._lib: Any = None
        self._format: Any = None
        self._system_in_user = False  # the template has no system role (Mistral v0.1/v0.2)
        self._lock = threading.Lock()

    def load(self) -> None:
        lib = self._lib = _import_llama_cpp(self.omp_wait_policy)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"no GGUF model at {self.model_path}")
        start = time.monotonic()
        self._llm = lib.Llama(
            model_path=str(self.model_path), n_ctx=self.context_tokens,
            n_gpu_layers=self.gpu_layers, n_threads=self.threads, verbose=False,
        )  # fmt: skip
        self._format = self._chat_formatter()
        self._system_in_user = not self._template_takes_system()
        if self._system_in_user:
            log.warning("the chat template refuses system messages: the system prompt goes "
                        "before the first user message instead")
        name = self._llm.metadata.get("general.name")
        self.model_id = self._configured_id or name or self.model_path.stem
        self.device = self._device()
        log.info("loaded %s (%s) on %s, context %d tokens, in %.2fs", self.model_id,
                 self.model_path, self.device, self.context_tokens, time.monotonic() - start)
        self._warm_up()

    def _chat_formatter(self) -> Any:
        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise RuntimeError(f"{self.model_path} has no chat template (tokenizer.chat_template)")
        model = self._llm._model  # llama-cpp-python offers no public accessor for token texts
        return self._lib.llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(self._llm.token_eos()),
            bos_token=model.token_get_text(self._llm.token_bos()),
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
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self._prompt(messages))

    def _prompt(self, messages: Sequence[ChatMessage]) -> list[int]:
        try:
            formatted = self._format(messages=self._template_messages(messages))
        except Exception as exc:  # jinja2 errors and the template's raise_exception
            raise TemplateError(str(exc)) from exc
        return list(self._llm.tokenize(
            formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True
        ))  # fmt: skip

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
        with self._lock:
            if self._llm is None:
                raise RuntimeError("the model is not loaded")
            prompt = self._prompt(messages)
            if cancel.is_set():
                yield Finish(FinishReason.CANCELLED, len(prompt), 0)
                return
            yield from self._decode(prompt, sampling, cancel)

    def _decode(self, prompt: list[int], sampling: Sampling, cancel: threading.Event
                ) -> Iterator[Event]:
        llm, text = self._llm, ReplyText(sampling.stop)
        budget = min(sampling.max_tokens, self.context_tokens - len(prompt))
        llm.set_seed(sampling.seed % 2**32 if sampling.seed is not None else random.getrandbits(32))
        tokens = llm.generate(
            prompt, top_k=sampling.top_k, top_p=sampling.top_p, min_p=MIN_P,
            temp=sampling.temperature, repeat_penalty=sampling.repeat_penalty,
        )  # fmt: skip
        count, reason = 0, FinishReason.LENGTH
        try:
            for token in tokens if budget > 0 else ():
                if self._lib.llama_vocab_is_eog(llm._model.vocab, token):
                    reason = FinishReason.STOP
                    break
                count += 1
                piece = text.feed(llm.detokenize([token]))
                if piece:
                    yield Piece(piece)
                if text.stopped:
                    reason = FinishReason.STOP
                    break
                if count >= budget:
                    break
                if cancel.is_set():  # checked before the next token is computed
                    reason = FinishReason.CANCELLED
                    break
        finally:
            tokens.close()
        tail = text.finish() if reason is not FinishReason.CANCELLED else ""
        if tail:
            yield Piece(tail)
        yield Finish(reason, len(prompt), count)
