"""Tier 3 (in process): LlamaEngine on the demo GGUF, a random-weight llama with a
Mistral-style chat template. Its replies are gibberish, but greedy decoding makes them
repeatable, which is all these tests need."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from services.llm.domain import ChatMessage, Finish, FinishReason, Piece, Role, Sampling
from services.llm.engine import TemplateError
from services.llm.llama_engine import LlamaEngine

GREEDY = Sampling(temperature=0.0, max_tokens=24)
MESSAGES = (ChatMessage(Role.SYSTEM, "Tu es Milo."), ChatMessage(Role.USER, "Manao ahoana?"))


@pytest.fixture(scope="module")
def engine(demo_gguf: Path):
    engine = LlamaEngine(demo_gguf, context_tokens=512, threads=1)  # no idle threads spinning
    engine.load()
    yield engine
    engine.close()


def run(
    engine: LlamaEngine, sampling: Sampling, cancel_after: int | None = None, messages=MESSAGES
) -> tuple[str, Finish]:
    cancel, pieces, finish = threading.Event(), [], None
    for event in engine.generate(messages, sampling, cancel):
        if isinstance(event, Piece):
            pieces.append(event.text)
            if cancel_after is not None and len(pieces) >= cancel_after:
                cancel.set()
        else:
            assert finish is None
            finish = event
    assert finish is not None
    return "".join(pieces), finish


def test_loads_with_the_gguf_name_and_chat_template(engine):
    assert engine.model_id == "milo-demo-llama" and engine.device == "cpu"
    fmt = engine._format(messages=[m.as_dict() for m in MESSAGES])
    assert fmt.prompt == "<s>[INST] Tu es Milo.\n\nManao ahoana? [/INST]"
    assert engine.count_prompt_tokens(MESSAGES) == len(
        engine._model.tokenize(fmt.prompt.encode(), add_bos=False, special=True)
    )


def test_max_tokens_and_usage(engine):
    text, finish = run(engine, GREEDY)
    assert text.strip() and text == text.lstrip()
    assert finish == Finish(FinishReason.LENGTH, engine.count_prompt_tokens(MESSAGES), 24)


def test_greedy_and_seeded_replies_repeat(engine):
    assert run(engine, GREEDY)[0] == run(engine, GREEDY)[0]
    seeded = Sampling(temperature=0.9, max_tokens=24, seed=42)
    assert run(engine, seeded)[0] == run(engine, seeded)[0]


def test_stop_string_cuts_the_reply_before_it(engine):
    full, _ = run(engine, GREEDY)
    stop = full[len(full) // 2 :][:3]  # three characters from the middle of the reply
    cut = full.index(stop)
    text, finish = run(engine, Sampling(temperature=0.0, max_tokens=24, stop=(stop,)))
    assert text == full[:cut]
    assert finish.reason is FinishReason.STOP and finish.completion_tokens < 24


def test_cancel_stops_the_reply(engine):
    """The reply is made on the engine's own thread, which may be a few tokens ahead of this
    reader; test_llm_batching checks that the flag stops it within one token."""
    _, finish = run(engine, Sampling(temperature=0.0, max_tokens=200), cancel_after=1)
    assert finish.reason is FinishReason.CANCELLED
    assert 1 <= finish.completion_tokens < 200


# Mistral-7B-Instruct v0.1's template: no system role, strict alternation.
NO_SYSTEM_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
)


def test_template_without_system_role_gets_the_system_prompt_in_the_first_user_turn(
    demo_gguf: Path,
):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    engine = LlamaEngine(demo_gguf, context_tokens=256, threads=1)
    engine.load()
    try:
        engine._format = Jinja2ChatFormatter(NO_SYSTEM_TEMPLATE, "</s>", "<s>")
        assert not engine._template_takes_system()
        engine._system_in_user = True
        messages = (*MESSAGES, ChatMessage(Role.ASSISTANT, "Tsara"), ChatMessage(Role.USER, "Ary?"))
        prompt = engine._format(messages=engine._template_messages(messages)).prompt
        assert prompt == (
            "<s>[INST] Tu es Milo.\n\nManao ahoana? [/INST]Tsara</s>[INST] Ary? [/INST]"
        )
        assert engine.count_prompt_tokens(messages) > 0  # no TemplateError
    finally:
        engine.close()


def test_template_error_is_typed():
    class Refusing:
        def __call__(self, **kwargs):
            raise ValueError("Conversation roles must alternate user/assistant/user/assistant")

    engine = LlamaEngine(Path("unused.gguf"))
    engine._format = Refusing()
    with pytest.raises(TemplateError, match="must alternate"):
        engine.count_prompt_tokens(MESSAGES)
