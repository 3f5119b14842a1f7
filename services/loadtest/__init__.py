"""`milo loadtest`: load-test one service (stt, translate, llm, tts) or the gateway."""
