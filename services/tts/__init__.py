"""Text to speech for Malagasy: MMS-TTS (VITS) behind milo.tts.v1.Tts, with Malagasy text
normalization and sentence-streamed audio."""
