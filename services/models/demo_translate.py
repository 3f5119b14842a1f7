"""Demo translation model: a random-weight NLLB-architecture model in CTranslate2 format.

It has a real SentencePiece model trained on the shipped corpus and the NLLB tokenizer's
special tokens and language codes (plt_Latn, fra_Latn, eng_Latn and the 199 others), and is
converted with the same CTranslate2 converter as facebook/nllb-200-distilled-600M. The
service runs it exactly like the real one:

    source = [src_code] + sp.encode(text, out_type=str) + ["</s>"]
    translator.translate_batch([source], target_prefix=[[tgt_code]])

Random weights translate into gibberish made of corpus pieces, different for different
inputs. An output bias keeps special tokens (language codes, <unk>, <mask>...) out of the
output. `</s>` is left alone but in practice never wins, so the output runs to
`max_decoding_length`: a caller must bound it (e.g. relative to the input length) as it
should for the real model anyway.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from services.models._util import require
from services.models.convert import convert_nllb
from services.models.demo_corpus import train_sentencepiece
from services.models.layout import SPM_FILE

logger = logging.getLogger(__name__)

DEMO_ID = "milo-demo/nllb-tiny-random"
LANGUAGES = ("plt_Latn", "fra_Latn", "eng_Latn")
SPM_PIECES = 1000
SEED = 0
SUPPRESSED_LOGIT = -1.0e4  # representable in float16


def build_translate(dest: Path) -> dict[str, Any]:
    """Build the CTranslate2 demo model into `dest`; returns its manifest entry."""
    with tempfile.TemporaryDirectory(prefix="milo-demo-nllb-") as tmp:
        hf_dir = save_hf_nllb(Path(tmp) / "hf")
        bias = _special_token_bias(hf_dir)
        convert_nllb(hf_dir, dest, quantization=None, logits_bias=bias)
    sample = verify_translate(dest)
    logger.info("demo translate ok: %s", " ".join(sample[:6]))
    return {
        "id": DEMO_ID,
        "source": "random weights, NLLB architecture, SentencePiece trained on the demo corpus",
        "languages": list(LANGUAGES),
    }


def save_hf_nllb(dest: Path) -> Path:
    """Save a tiny random NLLB model in transformers format (like the hub repo) at `dest`."""
    torch = require("torch")
    transformers = require("transformers")
    train_sentencepiece(dest / SPM_FILE, SPM_PIECES)
    tokenizer = transformers.NllbTokenizer.from_pretrained(
        str(dest), extra_special_tokens=_language_codes(), src_lang="plt_Latn", tgt_lang="fra_Latn"
    )
    tokenizer.save_pretrained(str(dest))
    torch.manual_seed(SEED)
    model = transformers.M2M100ForConditionalGeneration(_tiny_config(transformers, len(tokenizer)))
    model.save_pretrained(str(dest))
    return dest


def _language_codes() -> list[str]:
    """Every NLLB language code transformers knows, or at least the three Milo uses."""
    try:
        nllb = require("transformers.models.nllb.tokenization_nllb")
        codes = list(nllb.FAIRSEQ_LANGUAGE_CODES)
    except (RuntimeError, AttributeError):
        codes = []
    return codes + [code for code in LANGUAGES if code not in codes]


def _tiny_config(transformers: Any, vocab_size: int) -> Any:
    # init_std 0.5 instead of 0.02: with the default, the decoder ignores the tiny encoder and
    # every input gets the same output; larger weights make the output depend on the input.
    return transformers.M2M100Config(
        vocab_size=vocab_size,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=512,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        scale_embedding=True,
        tokenizer_class="NllbTokenizer",
        init_std=0.5,
    )


def _special_token_bias(hf_dir: Path) -> Any:
    """Bias [1, vocab]: 0 for SentencePiece pieces and </s>, very negative for the rest."""
    torch = require("torch")
    tokenizer = require("transformers").AutoTokenizer.from_pretrained(str(hf_dir))
    bias = torch.zeros(1, len(tokenizer))
    for token_id in tokenizer.all_special_ids:
        if token_id != tokenizer.eos_token_id:
            bias[0, token_id] = SUPPRESSED_LOGIT
    return bias


def verify_translate(folder: Path) -> list[str]:
    """Translate a small batch with ctranslate2 + sentencepiece; returns the first output."""
    ct2 = require("ctranslate2")
    spm = require("sentencepiece")
    sp = spm.SentencePieceProcessor(model_file=str(folder / SPM_FILE))
    texts = ["Manao ahoana ianao?", "Tonga soa eto Madagasikara."]
    source = [["plt_Latn", *sp.encode(text, out_type=str), "</s>"] for text in texts]
    translator = ct2.Translator(str(folder), device="cpu", inter_threads=1, intra_threads=1)
    results = translator.translate_batch(
        source, target_prefix=[["fra_Latn"]] * len(texts), max_decoding_length=16, beam_size=1
    )
    outputs = [result.hypotheses[0][1:] for result in results]
    if len(outputs) != len(texts) or not all(outputs):
        raise RuntimeError(f"demo translation model returned no tokens: {outputs}")
    return outputs[0]
