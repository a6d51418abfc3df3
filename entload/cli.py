"""The `entload` command: one entry point, one module per subcommand under `entload/commands/`.

Each command module exposes `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`, and
imports its heavy dependencies inside `run`, so `entload --help` stays fast. User mistakes raise
`entload.errors.EntloadError` and become one line on stderr with exit code 2; argparse's own usage
errors also exit 2 with one line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from entload import __version__
from entload.errors import EntloadError

COMMANDS = ["staging", "run", "profile", "capacity", "gate", "compare", "validate-link"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the option, plus where to look."""

    def error(self, message: str):  # noqa: D102 - argparse hook
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _module(name: str):
    return importlib.import_module(f"entload.commands.{name.replace('-', '_')}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="entload",
        description="Replay an ENT school day against a staging ENT, measure it, and plan the link.",
    )
    parser.add_argument("--version", action="version", version=f"entload {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        mod = _module(name)
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _prog=p.prog)
    return parser


def main(argv: list[str] | None = None) -> int:
    # With no logging configured, Python prints every library warning bare on stderr; matplotlib's font manager
    # then fills a run's output with "findfont: ... STIXGeneral not found" lines for each plot with log-scale
    # tick labels (it falls back to DejaVu Sans, which is what we want). Its errors still show.
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # name the subcommand whose options these are not, not the top-level parser
        prog = getattr(args, "_prog", parser.prog)
        print(f"{prog}: error: unrecognized arguments: {' '.join(extra)} (see {prog} --help)", file=sys.stderr)
        return 2
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except EntloadError as exc:
        print(f"{args._prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{args._prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
