"""Milo's model services (stt, translate, llm, tts), their shared runtime and the CLI."""
