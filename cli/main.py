"""The ``mefeat`` command: a click group whose commands parse, call the library, print.

Every message a user can cause is one line on stderr, ``mefeat: error: …``: a library error
(``MefeatError``) or what the file system says of a path (``OSError``), exit status 1, or a
usage error (a bad option or value), exit status 2;
``--debug`` shows the traceback instead. Ctrl-C (SIGINT) and SIGTERM stop a command with one
line that says what was kept and how to go on (exit status 130 and 143), no traceback. Any
other exception is a bug in mefeat: its traceback is shown, with where to report it.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback

import click

from mefeat.errors import MefeatError
from mefeat.signals import Terminated, raise_terminated

REPORT = ("this is a bug in mefeat, not in your data or command: please report it, with the "
          "command and the traceback above, on the mefeat repository's issue tracker")


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (MefeatError, OSError) as exc:
            # OSError: what the file system says (no such folder, permission, disk full)
            # about a path the user gave, or about the disk they gave it on.
            if ctx.obj and ctx.obj.get("debug"):
                raise
            text = _one_line(exc) if isinstance(exc, MefeatError) else (
                f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
            click.echo(f"mefeat: error: {text}", err=True)
            sys.exit(1)
        except (KeyboardInterrupt, Terminated) as exc:
            sigint = isinstance(exc, KeyboardInterrupt)
            note = (ctx.obj or {}).get("interrupt_note")
            try:
                kept = note() if note is not None else ""
            except Exception:  # the note must not turn an interrupt into a traceback
                kept = ""
            click.echo(f"mefeat: interrupted ({'Ctrl-C' if sigint else 'SIGTERM'}): "
                       + (kept or "run the command again"), err=True)
            sys.exit(130 if sigint else 143)
        except (click.exceptions.ClickException, click.exceptions.Exit,
                click.exceptions.Abort):
            raise
        except Exception:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            traceback.print_exc()
            click.echo(f"mefeat: internal error: {REPORT}", err=True)
            sys.exit(1)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.ClickException as exc:  # usage errors: one line too
            ctx = getattr(exc, "ctx", None)
            path = " ".join(["mefeat", *ctx.command_path.split()[1:]]) if ctx else "mefeat"
            where = f" (see `{path} --help`)"
            click.echo(f"mefeat: error: {_one_line(exc.format_message())}{where}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:  # Ctrl-C before a command started
            click.echo("mefeat: interrupted (Ctrl-C) before the command started: nothing was "
                       "done; run the command again", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


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
    from . import bench_commands, data_commands, long_commands, model_commands

    for module in (data_commands, model_commands, bench_commands, long_commands):
        for command in module.COMMANDS:
            cli.add_command(command)


_register_commands()


def _unraisable(args) -> None:
    """An interrupt that lands in a finaliser or a weakref callback is "ignored" by Python
    (it prints a traceback and goes on): deliver it again, to the program itself, once this
    hook has returned (raised in the hook, it would be ignored there in turn, traceback and
    all). A timer thread sends the signal; Python runs its handler in the main thread."""
    if args.exc_type is not None and issubclass(args.exc_type, (KeyboardInterrupt, Terminated)):
        import threading

        sig = signal.SIGINT if issubclass(args.exc_type, KeyboardInterrupt) else signal.SIGTERM
        again = threading.Timer(0.05, os.kill, (os.getpid(), sig))
        again.daemon = True
        again.start()
        return
    sys.__unraisablehook__(args)


def quiet_resource_tracker() -> None:
    """An interrupted run leaves its worker pool's semaphores to multiprocessing's resource
    tracker, which removes them once this process is gone and then warns, two lines after
    the interrupt's one line. The tracker takes its warning filters from this interpreter's
    -W options when it starts (with the first pool): it cleans up silently."""
    if "ignore:resource_tracker:UserWarning" not in sys.warnoptions:
        sys.warnoptions.append("ignore:resource_tracker:UserWarning")


def main() -> None:
    signal.signal(signal.SIGTERM, raise_terminated)
    sys.unraisablehook = _unraisable
    quiet_resource_tracker()
    try:
        cli(prog_name="mefeat")
    except SystemExit as exc:
        if exc.code in (130, 143):
            # Interrupted: the one line is out; leave without the interpreter's teardown,
            # whose pending asyncio tasks of zarr and worker threads would only add noise
            # (every write was finished or discarded before the line was printed).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.code)
        if not exc.code:  # done: an interrupt from here on has nothing left to stop, and
            for s in (signal.SIGINT, signal.SIGTERM):  # would kill the teardown by signal
                signal.signal(s, signal.SIG_IGN)
        raise


if __name__ == "__main__":
    main()
