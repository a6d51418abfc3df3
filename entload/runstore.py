"""The run folder `results/<run-id>/`: naming, the manifest, and reading a finished (or partial) run.

One place decides what a run folder holds (docs/contracts.md "Run folder"), so `run`, `gate`, `compare`
and `capacity` read the same thing. Manifest writes are atomic (temp file + rename): an interrupted run
never leaves half a JSON file.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from entload.errors import InputError, UsageError

MANIFEST_SCHEMA_VERSION = 1
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
REPO = Path(__file__).resolve().parents[1]

#: every file the contract lists, and whether a finished run must have it
RUN_FILES = {
    "manifest.json": True,
    "summary.json": True,
    "timeseries.csv": True,
    "samples.csv.gz": True,
    "locust_stats.csv": True,
    "locust_stats_history.csv": True,
    "locust_failures.csv": True,
    "locust_report.html": True,
    "report.html": True,
}
PLOTS = ("arrivals.png", "latency.png", "bandwidth.png", "active_visits.png")


def new_run_id() -> str:
    """Sortable and unique enough for one machine: UTC time plus 4 random hex digits."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


def check_run_id(run_id: str) -> str:
    if not RUN_ID_RE.match(run_id or ""):
        raise UsageError(
            f"--run-id: expected letters, digits, '.', '_' or '-' (at most 100, no '/'), got {run_id!r}"
        )
    return run_id


def create_run_dir(out: Path, run_id: str) -> Path:
    """Make `<out>/<run-id>/`; refuse to overwrite an existing run."""
    check_run_id(run_id)
    path = Path(out) / run_id
    if path.exists() and any(path.iterdir()):
        raise UsageError(f"--run-id: {path} already exists; choose another run id or --out directory")
    try:
        (path / "plots").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out: cannot create {path}: {exc.strerror}") from None
    return path


def iso_utc(epoch: float | None = None) -> str:
    epoch = time.time() if epoch is None else epoch
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


def atomic_write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: missing") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None


# -- manifest ---------------------------------------------------------------------------------------------
def git_revision() -> str | None:
    """The repository's commit (with `-dirty` when the tree has changes), or None outside a checkout."""
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()  # fmt: skip
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _redact_url(text: str) -> str:
    """Drop user:password@ from a URL (a Pushgateway or host URL may carry basic-auth credentials)."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if parts.scheme and parts.password is not None:
        netloc = "***@" + parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=netloc))
    return text


_SECRET_OPTION = re.compile(r"(pass|secret|token|cookie|auth|key)", re.IGNORECASE)


def redact_command_line(argv: list[str]) -> list[str]:
    """The command line as typed, minus credentials: URL userinfo, values of password/token-like options."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        if arg.startswith("--") and _SECRET_OPTION.search(arg.split("=", 1)[0]):
            if "=" in arg:
                out.append(arg.split("=", 1)[0] + "=***")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(_redact_url(arg))
    return out


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def canonical_digest(obj: Any) -> str:
    """sha256 of a workload as canonical JSON (sorted keys), so comments and key order do not matter."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def versions() -> dict:
    from entload import __version__

    try:
        from importlib.metadata import version

        locust_version = version("locust")
    except Exception:
        locust_version = None
    return {
        "entload_version": __version__,
        "locust_version": locust_version,
        "python_version": platform.python_version(),
    }


def new_manifest(run_id: str, **fields: Any) -> dict:
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "run_id": run_id,
        **versions(),
        "git_revision": git_revision(),
        "command_line": redact_command_line(list(sys.argv)),
        "started_at": iso_utc(),
        "ended_at": None,
        "complete": False,
        "end_reason": "running",
    }
    manifest.update(fields)
    return manifest


class RunFolder:
    """A run folder on disk (being written, or finished)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    def write_manifest(self, manifest: dict) -> None:
        atomic_write_json(self.manifest_path, manifest)

    def update_manifest(self, **fields: Any) -> dict:
        manifest = read_json(self.manifest_path)
        manifest.update(fields)
        self.write_manifest(manifest)
        return manifest

    def manifest(self) -> dict:
        return read_json(self.manifest_path)

    def summary(self) -> dict:
        return read_json(self.summary_path)

    def missing_files(self) -> list[str]:
        missing = [name for name, required in RUN_FILES.items() if required and not (self.path / name).exists()]
        missing += [f"plots/{p}" for p in PLOTS if not (self.path / "plots" / p).exists()]
        return missing


def open_run(path: str | Path) -> RunFolder:
    """A run folder given by the user (`results/<id>`): one-line error when it is not one."""
    folder = RunFolder(Path(path))
    if not folder.manifest_path.exists() and not folder.summary_path.exists():
        raise InputError(f"{path}: not a run folder (no manifest.json or summary.json)")
    return folder


def python_executable() -> str:
    return sys.executable
