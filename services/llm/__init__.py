"""The LLM service (`milo.llm.v1.Llm`): a GGUF chat model on llama.cpp (Mistral 7B Instruct
in production, a random-weight llama in the demo set), streaming text deltas as tokens are
produced, stopping within one token when the caller cancels, with a bounded FIFO queue in
front of the model and an optional cloud model (Anthropic Messages API) tried first.

Modules: `config` (settings), `servicer` (protobuf <-> domain, with `convert`), `chat` (one
reply: cloud or local, queue, context fitting, cancellation), `engine` (the model Protocol),
`llama_engine` (llama-cpp-python), `cloud` (Anthropic streaming client), `bridge` (worker
thread -> event loop), `text` and `context` (pure logic), `metrics`, `service` (the runtime
Service).
"""
