"""cascade gateway service."""
