"""The LLM service (`milo.llm.v1.Llm`): a GGUF chat model on llama.cpp (Mistral 7B Instruct
in production, a random-weight llama in the demo set), streaming text deltas as tokens are
produced, stopping within one token when the caller cancels, with a bounded FIFO queue in
front of the model and an optional cloud model (Anthropic Messages API) tried first.

The files follow the skeleton every model service shares (see
`services/runtime/model_service.py`): `config`, `service` (composition root), `servicer` and
`convert` (protobuf <-> domain), `core` (one reply: cloud or local, queue, context fitting,
cancellation), `engine` (the model Protocol), `llama_engine` (llama-cpp-python); and its
own: `cloud` (Anthropic streaming client), `bridge` (worker thread -> event loop), `text`
and `context` (pure logic), `metrics`.
"""
