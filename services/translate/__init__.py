"""Translate service: NLLB-200 on CTranslate2, Malagasy <-> French, with dynamic batching.

Run it with `milo serve translate` (or `python -m services.translate`); settings come from
MILO_TRANSLATE_* environment variables or the same names as flags (`--help`).

The files follow the skeleton every model service shares (see
`services/runtime/model_service.py`): `config`, `service` (composition root), `servicer` and
`convert` (protobuf <-> domain), `core` (checks, sentence splitting, cache, batcher),
`engine` (the model Protocol), `ct2_engine` (CTranslate2); and its own: `batcher`, `cache`,
`languages`, `text`, `guards`, `vocab`, `metrics`.
"""
