"""What every service shares: error envelope, auth, limits, queue, metrics, logs, app factory."""
