"""`milo eval mt`: parallel-set readers (tier 1) and the command against a fake Translator
on a real gRPC server on port 0 (tier 2), with scores known in advance: perfect outputs give
BLEU and chrF++ 100, empty ones 0; guard cuts count as runaways, refusals as dropped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from milo.translate.v1 import translate_pb2 as pb
from milo.translate.v1 import translate_pb2_grpc as pb_grpc
from services.cli import main
from services.translate.evaluate import Outcome, PairsError, read_pairs, score_direction

PAIRS = [
    ("Manao ahoana ianao?", "Comment allez-vous ?"),
    ("Misaotra betsaka.", "Merci beaucoup."),
    ("Aiza ny tsena? LOOP", "Où est le marché ?"),
    ("Veloma.", "REFUSE au revoir."),
]
MG_TO_FR = dict(PAIRS)


class FakeTranslator(pb_grpc.TranslatorServicer):
    """mg->fr: the reference (a LOOP source is marked cut by the guard); fr->mg: empty
    outputs, and INVALID_ARGUMENT for any batch holding a REFUSE source."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def Describe(self, request, context):
        return pb.DescribeResponse(model_id="fake-nllb", max_batch_texts=3)

    def Translate(self, request, context):
        self.batches.append(len(request.texts))
        if request.source_language == "fr":
            if any("REFUSE" in t for t in request.texts):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "cannot translate that")
            return pb.TranslateResponse(
                translations=[pb.Translation(text="") for _ in request.texts]
            )
        return pb.TranslateResponse(
            translations=[
                pb.Translation(text=MG_TO_FR[t], truncated="LOOP" in t) for t in request.texts
            ]
        )


@pytest.fixture
def fake_server() -> Iterator[tuple[str, FakeTranslator]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    fake = FakeTranslator()
    pb_grpc.add_TranslatorServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", fake
    finally:
        server.stop(None)


def write_tsv(path: Path) -> Path:
    path.write_text("mg\tfr\n" + "".join(f"{mg}\t{fr}\n" for mg, fr in PAIRS), "utf-8")
    return path


def test_tsv_and_jsonl_read_the_same_pairs(tmp_path: Path) -> None:
    tsv = read_pairs(write_tsv(tmp_path / "pairs.tsv"))
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"plt_Latn": mg, "fra_Latn": fr}) + "\n" for mg, fr in PAIRS), "utf-8"
    )
    assert [(p.mg, p.fr) for p in tsv] == PAIRS == [(p.mg, p.fr) for p in read_pairs(jsonl)]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("only one column\n", "expected Malagasy<TAB>French"),
        ("", "no sentence pairs"),
    ],
)
def test_bad_pair_files_name_the_problem(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(content, "utf-8")
    with pytest.raises(PairsError, match=words):
        read_pairs(path)


def test_scores_are_exact_for_perfect_and_empty_outputs() -> None:
    refs = [fr for _, fr in PAIRS]
    perfect = score_direction("mg", "fr", refs, [Outcome(r) for r in refs])
    assert (perfect.bleu, perfect.chrf_pp, perfect.runaway, perfect.dropped) == (100.0, 100.0, 0, 0)
    empty = score_direction("fr", "mg", refs, [Outcome("", dropped=True) for _ in refs])
    assert (empty.bleu, empty.chrf_pp, empty.dropped) == (0.0, 0.0, 4)


def test_eval_mt_command_both_directions(fake_server, tmp_path: Path, capsys) -> None:
    address, fake = fake_server
    pairs = write_tsv(tmp_path / "pairs.tsv")
    assert main(["eval", "mt", "--pairs", str(pairs), "--address", address, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"]["model_id"] == "fake-nllb"
    by = {(d["source"], d["target"]): d for d in report["directions"]}
    assert by["mg", "fr"] == {
        "source": "mg",
        "target": "fr",
        "sentences": 4,
        "bleu": 100.0,
        "chrf_pp": 100.0,
        "runaway": 1,
        "dropped": 0,
    }
    assert by["fr", "mg"] == {
        "source": "fr",
        "target": "mg",
        "sentences": 4,
        "bleu": 0.0,
        "chrf_pp": 0.0,
        "runaway": 0,
        "dropped": 4,
    }
    assert max(fake.batches) <= 3  # the server's max_batch_texts


def test_eval_mt_table_and_errors(fake_server, tmp_path: Path, capsys) -> None:
    address, _ = fake_server
    assert (
        main(["eval", "mt", "--pairs", str(write_tsv(tmp_path / "p.tsv")), "--address", address])
        == 0
    )
    table = capsys.readouterr().out
    assert "mg->fr" in table and "chrF++" in table and "100.00" in table
    assert main(["eval", "mt", "--pairs", str(tmp_path / "missing.tsv")]) == 2
    assert "no such file" in capsys.readouterr().err
