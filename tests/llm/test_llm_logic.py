"""Tier 1: the pure logic of the LLM service (text assembly, context fitting, request
checks, the Messages stream parser, settings)."""

from __future__ import annotations

import os
import random

import pytest
from pydantic import ValidationError

from milo.llm.v1 import llm_pb2
from services.llm import convert
from services.llm.cloud import CloudError, SseEvent, SseParser, _Reply, request_body
from services.llm.config import LlmSettings
from services.llm.context import ContextOverflow, fit_conversation
from services.llm.domain import ChatMessage, Finish, FinishReason, Piece, Role, Sampling
from services.llm.text import ReplyText, stop_prefix_length
from services.runtime.errors import InvalidArgument

S, U, A = Role.SYSTEM, Role.USER, Role.ASSISTANT


def feed_all(text: ReplyText, chunks: list[bytes]) -> list[str]:
    return [text.feed(c) for c in chunks]


# --- text assembly -----------------------------------------------------------------------


def test_reply_text_holds_back_a_split_utf8_character_until_it_is_whole():
    e_acute = "é".encode()
    text = ReplyText()
    assert feed_all(text, [b"caf", e_acute[:1], e_acute[1:] + b" noir"]) == ["caf", "", "é noir"]
    assert text.finish() == ""


def test_reply_text_drops_the_leading_space_of_the_first_token_only():
    text = ReplyText()
    assert feed_all(text, [b" ", b" Bonjour", b" Milo"]) == ["", "Bonjour", " Milo"]


def test_reply_text_cuts_before_a_stop_string_spread_over_tokens():
    text = ReplyText(stop=["User:"])
    out = feed_all(text, [b"Oui.", b" Us", b"er", b": encore"])
    assert out == ["Oui.", " ", "", ""]
    assert text.stopped
    assert "".join(out) + text.finish() == "Oui. "


def test_reply_text_releases_a_false_start_of_a_stop_string():
    text = ReplyText(stop=["###"])
    out = feed_all(text, [b"a #", b"# b"])
    assert out == ["a ", "## b"] and not text.stopped
    held = ReplyText(stop=["###"])
    assert held.feed(b"fin ##") == "fin " and held.finish() == "##"  # released at the end


def test_reply_text_earliest_stop_string_wins():
    text = ReplyText(stop=["bb", "a"])
    assert text.feed(b"xxbba") == "xx" and text.stopped


def test_stop_prefix_length():
    assert stop_prefix_length("hello Us", ["User:"]) == 2
    assert stop_prefix_length("hello", ["User:"]) == 0
    assert stop_prefix_length("ab", ["abc", "bx"]) == 2


# --- context fitting ---------------------------------------------------------------------


def conversation(turns: int) -> list[ChatMessage]:
    out = [ChatMessage(S, "sys")]
    for i in range(turns):
        out += [ChatMessage(U, f"u{i}"), ChatMessage(A, f"a{i}")]
    return [*out, ChatMessage(U, "last")]


def ten_per_message(messages) -> int:
    return 10 * len(messages)


def test_fit_keeps_a_conversation_that_fits():
    messages = conversation(2)
    fitted = fit_conversation(messages, ten_per_message, budget=60)
    assert fitted.messages == tuple(messages) and fitted.dropped == 0
    assert fitted.prompt_tokens == 60


def test_fit_drops_oldest_turns_whole_never_the_system_prompt():
    messages = conversation(3)  # sys, u0 a0 u1 a1 u2 a2, last: 8 messages
    fitted = fit_conversation(messages, ten_per_message, budget=50)
    assert [m.content for m in fitted.messages] == ["sys", "u2", "a2", "last"]
    assert fitted.dropped == 4 and fitted.prompt_tokens == 40


def test_fit_never_starts_the_kept_turns_with_an_assistant_message():
    messages = conversation(2)  # sys u0 a0 u1 a1 last
    fitted = fit_conversation(messages, ten_per_message, budget=50)
    assert [m.content for m in fitted.messages] == ["sys", "u1", "a1", "last"]
    fitted = fit_conversation(messages, ten_per_message, budget=30)
    assert [m.content for m in fitted.messages] == ["sys", "last"]


def linear_fit(messages, count, budget):
    """The obvious way: drop the oldest message (and any assistant messages it leaves at
    the front) until the rest fits."""
    system, turns = list(messages[:1]), list(messages[1:])
    while count(system + turns) > budget and len(turns) > 1:
        turns.pop(0)
        while len(turns) > 1 and turns[0].role is not U:
            turns.pop(0)
    return system + turns


def test_fit_bisects_to_the_same_cut_as_dropping_one_by_one_with_few_counts():
    rng = random.Random(7)
    messages = [ChatMessage(S, "sys")]
    for _ in range(300):  # irregular turns: sometimes several assistant messages in a row
        messages.append(ChatMessage(U if rng.random() < 0.6 else A, "w " * rng.randint(1, 30)))
    messages.append(ChatMessage(U, "last"))
    calls = []

    def words_plus_two(kept) -> int:
        return sum(2 + len(m.content.split()) for m in kept)

    def count(kept) -> int:
        calls.append(1)
        return words_plus_two(kept)

    for budget in (20, 100, 777, 2000, 10_000):
        calls.clear()
        fitted = fit_conversation(messages, count, budget)
        assert len(calls) <= 12  # log2(300) + 3, not one count per dropped message
        assert list(fitted.messages) == linear_fit(messages, words_plus_two, budget)
        assert fitted.dropped == len(messages) - len(fitted.messages)


def test_fit_raises_when_system_prompt_and_last_message_do_not_fit():
    with pytest.raises(ContextOverflow) as err:
        fit_conversation(conversation(1), ten_per_message, budget=15)
    assert err.value.needed_tokens == 20


# --- request checks ----------------------------------------------------------------------

DEFAULTS = convert.Defaults(Sampling(stop=("</s>",)), "Tu es Milo.", context_tokens=512)


def msg(role: int, content: str = "x") -> llm_pb2.Message:
    return llm_pb2.Message(role=role, content=content)  # type: ignore[arg-type]


def test_request_gets_the_default_system_prompt_and_sampling():
    req = convert.chat_request(
        llm_pb2.ChatRequest(messages=[msg(llm_pb2.ROLE_USER, "Salut")]), DEFAULTS
    )
    assert req.messages == (ChatMessage(S, "Tu es Milo."), ChatMessage(U, "Salut"))
    assert req.sampling == DEFAULTS.sampling and req.allow_cloud


def test_request_system_message_replaces_the_default_and_knobs_override():
    options = llm_pb2.SamplingOptions(temperature=0, max_tokens=7, seed=3, stop=["\n"])
    req = convert.chat_request(
        llm_pb2.ChatRequest(
            messages=[msg(llm_pb2.ROLE_SYSTEM, "Sois bref."), msg(llm_pb2.ROLE_USER)],
            sampling=options,
            allow_cloud=False,
        ),
        DEFAULTS,
    )
    assert req.messages[0] == ChatMessage(S, "Sois bref.") and len(req.messages) == 2
    assert req.sampling.temperature == 0 and req.sampling.max_tokens == 7
    assert req.sampling.seed == 3 and req.sampling.stop == ("</s>", "\n")
    assert req.sampling.top_p == DEFAULTS.sampling.top_p
    assert not req.allow_cloud


@pytest.mark.parametrize(
    ("messages", "options", "says"),
    [
        ([], {}, "messages is empty"),
        ([msg(7)], {}, "messages[0].role is 7 (unknown)"),
        ([msg(llm_pb2.ROLE_UNSPECIFIED)], {}, "ROLE_UNSPECIFIED"),
        (
            [msg(llm_pb2.ROLE_USER), msg(llm_pb2.ROLE_SYSTEM), msg(llm_pb2.ROLE_USER)],
            {},
            "messages[1] is a system message",
        ),
        ([msg(llm_pb2.ROLE_USER), msg(llm_pb2.ROLE_ASSISTANT)], {}, "last message must be"),
        ([msg(llm_pb2.ROLE_USER, "  ")], {}, "last user message is empty"),
        ([msg(llm_pb2.ROLE_USER)], {"temperature": 2.5}, "temperature is 2.5"),
        ([msg(llm_pb2.ROLE_USER)], {"temperature": float("nan")}, "temperature is nan"),
        ([msg(llm_pb2.ROLE_USER)], {"top_p": 0.0}, "top_p is 0: it must be in (0, 1]"),
        ([msg(llm_pb2.ROLE_USER)], {"repeat_penalty": 0.5}, "repeat_penalty"),
        ([msg(llm_pb2.ROLE_USER)], {"max_tokens": 0}, "max_tokens is 0"),
        ([msg(llm_pb2.ROLE_USER)], {"max_tokens": 512}, "must be in [1, 511]"),
        ([msg(llm_pb2.ROLE_USER)], {"stop": [""]}, "stop[0]"),
    ],
)
def test_bad_requests_say_what_is_wrong(messages, options, says):
    request = llm_pb2.ChatRequest(messages=messages, sampling=llm_pb2.SamplingOptions(**options))
    with pytest.raises(InvalidArgument) as err:
        convert.chat_request(request, DEFAULTS)
    assert says in err.value.message


# --- cloud stream ------------------------------------------------------------------------


def test_sse_parser_events_comments_and_multiline_data():
    parser = SseParser()
    lines = [": ping", "event: a", 'data: {"x":', "data: 1}", "", "", "data: y", ""]
    events = [e for e in map(parser.feed, lines) if e is not None]
    assert events == [SseEvent("a", '{"x":\n1}'), SseEvent("message", "y")]


def test_messages_stream_folds_into_pieces_and_finish():
    reply = _Reply()
    got = [
        reply.on("message_start", {"message": {"usage": {"input_tokens": 12}}}),
        reply.on("content_block_start", {"content_block": {"type": "text", "text": ""}}),
        reply.on("content_block_delta", {"delta": {"type": "text_delta", "text": "Bon"}}),
        reply.on("ping", {}),
        reply.on("content_block_delta", {"delta": {"type": "text_delta", "text": "jour"}}),
        reply.on(
            "message_delta", {"delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 2}}
        ),
        reply.on("message_stop", {}),
    ]
    assert [g for g in got if g is not None] == [
        Piece("Bon"),
        Piece("jour"),
        Finish(FinishReason.LENGTH, 12, 2),
    ]
    with pytest.raises(CloudError, match="overloaded_error: busy"):
        _Reply().on("error", {"error": {"type": "overloaded_error", "message": "busy"}})


def test_cloud_request_body():
    messages = [ChatMessage(S, "Sois bref."), ChatMessage(U, "Salut")]
    body = request_body(
        "claude-x", messages, Sampling(temperature=1.5, max_tokens=9, stop=("\n\n",))
    )
    assert body == {
        "model": "claude-x",
        "max_tokens": 9,
        "stream": True,
        "temperature": 1.0,
        "system": "Sois bref.",
        "stop_sequences": ["\n\n"],
        "messages": [{"role": "user", "content": "Salut"}],
    }


# --- settings ----------------------------------------------------------------------------


def test_settings_from_env_and_cloud_needs_key_and_model(monkeypatch, tmp_path):
    monkeypatch.setenv("MILO_LLM_MODEL_PATH", str(tmp_path))
    monkeypatch.setenv("MILO_LLM_CLOUD_MODEL", "claude-haiku-4-5")
    settings = LlmSettings()
    assert settings.gguf_path == tmp_path / "model.gguf"
    assert settings.port == 50053 and not settings.cloud_enabled
    monkeypatch.setenv("MILO_LLM_CLOUD_API_KEY", "sk-test")
    settings = LlmSettings()
    assert settings.cloud_enabled and "sk-test" not in repr(settings)


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": 3},
        {"top_p": 0},
        {"context_tokens": 10},
        {"stop": [""]},
        {"cloud_base_url": "ftp://x"},
        {"context_tokens": 512, "max_tokens": 512},
    ],
)
def test_settings_range_checks(bad):
    with pytest.raises(ValidationError):
        LlmSettings(**bad)


def test_omp_wait_policy_is_a_default_the_environment_overrides(monkeypatch):
    from services.llm.llama_engine import _import_llama_cpp

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    _import_llama_cpp("passive")
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    _import_llama_cpp("passive")
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    assert LlmSettings().omp_wait_policy == "passive"
