"""Language codes: ISO 639-1 ("mg") <-> NLLB ("plt_Latn"), and which ones a model offers.

Pure logic. A `LanguageCatalog` is built from the language codes the loaded vocabulary
actually contains, so a model without, say, `zul_Latn` never offers Zulu.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from services.runtime.errors import InvalidArgument


@dataclass(frozen=True)
class Language:
    """A language as the API names it (`code`, ISO 639-1 "mg") and as the model does
    (`model_code`, NLLB "plt_Latn"), with its English `name`."""

    code: str  # ISO 639-1, "mg"
    model_code: str  # NLLB, "plt_Latn"
    name: str  # English name

    @property
    def script(self) -> str:
        """ISO 15924 script of the model code: "Latn", "Cyrl", ..."""
        return self.model_code.rsplit("_", 1)[-1]


# ISO 639-1 -> (NLLB code, English name). Malagasy, French and English first: Milo's own.
_TABLE: dict[str, tuple[str, str]] = {
    "mg": ("plt_Latn", "Malagasy"),
    "fr": ("fra_Latn", "French"),
    "en": ("eng_Latn", "English"),
    "af": ("afr_Latn", "Afrikaans"),
    "am": ("amh_Ethi", "Amharic"),
    "ar": ("arb_Arab", "Arabic"),
    "bg": ("bul_Cyrl", "Bulgarian"),
    "bn": ("ben_Beng", "Bengali"),
    "ca": ("cat_Latn", "Catalan"),
    "cs": ("ces_Latn", "Czech"),
    "da": ("dan_Latn", "Danish"),
    "de": ("deu_Latn", "German"),
    "el": ("ell_Grek", "Greek"),
    "es": ("spa_Latn", "Spanish"),
    "et": ("est_Latn", "Estonian"),
    "fa": ("pes_Arab", "Persian"),
    "fi": ("fin_Latn", "Finnish"),
    "ha": ("hau_Latn", "Hausa"),
    "he": ("heb_Hebr", "Hebrew"),
    "hi": ("hin_Deva", "Hindi"),
    "hr": ("hrv_Latn", "Croatian"),
    "hu": ("hun_Latn", "Hungarian"),
    "id": ("ind_Latn", "Indonesian"),
    "ig": ("ibo_Latn", "Igbo"),
    "it": ("ita_Latn", "Italian"),
    "ja": ("jpn_Jpan", "Japanese"),
    "ko": ("kor_Hang", "Korean"),
    "lg": ("lug_Latn", "Ganda"),
    "ln": ("lin_Latn", "Lingala"),
    "lt": ("lit_Latn", "Lithuanian"),
    "ms": ("zsm_Latn", "Malay"),
    "nl": ("nld_Latn", "Dutch"),
    "no": ("nob_Latn", "Norwegian"),
    "ny": ("nya_Latn", "Chichewa"),
    "pl": ("pol_Latn", "Polish"),
    "pt": ("por_Latn", "Portuguese"),
    "ro": ("ron_Latn", "Romanian"),
    "ru": ("rus_Cyrl", "Russian"),
    "rw": ("kin_Latn", "Kinyarwanda"),
    "so": ("som_Latn", "Somali"),
    "sv": ("swe_Latn", "Swedish"),
    "sw": ("swh_Latn", "Swahili"),
    "ta": ("tam_Taml", "Tamil"),
    "th": ("tha_Thai", "Thai"),
    "tr": ("tur_Latn", "Turkish"),
    "uk": ("ukr_Cyrl", "Ukrainian"),
    "ur": ("urd_Arab", "Urdu"),
    "vi": ("vie_Latn", "Vietnamese"),
    "wo": ("wol_Latn", "Wolof"),
    "xh": ("xho_Latn", "Xhosa"),
    "yo": ("yor_Latn", "Yoruba"),
    "zh": ("zho_Hans", "Chinese"),
    "zu": ("zul_Latn", "Zulu"),
}

KNOWN: tuple[Language, ...] = tuple(
    Language(iso, nllb, name) for iso, (nllb, name) in _TABLE.items()
)
_BY_ISO = {lang.code: lang for lang in KNOWN}
_BY_MODEL = {lang.model_code.lower(): lang for lang in KNOWN}
_BCP47 = re.compile(r"^([a-z]{2})(?:[-_][a-z]{2}|[-_][0-9]{3})?$")  # "fr", "fr-FR", "fr_FR"


def lookup(code: str) -> Language | None:
    """The language for an ISO 639-1 code (region ignored: "fr-FR") or an NLLB code."""
    key = code.strip().lower()
    if key in _BY_MODEL:
        return _BY_MODEL[key]
    match = _BCP47.match(key)
    return _BY_ISO.get(match.group(1)) if match else None


class LanguageCatalog:
    """The languages one model offers: those of the table whose code is in its vocabulary.

    `targets`, when given, limits the output languages (ISO or NLLB codes); every offered
    language can still be a source.
    """

    def __init__(self, vocabulary_codes: Iterable[str], targets: Iterable[str] = ()) -> None:
        present = set(vocabulary_codes)
        self.languages: tuple[Language, ...] = tuple(
            lang for lang in KNOWN if lang.model_code in present
        )
        if not self.languages:
            raise ValueError("the model's vocabulary has none of the known NLLB language codes")
        wanted = [self._require_known(code) for code in targets]
        self.targets = tuple(lang for lang in self.languages if not wanted or lang in wanted)

    def _require_known(self, code: str) -> Language:
        lang = lookup(code)
        if lang is None or lang not in self.languages:
            raise ValueError(f"target language {code!r} is not offered by this model")
        return lang

    @property
    def pairs(self) -> list[tuple[Language, Language]]:
        """Every (source, target) that may be requested: distinct languages."""
        return [(s, t) for s, t in itertools.product(self.languages, self.targets) if s != t]

    def resolve_pair(self, source: str, target: str) -> tuple[Language, Language]:
        """Both languages of a request, or InvalidArgument naming what is supported."""
        src = self._resolve(source, "source_language", self.languages)
        tgt = self._resolve(target, "target_language", self.targets)
        if src == tgt:
            raise InvalidArgument(
                f"source_language and target_language are both {src.code} ({src.name}): "
                "nothing to translate"
            )
        return src, tgt

    def _resolve(self, code: str, field: str, allowed: tuple[Language, ...]) -> Language:
        if not code.strip():
            raise InvalidArgument(f"{field} is empty: {self._supported(allowed)}")
        lang = lookup(code)
        if lang is None or lang not in allowed:
            raise InvalidArgument(f"{field} {code!r} is not supported: {self._supported(allowed)}")
        return lang

    @staticmethod
    def _supported(allowed: tuple[Language, ...]) -> str:
        listed = ", ".join(f"{lang.code} ({lang.model_code})" for lang in allowed)
        return f"use one of {listed}"
