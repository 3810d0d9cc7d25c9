"""What every command shares: the error boundary (one line on stderr, exit 1), consoles and settings."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from cascade.config import Settings, load_settings
from cascade.types import CascadeError

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def cli_errors(fn: F) -> F:
    """Turn cascade errors (and other expected failures) into one line on stderr and exit code 1.

    Set CASCADE_DEBUG=1 to see the traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - this is the boundary
            if os.environ.get("CASCADE_DEBUG"):
                raise
            fail(exc)

    return wrapper  # type: ignore[return-value]


def error_line(exc: BaseException) -> str:
    """The one-line message a user sees for an error."""
    if isinstance(exc, CascadeError):
        return exc.message
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename or exc}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def fail(exc: BaseException | str, code: int = 1) -> None:
    message = exc if isinstance(exc, str) else error_line(exc)
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings(**sections: dict[str, Any] | None) -> Settings:
    """Settings from YAML + env with CLI flags (None = not given) laid on top, per stage."""
    overrides = {
        name: {k: v for k, v in (values or {}).items() if v is not None} for name, values in sections.items()
    }
    return load_settings({k: v for k, v in overrides.items() if v})
