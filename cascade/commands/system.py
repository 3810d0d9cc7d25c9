"""`cascade models ...` and `cascade config ...`."""

from __future__ import annotations

import json

import typer
import yaml
from rich.table import Table

from cascade import models
from cascade.commands.common import cli_errors, console, settings

app = typer.Typer()
models_app = typer.Typer(help="Bundled models: what is installed and where.", no_args_is_help=True)
config_app = typer.Typer(help="Effective settings (configs/*.yaml + CASCADE_* env).", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(config_app, name="config")


@models_app.command("list")
@cli_errors
def models_list(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List bundled models with their status, size and location."""
    rows = models.listing(settings().home)
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table("name", "kind", "status", "size MB", "path / package", "description")
    for r in rows:
        colour = {"installed": "green", "missing": "yellow", "broken": "red"}[r["status"]]
        where = r["path"] or ", ".join(r["packages"])
        table.add_row(r["name"], r["kind"], f"[{colour}]{r['status']}[/]", str(r["size_mb"] or ""), where, r["description"])
    console.print(table)


@config_app.command("show")
@cli_errors
def config_show(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of YAML.")) -> None:
    """Print the effective settings after YAML and environment overrides."""
    data = settings().model_dump(mode="json")
    if as_json:
        console.print_json(json.dumps(data))
    else:
        console.print(yaml.safe_dump(data, sort_keys=False), highlight=False, end="")
