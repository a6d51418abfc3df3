"""`entload staging`: serve the embedded staging ENT (and Enseigno) on loopback, or export its accounts."""

from __future__ import annotations

HELP = "serve the embedded staging ENT and Enseigno on loopback (or export the seeded accounts)"
DESCRIPTION = (
    "Serve the embedded staging ENT (ODE / Open ENT NG routes) and Enseigno with real uvicorn, with seeded "
    "test accounts, a session quota, fault knobs and a combined-format access log. Prints its URLs and a line "
    "with 'ready'; stops on Ctrl-C / SIGTERM. Settings: staging/defaults.yaml, overridden by --config FILE; "
    "faults change at run time through PUT /__admin/faults (loopback clients only)."
)
MAX_STUDENTS = 75_000


def add_arguments(parser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; loopback only "
                        "unless --allow-non-loopback)")
    parser.add_argument("--port", type=int, default=8080, help="ENT port (default 8080)")
    parser.add_argument("--enseigno-port", type=int, default=0, metavar="PORT",
                        help="Enseigno port (default 0 = ENT port + 1)")
    parser.add_argument("--workers", type=int, default=1, help="server processes sharing the ports; sessions, the "
                        "session quota and upload quotas hold across them (default 1)")
    parser.add_argument("--config", metavar="FILE", help="YAML overriding staging/defaults.yaml (faults, "
                        "session_quota, sizes, ...)")
    parser.add_argument("--access-log", metavar="FILE", help="append a combined-format access log here "
                        "(Enseigno's goes to FILE-enseigno); default: no log")
    parser.add_argument("--seed", type=int, default=1, help="seed of accounts, passwords and content (default 1)")
    parser.add_argument("--students", type=int, default=3000,
                        help=f"students in the seeded département (default 3000 = 5 collèges; up to {MAX_STUDENTS:,})")
    parser.add_argument("--export-accounts", metavar="FILE",
                        help="write the accounts as CSV (login,password,persona,...) to FILE ('-' = stdout) and exit")
    parser.add_argument("--allow-non-loopback", action="store_true",
                        help="allow --host to be a non-loopback address (the staging ENT has only test accounts, "
                        "but it is not hardened: keep it off shared networks)")


def _check(args) -> None:
    from entload.errors import UsageError
    from entload.hostsafety import is_loopback_host

    if not 1 <= args.students <= MAX_STUDENTS:
        raise UsageError(f"--students: expected a whole number from 1 to {MAX_STUDENTS}, got {args.students}")
    if args.export_accounts:
        return
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port: expected a port from 0 to 65535, got {args.port}")
    if not 0 <= args.enseigno_port <= 65535:
        raise UsageError(f"--enseigno-port: expected a port from 0 to 65535, got {args.enseigno_port}")
    if not 1 <= args.workers <= 64:
        raise UsageError(f"--workers: expected a whole number from 1 to 64, got {args.workers}")
    if not is_loopback_host(args.host) and not args.allow_non_loopback:
        raise UsageError(f"--host {args.host}: refusing to listen on a non-loopback address "
                         "(add --allow-non-loopback if you really mean it)")


def _export(args, settings) -> int:
    import csv
    import sys

    from entload.errors import UsageError
    from staging.accounts import Directory

    directory = Directory(args.students, args.seed, settings["accounts"])
    fields = ["login", "password", "persona", "user_id", "display_name", "school_id", "class_ids", "children_ids"]

    def write(fh) -> int:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        n = 0
        for row in directory.iter_accounts():
            writer.writerow(row)
            n += 1
        return n

    if args.export_accounts == "-":
        write(sys.stdout)
        return 0
    try:
        with open(args.export_accounts, "w", newline="", encoding="utf-8") as fh:
            n = write(fh)
    except OSError as exc:
        raise UsageError(f"--export-accounts {args.export_accounts}: cannot write ({exc.strerror or exc})") from None
    print(f"wrote {n} accounts (seed {args.seed}, {args.students} students) to {args.export_accounts}")
    return 0


def run(args) -> int:
    from entload.errors import InputError, UsageError
    from staging.config import ConfigError, load

    _check(args)
    try:
        settings = load(args.config)
    except ConfigError as exc:
        raise InputError(str(exc)) from None
    if args.export_accounts:
        return _export(args, settings)

    import sys

    from entload.hostsafety import is_loopback_host
    from staging.server import BindError, serve

    if not is_loopback_host(args.host):
        print(f"warning: --allow-non-loopback: listening on {args.host}, reachable from other machines; "
              "only test accounts exist, but this server is not hardened", file=sys.stderr)

    eport = args.enseigno_port or (args.port + 1 if args.port else 0)
    if eport > 65535:
        raise UsageError(f"--enseigno-port: ENT port + 1 is {eport}; give --enseigno-port")
    try:
        return serve(settings, args.host, args.port, eport, args.workers, args.seed, args.students,
                     args.access_log)
    except BindError as exc:
        raise UsageError(str(exc)) from None
