"""One module per CLI area; each defines `app = typer.Typer()` (and `GROUP = "name"` for a sub-group)."""
