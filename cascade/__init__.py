"""cascade: Whisper N-best -> LLM correction -> replies -> speech."""

__version__ = "0.1.0"
