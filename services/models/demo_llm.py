"""Demo LLM: a random-weight llama GGUF written with the `gguf` package.

Small dims (n_embd 512, 4 layers, 8 heads: about 14M parameters, a few ms a token on a
CPU, so replies stream at a pace like a 7B model's on a GPU), a real SentencePiece "llama"
tokenizer trained on the shipped corpus (<unk>, <s>, </s>, the 256 byte-fallback tokens
<0x00>..<0xFF>, then word pieces), and a Mistral-style `[INST]` chat template, so
llama-cpp-python loads it like Mistral-7B-Instruct and its chat handler formats prompts
with the template.

The output rows of <unk>, <s>, </s> and the byte tokens are zero, so their logit is 0 while
word pieces get logits of a few units either side: generation almost never stops early or
emits half a UTF-8 character, and a streamed reply runs to `max_tokens` with visible text.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from services.models._util import optional, require
from services.models.demo_corpus import train_sentencepiece
from services.models.layout import LLM_FILE

logger = logging.getLogger(__name__)

DEMO_ID = "milo-demo/llama-tiny-random"
SEED = 0
VOCAB_SIZE = 1024
# Big enough that a token costs a few ms on a CPU, like a 7B model on a GPU: the demo then
# shows streaming (first audio before the reply is written), not an instant reply.
N_EMBD, N_LAYER, N_HEAD, N_FF, N_CTX = 512, 4, 8, 1408, 4096
OUTPUT_SCALE = 0.5  # std of the output weights: word-piece logits of a few units

# Mistral-Instruct style; a system message is put before the first user turn.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% set system = namespace(text='') %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set system.text = message['content'] + '\\n\\n' %}"
    "{% elif message['role'] == 'user' %}"
    "{{ '[INST] ' + system.text + message['content'] + ' [/INST]' }}"
    "{% set system.text = '' %}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}"
    "{% endif %}{% endfor %}"
)


def build_llm(dest: Path) -> dict[str, Any]:
    """Write llm/model.gguf into the folder `dest`; returns its manifest entry."""
    dest.mkdir(parents=True, exist_ok=True)
    gguf_path = dest / LLM_FILE
    with tempfile.TemporaryDirectory(prefix="milo-demo-llm-") as tmp:
        vocab = _vocabulary(
            train_sentencepiece(Path(tmp) / "llama.model", VOCAB_SIZE, byte_fallback=True)
        )
    write_gguf(gguf_path, vocab)
    if optional("llama_cpp") is None:
        logger.info("llama-cpp-python is not installed: skipping the demo LLM load check")
    else:
        logger.info("demo llm ok: %r", verify_llm(gguf_path)[:60])
    return {
        "id": DEMO_ID,
        "source": "random weights, llama architecture, SentencePiece trained on the demo corpus",
        "chat_template": "mistral-instruct",
    }


def _vocabulary(spm_model: Path) -> dict[str, list[Any]]:
    """Tokens, scores and llama.cpp token types from a SentencePiece model."""
    gguf = require("gguf")
    sp = require("sentencepiece").SentencePieceProcessor(model_file=str(spm_model))
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i).encode("utf-8"))
        scores.append(float(sp.get_score(i)))
        if sp.is_unknown(i):
            types.append(gguf.TokenType.UNKNOWN)
        elif sp.is_control(i):
            types.append(gguf.TokenType.CONTROL)
        elif sp.is_byte(i):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
    return {"tokens": tokens, "scores": scores, "types": types}


def write_gguf(path: Path, vocab: dict[str, list[Any]]) -> Path:
    """Write a random llama model with `vocab` as a GGUF file at `path`."""
    gguf = require("gguf")
    writer = gguf.GGUFWriter(str(path), "llama")
    _add_hparams(writer, gguf)
    _add_tokenizer(writer, vocab)
    for name, tensor in _tensors(vocab["types"], gguf).items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_hparams(writer: Any, gguf: Any) -> None:
    writer.add_name("milo-demo-llama")
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)


def _add_tokenizer(writer: Any, vocab: dict[str, list[Any]]) -> None:
    writer.add_tokenizer_model("llama")
    writer.add_token_list(vocab["tokens"])
    writer.add_token_scores(vocab["scores"])
    writer.add_token_types(vocab["types"])
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)


def _tensors(types: list[Any], gguf: Any) -> dict[str, Any]:
    """Weights in PyTorch Linear layout (out, in); GGUFWriter reverses to ggml order."""
    np = require("numpy")
    rng = np.random.default_rng(SEED)

    def normal(*shape: int, std: float = 0.02) -> Any:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    n_vocab = len(types)
    output = normal(n_vocab, N_EMBD, std=OUTPUT_SCALE)
    output[[i for i, kind in enumerate(types) if kind != gguf.TokenType.NORMAL]] = 0.0
    ones = np.ones(N_EMBD, dtype=np.float32)
    tensors = {"token_embd.weight": normal(n_vocab, N_EMBD, std=1.0)}
    for i in range(N_LAYER):
        block = f"blk.{i}."
        tensors |= {block + name: normal(N_EMBD, N_EMBD) for name in _ATTENTION}
        tensors |= {
            block + "attn_norm.weight": ones,
            block + "ffn_norm.weight": ones,
            block + "ffn_gate.weight": normal(N_FF, N_EMBD),
            block + "ffn_up.weight": normal(N_FF, N_EMBD),
            block + "ffn_down.weight": normal(N_EMBD, N_FF),
        }
    return tensors | {"output_norm.weight": ones, "output.weight": output}


_ATTENTION = ("attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight")


def verify_llm(path: Path) -> str:
    """Load with llama-cpp-python and stream a chat reply; returns the text."""
    llama_cpp = require("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=1, seed=SEED, verbose=False)
    pieces = []
    stream = llm.create_chat_completion(
        messages=[{"role": "user", "content": "Manao ahoana?"}], stream=True, max_tokens=16
    )
    for chunk in stream:
        pieces.append(chunk["choices"][0]["delta"].get("content") or "")
    text = "".join(pieces)
    if not text.strip():
        raise RuntimeError("demo LLM produced no text")
    return text
