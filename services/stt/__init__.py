"""Speech to text: faster-whisper behind `milo.stt.v1.Stt`, with Silero VAD endpointing for
streams, a hallucination guard, and `milo eval stt` (WER/CER on a manifest).

The files follow the skeleton every model service shares (see
`services/runtime/model_service.py`): `config`, `service` (composition root), `servicer` and
`convert` (protobuf <-> domain), `core` (whole clips and streams over one engine, VAD and
scheduler), `engine` (the model Protocol), `whisper_engine` (faster-whisper); and its own:
`audio`, `vad`, `stream`, `scheduler`, `guard`, `normalize`, `metrics`, and the `milo eval
stt` command (`cli`, `evaluate`).
"""
