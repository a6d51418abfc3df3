"""`python -m benchmarks [NAME...] [OPTIONS]`: run the quick benchmarks (or the named ones), each printing its table.

Options after a single NAME go to that benchmark (`python -m benchmarks day_replay --workers 2`;
`python -m benchmarks logparse_speed --help` shows a benchmark's own options).

The long experiments (the whole day in one hour, the gate's 20 A/A and 20 A/B repeats, the soak) run only when
named, since they take from 10 minutes to an hour on a 2-core machine.
"""

from __future__ import annotations

import runpy
import sys
import time

QUICK = ["staging_throughput", "generator_efficiency", "logparse_speed", "capacity_end_to_end"]
LONG = ["day_replay", "soak_memory", "gate_aa_ab"]


def main(argv: list[str]) -> int:
    first_option = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, options = argv[:first_option], argv[first_option:]
    if options and len(names) != 1:
        if not names and options[0] in ("-h", "--help"):
            print(__doc__.strip())
            print(f"\nquick: {', '.join(QUICK)}\nlong (only when named): {', '.join(LONG)}")
            return 0
        print(f"benchmarks: error: option {options[0]!r} needs exactly one benchmark name before it "
              f"(got {len(names)})", file=sys.stderr)
        return 2
    names = names or QUICK
    unknown = [n for n in names if n not in QUICK + LONG]
    if unknown:
        print(f"benchmarks: error: unknown benchmark {unknown[0]!r} (expected one of {', '.join(QUICK + LONG)})",
              file=sys.stderr)
        return 2
    for name in names:
        print(f"\n## {name}\n", flush=True)
        t0 = time.monotonic()
        sys.argv = [f"benchmarks.{name}", *options]
        try:
            runpy.run_module(f"benchmarks.{name}", run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (0, None):
                print(f"benchmarks: {name} exited with {exc.code}", file=sys.stderr)
                return int(exc.code) if isinstance(exc.code, int) else 1
        print(f"({name}: {time.monotonic() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
