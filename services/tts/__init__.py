"""Text to speech for Malagasy: MMS-TTS (VITS) behind milo.tts.v1.Tts, with Malagasy text
normalization and sentence-streamed audio.

The files follow the skeleton every model service shares (see
`services/runtime/model_service.py`): `config`, `service` (composition root), `servicer` and
`convert` (protobuf <-> domain), `core` (one synthesis as a stream of events), `engine` (the
model Protocol), `vits_engine` (transformers VITS); and its own: `text`, `normalize`,
`numbers` (Malagasy text), `audio` (resampling, encoding, chunks), `metrics`.
"""
