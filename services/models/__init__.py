"""Model preparation for Milo: the offline demo set, fetching and converting the real models.

`milo models demo|fetch|convert` (see `services.models.cli`) fill the folder described in
`services.models.layout`. Heavy libraries (torch, transformers, ctranslate2, gguf,
huggingface_hub) are imported lazily, inside the functions that need them.
"""
