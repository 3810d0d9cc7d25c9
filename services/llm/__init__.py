"""cascade llm service."""
