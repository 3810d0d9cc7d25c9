"""cascade asr service."""
