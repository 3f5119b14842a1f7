"""The small Malagasy/French/English corpus shipped with the package, and SentencePiece training.

The demo translation model and the demo LLM both get a real SentencePiece vocabulary
trained here in well under a second.
"""

from __future__ import annotations

import io
import logging
from importlib import resources
from pathlib import Path

from services.models._util import require

logger = logging.getLogger(__name__)

CORPUS_DIR = "data"
CORPUS_FILE = "corpus.txt"


def corpus_sentences() -> list[str]:
    """The corpus lines, without comments and blank lines."""
    text = (
        resources.files("services.models")
        .joinpath(CORPUS_DIR)
        .joinpath(CORPUS_FILE)
        .read_text("utf-8")
    )
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def train_sentencepiece(path: Path, vocab_size: int, *, byte_fallback: bool = False) -> Path:
    """Train a BPE SentencePiece model on the corpus and write it to `path`.

    Ids 0, 1, 2 are <unk>, <s>, </s> (SentencePiece's defaults, as in NLLB and llama).
    The bytes written are the same on every run (no path or time is recorded in them).
    """
    spm = require("sentencepiece")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_sentences()),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=1.0,
        byte_fallback=byte_fallback,
        num_threads=1,
        minloglevel=2,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.getvalue())
    logger.debug("trained SentencePiece %s (%d pieces)", path, vocab_size)
    return path
