"""`milo doctor`: checks that Milo will start and answer right, before it starts.

report.py   Finding (ok / warn / fail, with the fix), the printed table, the exit code
models.py   each model folder: files, tokenizer, language codes, chat template, voice
            vocabulary, and a real load with the service's engine
gpu.py      the GPU (NVML) and the estimated VRAM of the four models
system.py   free ports and hub offline mode
cli.py      the command; `milo up` and the container images run the same checks at start
"""
