"""Speech translation helped by the LLM: Whisper's translate N-best fused or rescored, or a
transcript corrected and then translated (cascade.translate.speech)."""
