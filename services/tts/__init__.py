"""cascade tts service."""
