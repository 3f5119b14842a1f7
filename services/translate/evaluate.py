"""`milo eval mt`: chrF++ and BLEU of a running translate service, both ways (mg->fr, fr->mg).

Parallel sets:
- TSV: one pair a line, Malagasy, a tab, French; a first line naming the columns
  (`mg<TAB>fr`, or `plt_Latn<TAB>fra_Latn`) is skipped.
- JSON Lines: `{"mg": "...", "fr": "..."}` (or the keys `plt_Latn` / `fra_Latn`).
- FLORES-200 devtest from the local Hugging Face cache (`--flores`): the
  `openlanguagedata/flores_plus` dataset, configs `plt_Latn` and `fra_Latn`, read offline.

Scores are corpus-level, computed by sacrebleu (Post 2018, "A Call for Clarity in Reporting
BLEU Scores"): BLEU with its default 13a tokenizer, and chrF++ = chrF with word bigrams
(`CHRF(word_order=2)`, Popović 2017). A *runaway* is an output the service's length or
repetition guard cut short (`Translation.truncated`); a *dropped* sentence is one the
service refused or answered empty for a non-empty source (scored as an empty hypothesis).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

KEYS = {"mg": ("mg", "plt_Latn", "mlg"), "fr": ("fr", "fra_Latn", "fra")}
FLORES_DATASET = "openlanguagedata/flores_plus"
FLORES_CODES = {"mg": "plt_Latn", "fr": "fra_Latn"}


class PairsError(ValueError):
    """The parallel set cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Pair:
    """One parallel sentence: Malagasy and French."""

    mg: str
    fr: str


@dataclass(frozen=True)
class Outcome:
    """What the service gave for one source sentence. text "" when dropped."""

    text: str
    truncated: bool = False
    dropped: bool = False


@dataclass(frozen=True)
class DirectionScore:
    """Corpus scores of one direction, 0-100."""

    source: str
    target: str
    sentences: int
    bleu: float
    chrf_pp: float
    runaway: int
    dropped: int


def read_pairs(path: Path) -> list[Pair]:
    """Pairs from a .tsv or .jsonl file (see the module docstring)."""
    if not path.is_file():
        raise PairsError(f"{path}: no such file")
    reader = _read_jsonl if path.suffix.lower() in (".jsonl", ".json") else _read_tsv
    pairs = reader(path)
    if not pairs:
        raise PairsError(f"{path}: no sentence pairs")
    return pairs


def _read_tsv(path: Path) -> list[Pair]:
    pairs = []
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise PairsError(f"{path}:{number}: expected Malagasy<TAB>French")
            if number == 1 and row[0] in KEYS["mg"] and row[1] in KEYS["fr"]:
                continue  # header
            pairs.append(Pair(row[0].strip(), row[1].strip()))
    return pairs


def _read_jsonl(path: Path) -> list[Pair]:
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise PairsError(f"{path}:{number}: not JSON ({exc})") from exc
        mg, fr = (_field(item, KEYS[k]) for k in ("mg", "fr"))
        if mg is None or fr is None:
            raise PairsError(
                f'{path}:{number}: needs a Malagasy and a French text ({{"mg": ..., "fr": ...}})'
            )
        pairs.append(Pair(mg.strip(), fr.strip()))
    return pairs


def _field(item: Any, names: Sequence[str]) -> str | None:
    if not isinstance(item, dict):
        return None
    for name in names:
        if isinstance(item.get(name), str):
            return str(item[name])
    return None


def read_flores(split: str = "devtest") -> list[Pair]:
    """FLORES-200 (flores_plus) Malagasy-French pairs from the local cache, offline."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from datasets import load_dataset
    except ImportError as exc:
        raise PairsError("--flores needs the datasets package: pip install datasets") from exc
    try:
        mg, fr = (load_dataset(FLORES_DATASET, FLORES_CODES[k], split=split) for k in ("mg", "fr"))
    except Exception as exc:  # datasets raises many types when the cache lacks the set
        raise PairsError(
            f"FLORES-200 ({FLORES_DATASET}, {split}) is not in the local Hugging "
            f"Face cache: download it once on a machine with network ({exc})"
        ) from exc
    by_id = {row["id"]: row["text"] for row in fr}
    return [Pair(row["text"], by_id[row["id"]]) for row in mg if row["id"] in by_id]


def score_direction(
    source: str, target: str, references: Sequence[str], outcomes: Sequence[Outcome]
) -> DirectionScore:
    """BLEU and chrF++ of `outcomes` against `references` (same order and length)."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(references) != len(outcomes):
        raise ValueError("one outcome per reference")
    hypotheses = [o.text for o in outcomes]
    bleu = BLEU().corpus_score(hypotheses, [list(references)]).score
    chrf = CHRF(word_order=2).corpus_score(hypotheses, [list(references)]).score
    return DirectionScore(
        source,
        target,
        len(references),
        round(bleu, 2),
        round(chrf, 2),
        sum(o.truncated for o in outcomes),
        sum(o.dropped for o in outcomes),
    )


Translate = Callable[[list[str], str, str], list[Outcome]]


def evaluate(pairs: Sequence[Pair], translate: Translate) -> list[DirectionScore]:
    """Both directions: mg->fr then fr->mg."""
    out = []
    for source, target in (("mg", "fr"), ("fr", "mg")):
        sources = [getattr(p, source) for p in pairs]
        references = [getattr(p, target) for p in pairs]
        out.append(score_direction(source, target, references, translate(sources, source, target)))
    return out


def format_scores(scores: Sequence[DirectionScore], model: dict[str, Any]) -> str:
    """The scores as a text table, one line per direction, with a line saying what they mean."""
    lines = [
        f"milo eval mt: {model.get('model_id', '?')} at {model.get('address', '?')}",
        f"{'direction':<10} {'sentences':>9} {'BLEU':>7} {'chrF++':>7} {'runaway':>8} "
        f"{'dropped':>8}",
    ]
    for s in scores:
        lines.append(
            f"{s.source + '->' + s.target:<10} {s.sentences:>9} {s.bleu:>7.2f} "
            f"{s.chrf_pp:>7.2f} {s.runaway:>8} {s.dropped:>8}"
        )
    lines.append(
        "BLEU and chrF++ by sacrebleu (corpus level, 0-100); runaway: cut by the "
        "length/repetition guard; dropped: refused or empty"
    )
    return "\n".join(lines)


def scores_json(scores: Sequence[DirectionScore], model: dict[str, Any]) -> dict[str, Any]:
    """The scores as a JSON-ready dict: `{"model": model, "directions": [DirectionScore fields,
    ...]}`."""
    return {"model": model, "directions": [asdict(s) for s in scores]}
