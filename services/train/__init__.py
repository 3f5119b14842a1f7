"""`milo train`: fine-tune Milo's models with transformers' Trainer (Whisper for STT today).

See services/train/README.md for the command, the dataset layouts, resume and export.
"""
