"""`entload compare A B`: two runs side by side (terminal table, Markdown, overlay plots)."""

from __future__ import annotations

HELP = "compare two runs side by side: table (terminal and Markdown) and overlay plots"
DESCRIPTION = """\
Compare run folders A and B (a baseline folder works too): run-wide figures, then per endpoint the request
counts, error ratios, p50/p95/p99 and the change of the p95 from A to B with its 95 % bootstrap interval.
Plots (latency quantiles per endpoint, arrivals, bandwidth) go to --plots DIR (default B/compare/)."""


def add_arguments(parser):
    parser.add_argument("a", metavar="A", help="the reference run folder (or baseline folder)")
    parser.add_argument("b", metavar="B", help="the run folder to compare with A")
    parser.add_argument("--markdown", metavar="FILE", help="also write the tables as Markdown")
    parser.add_argument("--plots", metavar="DIR", help="where the overlay plots go (default: B/compare)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("--metric", choices=["p50", "p90", "p95", "p99"], default="p95",
                        help="quantile whose change is tested per endpoint (default p95)")


def run(args) -> int:
    from pathlib import Path

    from entload import compare
    from entload.errors import UsageError

    a, b = compare.open_folder(args.a), compare.open_folder(args.b)
    rows = compare.endpoint_rows(a, b, args.metric)
    print(compare.terminal_table(a, b, rows, args.metric))
    if args.markdown:
        try:
            Path(args.markdown).write_text(compare.markdown_table(a, b, rows, args.metric), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--markdown: cannot write {args.markdown} ({exc.strerror or exc})") from None
        print(f"markdown: {args.markdown}")
    if not args.no_plots:
        out = Path(args.plots) if args.plots else Path(args.b) / "compare"
        try:
            written = compare.plot(a, b, rows, out)
        except OSError as exc:
            raise UsageError(f"--plots: cannot write into {out} ({exc.strerror or exc})") from None
        for p in written:
            print(f"plot: {p}")
    return 0
