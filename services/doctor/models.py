"""Checks of each model folder: complete, readable, right for Malagasy, and (with `load`)
loadable by its real engine on the CPU.

The quick checks read only small files (configs, tokenizers, the GGUF's metadata), so that
`milo up` and each container can run them at every start; `load=True` also opens each model
with the engine the service uses (CTranslate2, llama.cpp, transformers), which is what
`milo doctor` does by default.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.doctor.report import Finding, fail, ok, warn
from services.models.layout import REQUIRED_FILES, SPM_FILE, Component, Layout

log = logging.getLogger(__name__)

# Typical Malagasy text for the TTS vocabulary check: letters, the accents Malagasy
# writes (ô, à, è, ì, ñ in loans and dialects), an apostrophe, numbers, a date and money.
MALAGASY_SAMPLE = (
    "Manao ahoana ianao? Tsara be, misaotra! Nandeha tany Antsirabe sy Fianarantsoa aho "
    "tamin'ny 15 Jona 2025, tamin'ny 10 ora sy sasany. Vidiny 2500 Ariary. "
    "Ô ry zanako, àry ve? Tsy misy olana."
)

# The NLLB-200 codes of Malagasy (Plateau Malagasy) and French (Costa-jussà et al. 2022,
# "No Language Left Behind", the FLORES-200 language list).
NLLB_CODES = ("plt_Latn", "fra_Latn")

FIX_FETCH = "milo models fetch --only {c} --dir {root}  (or `milo models demo` for the demo set)"


def check_models(
    root: Path,
    *,
    stt_language: str,
    load: bool = False,
    only: tuple[Component, ...] = ("stt", "translate", "llm", "tts"),
) -> list[Finding]:
    """Every component's findings, in order stt, translate, llm, tts."""
    layout = Layout(root)
    checks: dict[Component, Callable[[], list[Finding]]] = {
        "stt": lambda: check_stt(layout.stt, stt_language, load),
        "translate": lambda: check_translate(layout.translate, load),
        "llm": lambda: check_llm(layout.llm, load),
        "tts": lambda: check_tts(layout.tts, load),
    }
    findings: list[Finding] = []
    for component in only:
        findings.extend(checks[component]())
    return findings


def _missing(folder: Path, component: Component) -> Finding | None:
    """A failure when `folder` (the component's entry folder) is absent or incomplete."""
    fix = FIX_FETCH.format(c=component, root=folder.parent)
    if not folder.is_dir():
        return fail(component, f"no model folder {folder}", fix)
    missing = [name for name in REQUIRED_FILES[component] if not (folder / name).is_file()]
    if missing:
        return fail(component, f"{folder} lacks {', '.join(missing)}", fix)
    return None


def _json(path: Path, component: str) -> tuple[Any, Finding | None]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, fail(
            component,
            f"{path} is not readable JSON ({exc})",
            f"re-create it: {FIX_FETCH.format(c=component, root=path.parent.parent)}",
        )


def _load(component: str, what: str, opener: Callable[[], object]) -> Finding:
    try:
        opener()
    except Exception as exc:  # any engine error means the service would not start
        return fail(
            component,
            f"{what} does not load: {type(exc).__name__}: {exc}",
            "the file is damaged or incomplete: fetch or convert it again",
        )
    return ok(component, f"{what} loads")


class PreflightError(RuntimeError):
    """A model service's quick checks failed: the message is `milo doctor`'s."""


def preflight(component: Component, path: Path) -> None:
    """The quick checks of one service's model (no load), run as the service starts, so
    that a container refuses to start with the same words as `milo doctor`. STT's language
    is left to the service (an English-only model falls back to `en` with a warning).
    Raises PreflightError naming every problem and its fix."""
    from services.doctor.report import failed, format_report

    checks: dict[Component, Callable[[], list[Finding]]] = {
        "stt": lambda: check_stt(path, None, load=False),
        "translate": lambda: check_translate(path, load=False),
        "llm": lambda: check_llm(path, load=False),
        "tts": lambda: check_tts(path, load=False),
    }
    findings = checks[component]()
    for finding in findings:
        if finding.level == "warn":
            log.warning("%s: %s (%s)", component, finding.message, finding.fix)
    problems = failed(findings)
    if problems:
        raise PreflightError(f"{component} cannot start:\n{format_report(problems)}")


# --- stt ------------------------------------------------------------------------------


def whisper_languages() -> frozenset[str]:
    """Whisper's language codes (faster-whisper's tokenizer list)."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


def check_stt(folder: Path, language: str | None, load: bool) -> list[Finding]:
    """Files, tokenizer, the language token (language None: not checked), and optionally
    a CTranslate2 load."""
    missing = _missing(folder, "stt")
    if missing:
        return [missing]
    root = folder.parent
    tokenizer, bad = _json(folder / "tokenizer.json", "stt")
    if bad:
        return [bad]
    findings = []
    tokens = _added_tokens(tokenizer)
    size = _vocabulary_size(folder)
    if size is None:
        return [
            fail(
                "stt",
                f"{folder} lacks a readable vocabulary.json/vocabulary.txt",
                FIX_FETCH.format(c="stt", root=root),
            )
        ]
    multilingual = size >= MULTILINGUAL_VOCABULARY
    if not (folder / "preprocessor_config.json").is_file():
        findings.append(
            warn(
                "stt",
                "no preprocessor_config.json: faster-whisper assumes 80 mel bins, right for "
                "tiny to medium and wrong for large-v3 (128)",
                "copy preprocessor_config.json from the base model (`milo models convert stt "
                "CHECKPOINT --base openai/whisper-medium` does)",
            )
        )
    if language is not None:
        findings.append(_stt_language(language, multilingual, tokens))
    if load:
        findings.append(_load("stt", f"Whisper in {folder}", lambda: _open_whisper(folder)))
    return findings


# Whisper's multilingual vocabulary has 51,865 entries, the English-only one 51,864 (the same
# test as CTranslate2's `Whisper.is_multilingual`, openai/whisper tokenizer.py).
MULTILINGUAL_VOCABULARY = 51_865


def _vocabulary_size(folder: Path) -> int | None:
    try:
        if (folder / "vocabulary.json").is_file():
            return len(json.loads((folder / "vocabulary.json").read_text(encoding="utf-8")))
        if (folder / "vocabulary.txt").is_file():
            return len((folder / "vocabulary.txt").read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return None


def _added_tokens(tokenizer: Any) -> frozenset[str]:
    added = tokenizer.get("added_tokens", []) if isinstance(tokenizer, dict) else []
    vocab = tokenizer.get("model", {}).get("vocab", {}) if isinstance(tokenizer, dict) else {}
    return frozenset(
        [t.get("content", "") for t in added if isinstance(t, dict)]
        + [t for t in vocab if isinstance(t, str) and t.startswith("<|")]
    )


def _stt_language(language: str, multilingual: bool, tokens: frozenset[str]) -> Finding:
    known = whisper_languages()
    if language == "auto":
        return ok(
            "stt",
            "Whisper detects the language of each utterance (language auto)"
            if multilingual
            else "English-only Whisper: language auto means 'en'",
        )
    if language not in known:
        return fail(
            "stt",
            f"MILO_STT_LANGUAGE={language!r} is not a Whisper language code",
            "set MILO_STT_LANGUAGE to an ISO 639-1 code Whisper knows: mg (Malagasy), fr, en ...",
        )
    if not multilingual and language != "en":
        return fail(
            "stt",
            f"the Whisper model is English-only (no <|{language}|> token) but the "
            f"language is {language!r}: speech would be transcribed as English",
            "use a multilingual Whisper fine-tuned for Malagasy (milo models fetch "
            "--only stt), or MILO_STT_LANGUAGE=en on the demo set",
        )
    if multilingual and f"<|{language}|>" not in tokens:
        return fail(
            "stt",
            f"the tokenizer has no <|{language}|> token",
            "take tokenizer.json from the base model (openai/whisper-*)",
        )
    kind = "multilingual" if multilingual else "English-only"
    return ok(
        "stt",
        f"{kind} Whisper with the <|{language}|> language token"
        if multilingual
        else f"{kind} Whisper, language 'en'",
    )


def _open_whisper(folder: Path) -> None:
    import ctranslate2

    ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="default")


# --- translate ------------------------------------------------------------------------


def check_translate(folder: Path, load: bool) -> list[Finding]:
    """Files, the SentencePiece model, the NLLB language codes, and optionally a load."""
    missing = _missing(folder, "translate")
    if missing:
        return [missing]
    root = folder.parent
    findings = []
    try:
        import sentencepiece

        sentencepiece.SentencePieceProcessor(model_file=str(folder / SPM_FILE))
        findings.append(ok("translate", f"{SPM_FILE} loads"))
    except Exception as exc:  # sentencepiece raises OSError/RuntimeError on a bad file
        findings.append(
            fail(
                "translate",
                f"{folder / SPM_FILE} does not load ({exc})",
                FIX_FETCH.format(c="translate", root=root),
            )
        )
    vocabulary = _ct2_vocabulary(folder)
    if vocabulary is None:
        findings.append(
            fail(
                "translate",
                f"{folder} has no shared_vocabulary.json/.txt",
                FIX_FETCH.format(c="translate", root=root),
            )
        )
    else:
        absent = [code for code in NLLB_CODES if code not in vocabulary]
        if absent:
            findings.append(
                fail(
                    "translate",
                    f"the vocabulary lacks {', '.join(absent)}: not an NLLB-200 model "
                    "that knows Malagasy and French",
                    "use facebook/nllb-200-distilled-600M",
                )
            )
        else:
            findings.append(ok("translate", "NLLB vocabulary holds plt_Latn and fra_Latn"))
    if load:
        findings.append(
            _load("translate", f"CTranslate2 model in {folder}", lambda: _open_translator(folder))
        )
    return findings


def _ct2_vocabulary(folder: Path) -> frozenset[str] | None:
    json_path, txt_path = folder / "shared_vocabulary.json", folder / "shared_vocabulary.txt"
    try:
        if json_path.is_file():
            return frozenset(json.loads(json_path.read_text(encoding="utf-8")))
        if txt_path.is_file():
            return frozenset(txt_path.read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return None


def _open_translator(folder: Path) -> None:
    import ctranslate2

    ctranslate2.Translator(str(folder), device="cpu", compute_type="default")


# --- llm ------------------------------------------------------------------------------


def check_llm(path: Path, load: bool) -> list[Finding]:
    """The GGUF's header, chat template and system role; optionally a vocabulary-only load.
    `path`: the GGUF file (or the folder holding model.gguf)."""
    if path.is_dir() or path.suffix != ".gguf":
        path = path / REQUIRED_FILES["llm"][0]
    missing = _missing(path.parent, "llm")
    if missing:
        return [missing]
    root = path.parent.parent
    try:
        metadata = gguf_metadata(path)
    except Exception as exc:  # gguf raises ValueError/struct.error/... on a damaged file
        return [
            fail(
                "llm",
                f"{path} is not a readable GGUF file ({type(exc).__name__}: {exc})",
                FIX_FETCH.format(c="llm", root=root),
            )
        ]
    template = metadata.get("tokenizer.chat_template")
    if not isinstance(template, str) or not template.strip():
        return [
            fail(
                "llm",
                f"{path} has no chat template (tokenizer.chat_template): the LLM "
                "service cannot format a conversation and refuses to start",
                "use an instruct GGUF with its template (e.g. Mistral-7B-Instruct-v0.3 "
                "Q4_K_M: milo models fetch --only llm)",
            )
        ]
    findings = [ok("llm", f"GGUF {metadata.get('general.name', path.name)} with a chat template")]
    if template_takes_system(template):
        findings.append(ok("llm", "the chat template takes a system role"))
    else:
        findings.append(
            warn(
                "llm",
                "the chat template has no system role: the system prompt "
                "is folded into the first user turn (works, as Mistral v0.1/v0.2 "
                "intend)",
            )
        )
    if load:
        findings.append(_load("llm", f"GGUF {path.name}", lambda: _open_gguf(path)))
    return findings


def gguf_metadata(path: Path) -> dict[str, Any]:
    """Scalar and string metadata of a GGUF file (arrays left out), read with `gguf`."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    out: dict[str, Any] = {}
    for name, field in reader.fields.items():
        if len(field.types) != 1 or not field.data:
            continue
        value = field.parts[field.data[0]]
        if field.types[0].name == "STRING":
            out[name] = bytes(value).decode("utf-8", errors="replace")
        elif len(value) == 1:
            out[name] = value[0].item()
    return out


def template_takes_system(template: str) -> bool:
    """Whether the Jinja chat template renders a system message (raise_exception: no)."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    try:
        rendered = env.from_string(template).render(
            messages=messages,
            bos_token="<s>",
            eos_token="</s>",
            add_generation_prompt=True,
            raise_exception=raise_exception,
        )
    except Exception:  # jinja2 errors and the template's own raise_exception
        return False
    return "S" in rendered


def _open_gguf(path: Path) -> None:
    import llama_cpp

    llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)


# --- tts ------------------------------------------------------------------------------


def check_tts(folder: Path, load: bool, sample: str = MALAGASY_SAMPLE) -> list[Finding]:
    """Config, sampling rate, vocabulary, which characters of Malagasy text it cannot say."""
    missing = _missing(folder, "tts")
    if missing:
        return [missing]
    root = folder.parent
    config, bad = _json(folder / "config.json", "tts")
    vocab, bad_vocab = _json(folder / "vocab.json", "tts")
    tokenizer_config, bad_tok = _json(folder / "tokenizer_config.json", "tts")
    problems = [f for f in (bad, bad_vocab, bad_tok) if f]
    if problems:
        return problems
    findings = []
    rate = config.get("sampling_rate") if isinstance(config, dict) else None
    if not isinstance(rate, int) or rate <= 0:
        findings.append(
            fail(
                "tts",
                f"{folder / 'config.json'} has no sampling_rate",
                FIX_FETCH.format(c="tts", root=root),
            )
        )
    else:
        findings.append(ok("tts", f"VITS voice at {rate} Hz"))
    if isinstance(tokenizer_config, dict) and tokenizer_config.get("phonemize"):
        findings.append(
            fail(
                "tts",
                "the tokenizer wants phonemes (phonemize=true); Milo reads "
                "Malagasy letters as MMS-TTS does",
                "use an MMS-TTS-style voice",
            )
        )
    findings.append(_unsayable(vocab, tokenizer_config, sample))
    if load:
        findings.append(_load("tts", f"VITS in {folder}", lambda: _open_vits(folder)))
    return findings


def unsayable_characters(vocab: Any, pad: str | None, sample: str) -> str:
    """Characters of `sample`, after Milo's normalization, that the voice cannot say."""
    from services.tts.normalize import normalize
    from services.tts.text import keep_sayable

    symbols = {s for s in vocab if isinstance(s, str) and len(s) == 1}
    if pad and len(pad) == 1 and not pad.isalpha() and pad != " ":
        symbols.discard(pad)
    _, dropped = keep_sayable(normalize(sample).lower(), symbols)
    return "".join(sorted(set(dropped)))


def _unsayable(vocab: Any, tokenizer_config: Any, sample: str) -> Finding:
    pad = tokenizer_config.get("pad_token") if isinstance(tokenizer_config, dict) else None
    dropped = unsayable_characters(
        vocab if isinstance(vocab, dict) else {}, pad if isinstance(pad, str) else None, sample
    )
    if dropped:
        return warn(
            "tts",
            f"the voice cannot say {dropped!r} of typical Malagasy text: "
            "those characters are skipped",
            "fine-tune the voice with a vocabulary that has them, or accept the skip",
        )
    return ok("tts", "the voice can say every character of typical Malagasy text")


def _open_vits(folder: Path) -> None:
    from transformers import AutoTokenizer, VitsModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    VitsModel.from_pretrained(str(folder), local_files_only=True)
    AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
