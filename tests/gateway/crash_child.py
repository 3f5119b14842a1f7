"""A child process for the supervisor test: says something, then dies with status 3."""

import sys

print("loading the model", flush=True)
print("RuntimeError: the model file is corrupt", flush=True)
sys.exit(3)
