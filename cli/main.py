"""The ``mefeat`` command: a click group whose commands parse, call the library, print.

Library errors (``MefeatError``) become a one-line message and exit status 1; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import sys

import click

from mefeat.errors import MefeatError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MefeatError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


def _environment_lines(as_json: bool = False) -> list[str]:
    import json

    import mefeat.flow.dual_tvl1  # noqa: F401  (declares the TV-L1 kernel)
    import mefeat.models  # noqa: F401  (declares the model kernels, loads torch)
    from mefeat.provenance import environment, format_environment

    env = environment()
    return [json.dumps(env, indent=1)] if as_json else format_environment(env)


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    for line in _environment_lines():
        click.echo(line)
    ctx.exit()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Show mefeat's version, commit and environment "
              "(as `mefeat env`) and exit.")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.option("--plugin", "plugins", multiple=True, envvar="MEFEAT_PLUGINS",
              metavar="MODULE", help="Import MODULE first, e.g. one that registers your own "
              "models with @mefeat.models.register (repeatable; env MEFEAT_PLUGINS).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, plugins: tuple[str, ...]) -> None:
    """Micro-expression recognition: raw dataset folders → feature store → LOSO benchmarks.

    \b
    Example:
      mefeat demo --out demo
      mefeat extract demo/CASME2 --dataset casme2 --labels casme2-5 \\
          --annotations demo/CASME2/CASME2-coding-demo.xlsx --store demo/features.zarr
      mefeat inspect demo/features.zarr
    """
    ctx.obj = {"debug": debug}
    import importlib

    for name in plugins:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise click.BadParameter(f"cannot import {name!r}: {exc}",
                                     param_hint="--plugin") from None


@cli.command("env")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def env(as_json: bool) -> None:
    """Show what made mefeat's numbers here: mefeat's version and git commit, Python, numpy,
    torch, OpenCV, dlib, zarr, the CPU's vector extensions and the compiled kernels (built,
    in use, or why not). Every store, run and bench records the same.

    \b
    Example:
      mefeat env
    """
    for line in _environment_lines(as_json):
        click.echo(line)


def _register_commands() -> None:
    # Each command lives in its own module; importing them here keeps `mefeat --help` fast
    # enough while the heavy libraries load only inside the commands.
    from . import bench_commands, data_commands, model_commands

    for module in (data_commands, model_commands, bench_commands):
        for command in module.COMMANDS:
            cli.add_command(command)


_register_commands()


def main() -> None:
    cli(prog_name="mefeat")


if __name__ == "__main__":
    main()
