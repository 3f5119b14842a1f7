"""Speech to text: faster-whisper behind `milo.stt.v1.Stt`, with Silero VAD endpointing for
streams, a hallucination guard, and `milo eval stt` (WER/CER on a manifest)."""
