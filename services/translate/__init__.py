"""Translate service: NLLB-200 on CTranslate2, Malagasy <-> French, with dynamic batching.

Run it with `milo serve translate` (or `python -m services.translate`); settings come from
MILO_TRANSLATE_* environment variables or the same names as flags (`--help`).
"""
