"""`entload gate RUN`: SLO thresholds and the statistical regression check against a baseline -> exit code."""

from __future__ import annotations

HELP = "check a run against SLO thresholds and a baseline (exit 0 pass, 1 fail, 2 usage/input error)"
DESCRIPTION = """\
Check a finished run folder against k6-like thresholds (--slo) and, with --baseline, test every endpoint's
latency quantile against the baseline's for a statistically significant regression of at least the minimum
effect (Holm-corrected across endpoints, each effect reported with its 95 % confidence interval).
--update-baseline DIR writes a small baseline from the run instead (or as well).
Exit 0: pass; 1: a threshold or the regression check failed; 2: usage or input error."""


def add_arguments(parser):
    parser.add_argument("run", metavar="RUN", help="run folder, e.g. results/<run-id>")
    parser.add_argument("--slo", metavar="FILE", help="thresholds and regression settings (YAML, see docs/ci.md)")
    parser.add_argument("--baseline", metavar="DIR", help="baseline folder to compare with (results/baselines/...)")
    parser.add_argument("--update-baseline", metavar="DIR",
                        help="write a baseline from RUN into DIR (refused if DIR holds another workload's "
                             "baseline, unless --force)")
    parser.add_argument("--force", action="store_true",
                        help="compare with (or overwrite) a baseline of another workload or load shape")
    parser.add_argument("--junit", metavar="FILE", help="write JUnit XML (one test case per threshold and per "
                                                        "compared endpoint)")
    parser.add_argument("--markdown", metavar="FILE", help="write a Markdown summary for a pull-request comment")
    parser.add_argument("--baseline-samples", type=int, default=2000, metavar="N",
                        help="latency samples kept per endpoint in a new baseline (default 2000)")
    parser.add_argument("--baseline-runs", type=int, default=5, metavar="K",
                        help="runs kept in the baseline: --update-baseline adds RUN and keeps the last K; with 2 or "
                             "more the gate measures the run-to-run noise from them (default 5)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="accept a run folder marked complete: false (interrupted run)")
    parser.add_argument("--quiet", "-q", action="store_true", help="print only failures and the verdict")


def run(args) -> int:
    from pathlib import Path

    from entload import gate
    from entload.errors import UsageError

    if not (args.slo or args.baseline or args.update_baseline):
        raise UsageError("give --slo FILE, --baseline DIR and/or --update-baseline DIR (see entload gate --help)")
    if args.baseline_runs < 1:
        raise UsageError(f"--baseline-runs: expected at least 1, got {args.baseline_runs}")
    if args.baseline_samples < 100:
        raise UsageError(f"--baseline-samples: expected at least 100, got {args.baseline_samples}")
    slo = gate.load_slo(args.slo) if args.slo else gate.Slo()
    need_samples = bool(args.baseline or args.update_baseline)
    run_folder = gate.load_run(args.run, allow_partial=args.allow_partial, need_samples=need_samples)
    base = gate.load_baseline(args.baseline) if args.baseline else None
    if args.update_baseline and (Path(args.update_baseline) / gate.BASELINE_FILE).exists():
        gate.check_same_workload(run_folder, gate.load_baseline(args.update_baseline), force=args.force)
    if base is not None:
        for warning in gate.check_same_workload(run_folder, base, force=args.force):
            print(f"entload gate: warning: --force: {warning}")

    thresholds = gate.evaluate_thresholds(slo, run_folder.summary, samples=run_folder.samples
                                          if run_folder.samples_path else None)
    regression = None
    if base is not None:
        regression = gate.compare_samples(base.samples, run_folder.samples, slo.regression)
        regression.baseline_name = f"{base.path} ({base.name})"
    passed = not any(r.status == "fail" for r in thresholds) and not (regression and regression.failed)

    if args.quiet:
        for line in gate.failure_lines(thresholds, regression):
            print(f"FAIL  {line}")
        print(f"gate: {'PASS' if passed else 'FAIL'}")
    else:
        print(gate.terminal_report(run_folder, thresholds, regression, passed))
    if args.junit:
        _write(Path(args.junit), gate.junit_xml(run_folder, thresholds, regression), "--junit")
    if args.markdown:
        _write(Path(args.markdown), gate.markdown_report(run_folder, thresholds, regression, passed), "--markdown")
    if args.update_baseline:
        out = gate.write_baseline(run_folder, args.update_baseline, per_endpoint=args.baseline_samples,
                                  max_runs=args.baseline_runs, force=args.force)
        size = sum(p.stat().st_size for p in out.path.iterdir() if p.is_file())
        print(f"baseline written: {out.path} ({len(out.members)} run(s), {size / 1024:.0f} KiB, workload "
              f"{str(run_folder.workload_digest)[:12]})")
    return 0 if passed else 1


def _write(path, text: str, option: str) -> None:
    from entload.errors import UsageError

    try:
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{option}: cannot write {path} ({exc.strerror or exc})") from None
