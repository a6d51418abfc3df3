"""Orchestration of `entload run`: staging ENT (optional), Locust process(es), progress, the run folder.

Locust runs as subprocesses with `-f <scenarios>` exactly as a user would run it (`locust -f scenarios`), so
both paths replay the same day; `--workers N` is Locust's own master + N workers on loopback. This module
adds what Locust does not do: start and stop the embedded staging ENT, create the run folder and its
manifest, show one progress line read from the recorder's files, forward Ctrl-C/SIGTERM so Locust writes
its stats, and finish the folder (plots, report.html, `complete` flags) whatever happened.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from entload import runstore
from entload.errors import EntloadError, InputError
from entload.runstore import RunFolder, atomic_write_json, iso_utc, read_json

STAGING_READY_TIMEOUT_S = 60.0
WORKER_QUIT_TIMEOUT_S = 15.0


@dataclass
class RunOptions:
    """Validated options of one run (the command layer parses and checks them)."""

    host: str | None = None
    enseigno_host: str | None = None
    workload: Path | None = None
    day_in: str | None = None
    day_in_s: float | None = None
    from_: str | None = None
    to: str | None = None
    from_s: float = 0.0
    to_s: float = 86400.0
    scale: float | None = None
    workers: int = 0
    run_id: str = ""
    out: Path = Path("results")
    staging_config: Path | None = None
    staging_workers: int = 1
    seed: int | None = None
    metrics_port: int = 0
    metrics_bind: str | None = None
    pushgateway: str | None = None
    allow_hosts: list[str] = field(default_factory=list)
    accounts: Path | None = None
    day_type: str | None = None
    arrivals: str | None = None
    locustfile: Path | None = None  # tests only: another locustfile than the scenarios
    progress: bool = True
    slo: object | None = None  # entload.gate.Slo, checked during the run when abort_on_fail
    abort_on_fail: bool = False
    slo_grace_s: float = 30.0

    @property
    def compression(self) -> float:
        """k, simulated seconds per wall second: the window is replayed in --day-in (the scenarios' rule)."""
        return (self.to_s - self.from_s) / self.day_in_s if self.day_in_s else 1.0

    @property
    def expected_wall_s(self) -> float:
        return self.day_in_s or (self.to_s - self.from_s)


def scenarios_dir() -> Path:
    """The installed `scenarios` package folder (what `locust -f scenarios` loads)."""
    import scenarios

    return Path(scenarios.__file__).resolve().parent


def locust_conf() -> Path | None:
    conf = scenarios_dir().parent / "locust.conf"
    return conf if conf.exists() else None


def conf_defaults() -> dict[str, str]:
    """`key = value` settings of locust.conf: `entload run` takes its defaults from there, so that it and
    `locust -f scenarios --config locust.conf` replay the same day."""
    conf = locust_conf()
    out: dict[str, str] = {}
    if conf is None:
        return out
    for line in conf.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _workload_loader():
    try:
        import scenarios

        loader = getattr(scenarios, "load_workload", None)
        if loader is None:
            from scenarios import _workload

            loader = _workload.load_workload
        return loader
    except (ImportError, AttributeError):
        return None


def workload_digest(path: Path | None, day_type: str | None = None) -> tuple[str | None, str | None]:
    """Validate the workload (and day type) with the scenarios' own loader before anything starts (a bad
    file is a one-line InputError naming file and key) and return (file, digest of its canonical form)."""
    loader = _workload_loader()
    if loader is not None:
        try:
            workload = loader(str(path) if path else None)
            if day_type:
                workload.day(day_type)
        except ValueError as exc:  # the loader's WorkloadError names file, line and key
            text = str(exc).strip().splitlines()
            raise InputError(text[0] if text else f"{path}: invalid workload") from None
        digest = workload.digest() if hasattr(workload, "digest") else runstore.canonical_digest(workload.raw)
        return str(getattr(workload, "path", path)), digest
    if path is None:
        return None, None
    try:
        import yaml

        return str(path), runstore.canonical_digest(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    except Exception as exc:
        raise InputError(f"--workload: {path}: not valid YAML ({type(exc).__name__})") from None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if `entload run` itself dies (even by SIGKILL), so no staging
    server or Locust process outlives it (Linux prctl PR_SET_PDEATHSIG; a no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))
    except Exception:
        pass


def _http_ok(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).read()
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _staging_common(config: Path | None, seed: int | None) -> list[str]:
    args = []
    if config:
        args += ["--config", str(config)]
    if seed is not None:
        args += ["--seed", str(seed)]
    return args


def export_accounts(path: Path, config: Path | None, seed: int | None) -> None:
    """The staging ENT's seeded accounts (with passwords) into `path`, a private temp file."""
    cmd = [sys.executable, "-m", "entload", "staging", "--export-accounts", str(path), *_staging_common(config, seed)]
    export = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if export.returncode != 0 or not path.exists():
        msg = (export.stderr or export.stdout).strip().splitlines()
        raise EntloadError(f"exporting the staging ENT's accounts failed: {msg[-1] if msg else export.returncode}")
    os.chmod(path, 0o600)


# -- the embedded staging ENT ------------------------------------------------------------------------------
class EmbeddedStaging:
    """`entload staging` on free loopback ports, for the length of a run."""

    def __init__(self, run_dir: Path, tmp: Path, config: Path | None, seed: int | None, workers: int = 1):
        self.run_dir, self.tmp, self.config, self.seed, self.workers = run_dir, tmp, config, seed, workers
        self.port, self.eport = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.enseigno_url = f"http://127.0.0.1:{self.eport}"
        self.accounts = tmp / "accounts.csv"  # holds passwords: never in the run folder
        self.proc: subprocess.Popen | None = None
        self.log_path = run_dir / "staging.log"

    def _common(self) -> list[str]:
        return _staging_common(self.config, self.seed)

    def start(self) -> None:
        base = [sys.executable, "-m", "entload", "staging"]
        args = base + ["--host", "127.0.0.1", "--port", str(self.port), "--enseigno-port", str(self.eport),
                       "--access-log", str(self.run_dir / "staging-access.log"),
                       "--workers", str(self.workers)] + self._common()  # fmt: skip
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=_die_with_parent)  # fmt: skip
        log.close()
        export_accounts(self.accounts, self.config, self.seed)  # while the server boots
        deadline = time.monotonic() + STAGING_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()
                raise EntloadError(f"embedded staging ENT exited ({self.proc.returncode}): {tail[-1] if tail else ''}")
            if _http_ok(self.url + "/healthz") and _http_ok(self.enseigno_url + "/healthz"):
                return
            time.sleep(0.1)
        self.stop()
        raise EntloadError(f"embedded staging ENT did not answer /healthz within {STAGING_READY_TIMEOUT_S:.0f}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# -- Locust command lines ------------------------------------------------------------------------------------
def locust_args(opts: RunOptions, run_dir: Path, host: str, enseigno_host: str | None,
                accounts: Path | None) -> list[str]:  # fmt: skip
    """Arguments common to the local process, the master and the workers."""
    locustfile = str(opts.locustfile or scenarios_dir())
    if (opts.metrics_port or opts.pushgateway) and not _registers_metrics(Path(locustfile)):
        # the Prometheus exporter comes with the locustfile that imports it; if this one does not, load it
        # alongside (its registration is idempotent, so a later import by the scenarios changes nothing)
        import exporters.metrics

        locustfile += "," + exporters.metrics.__file__
    args = [sys.executable, "-m", "locust", "-f", locustfile]
    conf = locust_conf()
    if conf and opts.locustfile is None:
        args += ["--config", str(conf)]
    args += ["--headless", "--host", host, "--exit-code-on-error", "0", "--only-summary"]
    for flag, value in (
        ("--workload", opts.workload), ("--day-in", opts.day_in), ("--from", opts.from_), ("--to", opts.to),
        ("--scale", opts.scale), ("--seed", opts.seed), ("--accounts", accounts),
        ("--enseigno-host", enseigno_host), ("--day-type", opts.day_type), ("--arrivals", opts.arrivals),
    ):  # fmt: skip
        if value is not None:
            args += [flag, str(value)]
    for h in opts.allow_hosts:
        args += ["--allow-host", h]
    args += ["--results-dir", str(run_dir), "--run-id", opts.run_id]
    if opts.metrics_port:
        args += ["--metrics-port", str(opts.metrics_port)]
        if opts.metrics_bind:
            args += ["--metrics-bind", opts.metrics_bind]
    if opts.pushgateway:
        args += ["--pushgateway", opts.pushgateway]
    return args


def _registers_metrics(locustfile: Path) -> bool:
    files = [locustfile] if locustfile.is_file() else sorted(locustfile.glob("[!_]*.py"))
    return any("exporters.metrics" in f.read_text(encoding="utf-8", errors="replace") for f in files)


def _locust_env() -> dict:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class LocustProcesses:
    """The local process, or a master and N workers, started in their own session (we forward signals)."""

    def __init__(self, opts: RunOptions, run_dir: Path, host: str, enseigno_host: str | None,
                 accounts: Path | None):  # fmt: skip
        self.run_dir = run_dir
        base = locust_args(opts, run_dir, host, enseigno_host, accounts)
        outputs = ["--csv", str(run_dir / "locust"), "--html", str(run_dir / "locust_report.html")]
        self.commands: list[tuple[list[str], Path]] = []
        if opts.workers > 0:
            port = free_port()
            self.commands.append((base + outputs + ["--master", "--master-bind-host", "127.0.0.1",
                                  "--master-bind-port", str(port), "--expect-workers", str(opts.workers),
                                  "--expect-workers-max-wait", "60"], run_dir / "locust.log"))  # fmt: skip
            for i in range(opts.workers):
                self.commands.append((base + ["--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
                                      run_dir / f"locust-worker-{i + 1}.log"))  # fmt: skip
        else:
            self.commands.append((base + outputs, run_dir / "locust.log"))
        self.procs: list[subprocess.Popen] = []

    @property
    def main(self) -> subprocess.Popen:
        return self.procs[0]

    def start(self) -> None:
        for cmd, log_path in self.commands:
            log = open(log_path, "wb")
            self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                               start_new_session=True, env=_locust_env(),
                                               cwd=self.run_dir, preexec_fn=_die_with_parent))  # fmt: skip
            log.close()

    def interrupt(self) -> None:
        """Ctrl-C for Locust: the local process or master stops the test, tells workers, writes its stats."""
        if self.procs and self.main.poll() is None:
            self.main.send_signal(signal.SIGINT)

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()

    def wait_all(self) -> int:
        rc = self.main.wait()
        deadline = time.monotonic() + WORKER_QUIT_TIMEOUT_S
        for p in self.procs[1:]:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)
                if p.poll() is None:
                    p.kill()
        return rc

    def log_tail(self, lines: int = 1) -> str:
        """The last error line Locust logged (the scenarios print `locust: error: ...` for a user error)."""
        path = self.commands[0][1]
        text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        useful = [t for t in text if "error" in t.lower() and "exit code" not in t.lower()] or text
        return " | ".join(t.strip() for t in useful[-lines:])


# -- progress ------------------------------------------------------------------------------------------------
def clock_text(sim_s: float) -> str:
    sim_s = max(0.0, sim_s)
    return f"{int(sim_s // 3600):02d}:{int(sim_s % 3600 // 60):02d}"


def duration_text(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
    """Tails timeseries.csv (written by the recorder) and shows one updating line."""

    def __init__(self, path: Path, expected_wall_s: float, stream=None):
        self.path, self.expected = path, expected_wall_s
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.offset = 0
        self.header: list[str] | None = None
        self.partial = ""
        self.arrivals = self.target = self.requests = self.failures = self.dropped = 0.0
        self.recent: list[dict] = []
        self.sim_clock = None
        self.started = time.monotonic()
        self._last_plain = 0.0
        self._width = 0

    def poll(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                f.seek(self.offset)
                chunk = f.read()
                self.offset = f.tell()
        except FileNotFoundError:
            return
        text = self.partial + chunk
        lines = text.split("\n")
        self.partial = lines.pop()  # an incomplete last line waits for the next poll
        for row in csv.reader(io.StringIO("\n".join(lines))):
            if not row:
                continue
            if self.header is None:
                self.header = row
                continue
            r = dict(zip(self.header, row, strict=False))
            self.arrivals += float(r.get("arrivals") or 0)
            self.target += float(r.get("arrivals_target") or 0)
            self.requests += float(r.get("requests") or 0)
            self.failures += float(r.get("failures") or 0)
            self.dropped += float(r.get("dropped") or 0)
            self.sim_clock = float(r.get("sim_clock_s") or 0)
            self.recent = (self.recent + [r])[-5:]

    def line(self) -> str:
        rps = sum(float(r.get("requests") or 0) for r in self.recent) / max(1, len(self.recent))
        p95s = [float(r["p95_s"]) for r in self.recent if r.get("p95_s")]
        p95 = f"{max(p95s) * 1000:.0f} ms" if p95s else "–"
        err = f"{self.failures:.0f}" + (f" ({self.failures / self.requests:.1%})" if self.requests else "")
        clock = clock_text(self.sim_clock) if self.sim_clock is not None else "--:--"
        elapsed = time.monotonic() - self.started
        return (f"sim {clock} | arrivals {self.arrivals:.0f}/{self.target:.0f} dropped {self.dropped:.0f} | "
                f"{rps:.0f} req/s | p95 {p95} | errors {err} | {duration_text(elapsed)}"
                f"/{duration_text(self.expected)}")  # fmt: skip

    def show(self, force: bool = False) -> None:
        self.poll()
        text = self.line()
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
            self.stream.flush()
        elif force or time.monotonic() - self._last_plain >= 15:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last_plain = time.monotonic()

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()


# -- the run -------------------------------------------------------------------------------------------------
class _Signals:
    """First Ctrl-C/SIGTERM: forward to Locust and let it finish; a second one: kill it."""

    def __init__(self, on_first, on_second):
        self.count = 0
        self.on_first, self.on_second = on_first, on_second
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        self.count += 1
        (self.on_first if self.count == 1 else self.on_second)()

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def execute(opts: RunOptions, out=None) -> int:
    """Run one replay; return the exit code (0 complete, 130 interrupted, 1 the run failed)."""
    out = out or sys.stdout
    workload_file, digest = workload_digest(opts.workload, opts.day_type)
    run_dir = runstore.create_run_dir(opts.out, opts.run_id)
    folder = RunFolder(run_dir)
    embedded = opts.host is None
    manifest = runstore.new_manifest(
        opts.run_id,
        workload_file=workload_file, workload_digest=digest,
        host=opts.host, enseigno_host=opts.enseigno_host, embedded_staging=embedded,
        compression=opts.compression, day_in_s=opts.day_in_s,
        window={"from_s": opts.from_s, "to_s": opts.to_s}, scale=opts.scale, day_type=opts.day_type,
        seed=opts.seed, workers=opts.workers, staging_workers=opts.staging_workers if embedded else None,
        expected_duration_s=round(opts.expected_wall_s, 3),
    )  # fmt: skip
    folder.write_manifest(manifest)
    tmp = Path(tempfile.mkdtemp(prefix="entload-run-"))
    staging: EmbeddedStaging | None = None
    locust: LocustProcesses | None = None
    interrupted = False
    rc: int | None = None
    end_reason = "completed"

    def first_signal():
        nonlocal interrupted
        interrupted = True
        if locust is not None:
            locust.interrupt()

    def second_signal():
        if locust is not None:
            locust.kill()

    try:
        with _Signals(first_signal, second_signal):
            host, enseigno_host, accounts = opts.host, opts.enseigno_host, opts.accounts
            if embedded:
                print(f"starting the embedded staging ENT (log: {run_dir / 'staging.log'})", file=out)
                staging = EmbeddedStaging(run_dir, tmp, opts.staging_config, opts.seed, opts.staging_workers)
                staging.start()
                host, enseigno_host, accounts = staging.url, staging.enseigno_url, staging.accounts
                folder.update_manifest(host=host, enseigno_host=enseigno_host)
            elif accounts is None:
                accounts = tmp / "accounts.csv"
                export_accounts(accounts, None, opts.seed)
                print("using the staging ENT's seeded accounts (pass --accounts CSV for other ones)", file=out)
            if opts.metrics_port:
                _write_prometheus_config(run_dir, opts)
            if interrupted:
                raise KeyboardInterrupt
            locust = LocustProcesses(opts, run_dir, host, enseigno_host, accounts)
            print(f"replaying {clock_text(opts.from_s)}–{clock_text(opts.to_s)} at {opts.compression:g}× "
                  f"(about {duration_text(opts.expected_wall_s)}) against {host}"
                  + (f" with {opts.workers} workers" if opts.workers else ""), file=out)  # fmt: skip
            locust.start()
            if interrupted:
                locust.interrupt()
            progress = Progress(run_dir / "timeseries.csv", opts.expected_wall_s, out)
            deadline = time.monotonic() + opts.expected_wall_s * 1.5 + 180
            live = None
            if opts.slo is not None and opts.abort_on_fail:
                from entload.gate import LiveGate

                live, live_t0 = LiveGate(opts.slo, grace_s=opts.slo_grace_s), time.monotonic()
            while locust.main.poll() is None:
                time.sleep(0.5)
                if opts.progress:
                    progress.show()
                if live is not None and not interrupted:
                    broken = live.check(folder.summary_path, time.monotonic() - live_t0)
                    if broken:
                        for line in broken:
                            print(f"threshold failed: {line}", file=out)
                        end_reason = "aborted: SLO threshold failed"
                        interrupted = True
                        locust.interrupt()
                if time.monotonic() > deadline and not interrupted:
                    end_reason = "overran its expected duration"
                    interrupted = True
                    locust.interrupt()
            rc = locust.wait_all()
            if opts.progress:
                progress.show(force=not progress.tty)
                progress.close()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if locust is not None and locust.procs:
            locust.interrupt()
            with contextlib.suppress(Exception):
                locust.wait_all()
        if staging is not None:
            staging.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    aborted = end_reason.startswith("aborted")
    if interrupted and end_reason == "completed":
        end_reason = "interrupted"
    elif rc not in (0, None) or locust is None:
        end_reason = f"locust exited with {rc}" if locust is not None else "did not start"
    if rc == 2 and not interrupted and locust is not None and not folder.summary_path.exists():
        # a user error the scenarios caught before anything ran (accounts file, option...): one line, exit 2,
        # and no half-empty run folder left behind
        message = locust.log_tail().removeprefix("locust: error: ")
        shutil.rmtree(run_dir, ignore_errors=True)
        raise InputError(message)
    code = finish_folder(folder, interrupted, end_reason, rc, locust, out)
    return 1 if aborted else code


def _write_prometheus_config(run_dir: Path, opts: RunOptions) -> None:
    try:
        from exporters.metrics import metrics_targets, scrape_config
    except ImportError:
        return
    targets = metrics_targets(opts.metrics_bind or "127.0.0.1", opts.metrics_port, opts.workers)
    (run_dir / "prometheus.yml").write_text(scrape_config(opts.run_id, targets), encoding="utf-8")


def finish_folder(folder: RunFolder, interrupted: bool, end_reason: str, rc: int | None,
                  locust: LocustProcesses | None, out) -> int:  # fmt: skip
    """Flags, plots and report, whatever happened; then the summary table."""
    summary_ok = folder.summary_path.exists()
    complete = False
    if summary_ok:
        summary = read_json(folder.summary_path)
        complete = bool(summary.get("complete")) and not interrupted and rc == 0
        if not complete and summary.get("complete"):
            summary["complete"] = False
            summary["end_reason"] = end_reason
            atomic_write_json(folder.summary_path, summary)
    folder.update_manifest(ended_at=iso_utc(), complete=complete, end_reason=end_reason, locust_exit_code=rc)
    from entload import report

    try:
        report.make_plots(folder)
    except Exception as exc:  # a plot must not lose the measurements
        print(f"warning: plots failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    report.write_report(folder)
    if summary_ok:
        print_summary(folder, out)
    else:
        print(f"no measurements were recorded ({end_reason})"
              + (f": {locust.log_tail()}" if locust is not None else ""), file=out)  # fmt: skip
    print(f"results: {folder.path}/  (report: {folder.path / 'report.html'}, plots: {folder.path / 'plots'}/)",
          file=out)  # fmt: skip
    if interrupted:
        return 130
    if not complete:
        return 1
    return 0


def _human_bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def _ms(x) -> str:
    return "–" if x is None else f"{x * 1000:.0f} ms"


def print_summary(folder: RunFolder, out) -> None:
    s = folder.summary()
    m = folder.manifest()
    a = s.get("arrivals", {})
    target = a.get("target") or 0
    pct = f" ({a.get('achieved', 0) / target:.1%} of target)" if target else ""
    req, fail = s.get("requests", 0), s.get("failures", 0)
    lat = s.get("latency_s", {})
    status = "complete" if m.get("complete") else f"INCOMPLETE: {m.get('end_reason')}"
    lines = [
        "",
        f"run {m.get('run_id')}: {status}, {duration_text(s.get('duration_s', 0))} wall, "
        f"{m.get('compression', 1):g}× compression, scale {m.get('scale') if m.get('scale') is not None else 'default'}",
        f"  arrivals   target {target:,.0f}  achieved {a.get('achieved', 0):,}{pct}  dropped {a.get('dropped', 0):,}"
        f"  late {a.get('late', 0):,}",
        f"  requests   {req:,} ({s.get('requests_per_s', 0):.0f}/s)  failures {fail:,}"
        + (f" ({fail / req:.2%})" if req else ""),
        f"  latency    p50 {_ms(lat.get('p50'))}  p95 {_ms(lat.get('p95'))}  p99 {_ms(lat.get('p99'))}",
        f"  bytes      down {_human_bytes(s.get('bytes', {}).get('down', 0))}  "
        f"up {_human_bytes(s.get('bytes', {}).get('up', 0))}",
        "",
        f"  {'persona':<18} {'visits':>8} {'done':>8} {'failed':>7} {'quota':>6} {'down/visit':>11} {'up/visit':>10}",
    ]  # fmt: skip
    for name, p in s.get("personas", {}).items():
        pv = s.get("per_visit_bytes", {}).get(name, {})
        lines.append(f"  {name:<18} {p.get('visits_started', 0):>8,} {p.get('visits_completed', 0):>8,} "
                     f"{p.get('visits_failed', 0):>7,} {p.get('visits_quota', 0):>6,} "
                     f"{_human_bytes(pv.get('down') or 0):>11} {_human_bytes(pv.get('up') or 0):>10}")  # fmt: skip
    advice = "use --workers, a smaller --scale or a longer --day-in"
    late, achieved = a.get("late", 0) or 0, a.get("achieved", 0) or 0
    if achieved and late > 0.01 * achieved:
        lines += ["", f"  warning    {late / achieved:.0%} of the visits began late (more than the workload's tolerance "
                      "after their intended time): the load generator could not keep up, so the machine's CPU, "
                      f"not the ENT, shaped part of this run; {advice}"]
    gen = s.get("generator") or {}
    if gen.get("saturated_s"):  # (90 %: exporters.recorder.GENERATOR_SATURATED_PERCENT, Locust's own threshold)
        since = gen.get("saturated_from_sim_s")
        lines += ["", f"  warning    the load generator ran above 90 % CPU (Locust's samples, busiest process) for about "
                      f"{gen['saturated_s']:,} s" + (f", first at simulated {clock_text(since)}" if since is not None else "")
                  + f": latencies from then on include its own queueing; {advice}"]  # fmt: skip
    eps = sorted(s.get("endpoints", []), key=lambda e: -(e.get("p95_s") or 0))[:8]
    if eps:
        lines += ["", f"  {'slowest endpoints (p95)':<44} {'requests':>9} {'fail':>6} {'p50':>8} {'p95':>8} {'p99':>8}"]
        for e in eps:
            name = f"{e['method']} {e['name']}"
            lines.append(f"  {name[:44]:<44} {e['requests']:>9,} {e['failures']:>6,} {_ms(e.get('p50_s')):>8} "
                         f"{_ms(e.get('p95_s')):>8} {_ms(e.get('p99_s')):>8}")  # fmt: skip
    print("\n".join(lines), file=out)
