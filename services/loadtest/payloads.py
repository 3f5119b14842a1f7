"""Payloads: the built-in ones, and reading a person's own files.

A payload file is JSON Lines (`.jsonl`: one object or string per line) or plain text (any
other name: one payload per non-empty line, `#` starts a comment line). Each target says
which fields it reads. Speech is WAV files (16-bit PCM) or folders of them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Short Malagasy sentences, as a person would say them to the assistant.
MALAGASY_SENTENCES = (
    "Manao ahoana ianao?",
    "Misaotra betsaka tamin'ny fanampianao.",
    "Aiza ny tsena akaiky indrindra?",
    "Te hividy vary sy trondro aho anio.",
    "Rahoviana no hiainga ny fiara ho any Antsirabe?",
    "Mafana be ny andro androany.",
    "Firy ny vidin'ity akanjo ity?",
    "Marary ny zanako ary mila dokotera izahay.",
    "Afaka manampy ahy ve ianao?",
    "Tiako ny mihaino mozika malagasy.",
)

FRENCH_SENTENCES = (
    "Bonjour, comment allez-vous ?",
    "Où se trouve la gare routière ?",
    "Je voudrais réserver une chambre pour deux nuits.",
    "Quel temps fera-t-il demain à Antananarivo ?",
    "Le marché ouvre à six heures du matin.",
    "Il faut boire beaucoup d'eau quand il fait chaud.",
    "Mon fils est malade, nous cherchons un médecin.",
    "Le riz coûte deux mille ariary le kilo.",
)

# Templates for the built-in translate load: the translate service caches short sentences it
# has seen, so a few fixed sentences would measure the cache, not the model; filled slots
# (numbers, places, names, days) make nearly every request new, as real speech is, and there
# are more of them than the service's cache holds (2048 by default), so cycling through
# them keeps missing it.
_MG_TEMPLATES = (
    "Te hividy {mg_item} {n} kilao aho {mg_when}.",
    "Firy ny vidin'ny {mg_item} {n} kilao any {place}?",
    "Rahoviana no hiainga ny fiara {n} ho any {place} {mg_when}?",
    "Mitentina {n} ariary ny {mg_item} iray kilao any {place}.",
    "Hankany {place} miaraka amin'i {name} sy olona {n} aho {mg_when}.",
)
_FR_TEMPLATES = (
    "Je voudrais acheter {n} kilos de {fr_item} {fr_when}.",
    "Combien coûtent {n} kilos de {fr_item} à {place} ?",
    "À quelle heure part le taxi-brousse {n} pour {place} {fr_when} ?",
    "Le kilo de {fr_item} coûte {n} ariary à {place}.",
    "Je vais à {place} avec {name} et {n} amis {fr_when}.",
)
_SLOTS = {
    "mg_item": ("vary", "trondro", "akoho", "mangahazo", "voatabia", "katsaka"),
    "fr_item": ("riz", "poisson", "poulet", "manioc", "tomates", "maïs"),
    "place": (
        "Antananarivo",
        "Antsirabe",
        "Toamasina",
        "Mahajanga",
        "Fianarantsoa",
        "Toliara",
        "Antsiranana",
        "Morondava",
    ),
    "name": ("Rakoto", "Rasoa", "Faly", "Hery", "Lova", "Nirina"),
    "mg_when": ("anio", "rahampitso", "amin'ny alatsinainy", "amin'ny sabotsy", "rahariva"),
    "fr_when": ("aujourd'hui", "demain", "lundi", "samedi", "ce soir"),
}


def translate_sentences(count: int = 5000, seed: int = 0) -> list[tuple[str, str, str]]:
    """(text, source, target): Malagasy -> French and French -> Malagasy in turn."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        mg = i % 2 == 0
        template = rng.choice(_MG_TEMPLATES if mg else _FR_TEMPLATES)
        slots = {k: rng.choice(v) for k, v in _SLOTS.items()}
        text = template.format(n=rng.randint(2, 5000), **slots)
        out.append((text, "mg", "fr") if mg else (text, "fr", "mg"))
    return out


# What a person asks the assistant; the LLM works in French (the pivot language).
CHAT_PROMPTS = (
    "Quelle est la capitale de Madagascar ?",
    "Donne-moi une recette simple de romazava.",
    "Explique en deux phrases comment planter du riz.",
    "Comment dit-on merci en malgache ?",
    "Quels sont les bienfaits du gingembre ?",
    "Que faire si mon enfant a de la fièvre ?",
    "Raconte-moi une courte histoire sur un lémurien.",
    "Quel est le meilleur moment pour visiter Nosy Be ?",
)

# Replies of the length the assistant speaks: two to four sentences, with numbers.
MALAGASY_REPLIES = (
    "Antananarivo no renivohitr'i Madagasikara. Tanàna lehibe eny afovoan'ny nosy izy io, "
    "ary maro ny mponina ao.",
    "Mila vary, hena ary anamamy ianao. Ampangotrahy mandritra ny 30 minitra ny hena, "
    "avy eo ampio ny anamamy. Arotsaka miaraka amin'ny vary mafana.",
    "Misotro rano betsaka rehefa mafana ny andro. Aza mivoaka amin'ny antoandro raha "
    "azo atao. Raha mbola marary ianao, mankanesa any amin'ny dokotera.",
    "Mitentina 2000 ariary ny vary iray kilao ao amin'ny tsena. Misokatra amin'ny 6 ora "
    "maraina ny tsena.",
    "Tsara ny mitsidika an'i Nosy Be amin'ny volana Mey ka hatramin'ny Oktobra. Tsy dia "
    "misy orana amin'izany fotoana izany.",
    "Misaotra anao nanontany. Faly aho nanampy anao anio.",
)

# Spoken with espeak-ng for STT and the gateway when the service works in English (the demo
# STT model, tiny.en, is English-only).
ENGLISH_SPEECH = (
    "Hello, how are you today?",
    "Where is the nearest market?",
    "I would like to buy some rice and fish.",
    "What is the weather like in the capital tomorrow?",
    "Thank you very much for your help.",
    "When does the bus leave for the city?",
)

# espeak-ng has no Malagasy voice; Indonesian reads Malagasy spelling closely enough.
ESPEAK_VOICES = {"en": "en-us", "fr": "fr", "mg": "id"}


def speech_texts(language: str) -> tuple[str, ...]:
    """Built-in sentences to speak in `language`: English for "en", else Malagasy."""
    return ENGLISH_SPEECH if language == "en" else MALAGASY_SENTENCES


def espeak_voice(language: str) -> str:
    """The espeak-ng voice to synthesize `language` with (Indonesian for Malagasy, which has
    none)."""
    return ESPEAK_VOICES.get(language, language)


def read_records(path: Path) -> list[Any]:
    """The payloads in one file: parsed JSON values for `.jsonl`, else stripped lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read payload file {path}: {exc}") from exc
    records: list[Any] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or (line.startswith("#") and path.suffix != ".jsonl"):
            continue
        if path.suffix == ".jsonl":
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        else:
            records.append(line)
    if not records:
        raise ValueError(f"payload file {path} holds no payloads")
    return records


def field_of(record: Any, key: str, where: str) -> Any:
    """`record[key]` for a JSON object, or the record itself when it is a plain string."""
    if isinstance(record, str):
        return record
    if isinstance(record, dict) and key in record:
        return record[key]
    raise ValueError(f"{where}: expected a string or an object with {key!r}, got {record!r}")


def split_audio_files(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """(WAV files, other files): folders are expanded to the WAV files they hold."""
    wavs: list[Path] = []
    others: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.wav"))
            if not found:
                raise ValueError(f"folder {path} holds no .wav files")
            wavs.extend(found)
        elif path.suffix.lower() == ".wav":
            wavs.append(path)
        else:
            others.append(path)
    return wavs, others
