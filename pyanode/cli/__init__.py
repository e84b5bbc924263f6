"""The ``pyanode`` command. Each sub-command lives in its own module and registers on ``app``.

User mistakes (:class:`pyanode.errors.PyanodeError`) are printed as one line on stderr with exit code
2, never as a traceback.
"""

from __future__ import annotations

import sys

import typer

try:  # typer up to 0.2x re-exports click; newer releases vendor it
    from click.exceptions import UsageError
except ModuleNotFoundError:
    from typer._click.exceptions import UsageError

from pyanode.errors import PyanodeError

app = typer.Typer(
    name="pyanode",
    help="Neural ODEs and Augmented Neural ODEs: forecasting and the ANODE paper's experiments.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    """Neural ODEs and Augmented Neural ODEs: forecasting and the ANODE paper's experiments."""
    if version:
        from pyanode import __version__

        typer.echo(f"pyanode {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


# Sub-commands register themselves on import.
from pyanode.cli import solve_demo  # noqa: E402,F401

for _name in ("forecast", "experiment"):
    try:
        __import__(f"pyanode.cli.{_name}")
    except ModuleNotFoundError as _err:  # a sub-command not written yet
        if _err.name != f"pyanode.cli.{_name}":
            raise


def main() -> None:
    """Entry point of the console script."""
    try:
        # Non-standalone mode lets usage errors (unknown option, missing argument) be one line too.
        # "--level 80 95": one flag per value, as click reads list options (pyanode.cli._multivalue).
        from pyanode.cli._multivalue import spread_values

        code = app(args=spread_values(sys.argv[1:]), standalone_mode=False)
    except UsageError as err:
        hint = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
        typer.echo(f"error: {err.format_message()}{hint}", err=True)
        sys.exit(2)
    except PyanodeError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
