"""The OpenAI Realtime API over one gateway session (see route.py and session.py)."""
