"""The Locust options of the scenarios (docs/contracts.md) and their translation into a ReplayPlan.

Registered on Locust's parser, so `locust -f scenarios --day-in 1h ...`, a `locust.conf` (`day-in = 1h`) and
`entload run` all speak the same names. Parsing errors are one line naming the option (ScenarioError, a
ValueError: `entload` maps it to exit code 2; the locustfile prints it and exits 2).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any
from urllib.parse import urlsplit

from scenarios._plan import ARRIVAL_MODES, DAY_S, ReplayPlan
from scenarios._workload import Workload, load_workload


class ScenarioError(ValueError):
    """A scenarios option has a value we cannot use; one line naming the option."""


#: dest names on the parsed options namespace (option strings in docs/contracts.md)
OPTION_DESTS = ("workload", "day_in", "from_time", "to_time", "scale", "seed", "day_type", "arrivals",
                "accounts", "enseigno_host", "allow_host")


def add_options(parser) -> None:
    """Register the scenarios' options on a Locust (configargparse) or argparse parser."""
    group = parser.add_argument_group("entload scenarios (the ENT school day)") if hasattr(
        parser, "add_argument_group") else parser
    group.add_argument("--workload", default="", metavar="FILE",
                       help="workload YAML (default: scenarios/workload.yaml)")
    group.add_argument("--day-in", dest="day_in", default="", metavar="DUR",
                       help="replay the window (default the whole day) in this wall time, e.g. 1h, 10m; "
                            "compression k = window / DUR (default: real time)")
    group.add_argument("--from", dest="from_time", default="00:00", metavar="HH:MM",
                       help="start of the replayed window in the simulated day (default 00:00)")
    group.add_argument("--to", dest="to_time", default="24:00", metavar="HH:MM",
                       help="end of the replayed window (default 24:00)")
    group.add_argument("--scale", default="1", metavar="F",
                       help="multiply the day's visits by F, e.g. 0.1 or 3 (default 1)")
    group.add_argument("--seed", default="1", metavar="N", help="seed of the arrivals and journeys (default 1)")
    group.add_argument("--day-type", dest="day_type", default="", metavar="NAME",
                       help="day type of the workload (default: the workload's default_day_type)")
    group.add_argument("--arrivals", default="poisson", metavar="MODE",
                       help="poisson (default) or deterministic (evenly spaced) arrivals")
    group.add_argument("--accounts", default="", metavar="CSV",
                       help="accounts CSV (login,password,persona[,...]), e.g. from "
                            "`entload staging --export-accounts FILE`; required")
    group.add_argument("--enseigno-host", dest="enseigno_host", default="", metavar="URL",
                       help="base URL of the Enseigno service (needed when Enseigno personas have visits)")
    group.add_argument("--allow-host", dest="allow_host", action="append", default=[], metavar="NAME",
                       help="a non-loopback host name load may be sent to (repeatable)")


# ---------------------------------------------------------------------------------------- value parsing

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)")


def parse_duration(text: Any, option: str) -> float:
    s = str(text).strip().lower()
    pos, total, parts = 0, 0.0, 0
    for m in _DURATION_RE.finditer(s):
        if s[pos:m.start()].strip():
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos, parts = m.end(), parts + 1
    if parts == 0 or s[pos:].strip() or total <= 0:
        raise ScenarioError(f"{option}: expected a positive duration such as 90s, 10m, 1h or 1h30m, got {text!r}")
    return total


def parse_clock(text: Any, option: str) -> float:
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*", str(text))
    if m:
        h, mi, se = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        secs = h * 3600 + mi * 60 + se
        if mi <= 59 and se <= 59 and secs <= DAY_S:
            return float(secs)
    raise ScenarioError(f"{option}: expected a time of day between 00:00 and 24:00 (HH:MM), got {text!r}")


def _number(text: Any, option: str, what: str, integer: bool = False) -> float:
    try:
        value = int(str(text).strip()) if integer else float(str(text).strip())
    except ValueError:
        raise ScenarioError(f"{option}: expected {what}, got {text!r}") from None
    if not integer and not (value > 0 and value < float("inf")):
        raise ScenarioError(f"{option}: expected {what}, got {text!r}")
    return value


def is_loopback(hostname: str) -> bool:
    """True when every address of `hostname` is loopback (127.0.0.0/8, ::1)."""
    if hostname in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(hostname, None)}
    except OSError:
        return False
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


def check_url(url: str, option: str, allow: list[str]) -> str:
    """The URL without a trailing slash, if loopback or allow-listed; else a one-line refusal."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ScenarioError(f"{option}: expected an http(s) URL such as http://127.0.0.1:8080, got {url!r}")
    host = parts.hostname
    if not is_loopback(host) and host.lower() not in {a.strip().lower() for a in allow}:
        raise ScenarioError(f"{option}: refusing to send load to {host!r}: it is not loopback and not "
                            f"allow-listed (add --allow-host {host} if this staging host is yours)")
    return url.rstrip("/")


# ------------------------------------------------------------------------------------------ the plan


def _get(options: Any, name: str, default: Any = None) -> Any:
    value = getattr(options, name, default)
    return default if value is None else value


def plan_from_options(options: Any, workload: Workload | None = None) -> ReplayPlan:
    """Build the ReplayPlan from parsed options (a namespace with the dests of OPTION_DESTS).

    Raises ScenarioError (bad option) or WorkloadError (bad workload file), both one-line ValueErrors.
    """
    wl = workload or load_workload(_get(options, "workload", "") or None)
    from_s = parse_clock(_get(options, "from_time", "00:00") or "00:00", "--from")
    to_s = parse_clock(_get(options, "to_time", "24:00") or "24:00", "--to")
    if to_s <= from_s:
        raise ScenarioError(f"--from/--to: the window must end after it starts, got "
                            f"{_get(options, 'from_time')}..{_get(options, 'to_time')}")
    day_in = _get(options, "day_in", "")
    day_in_s = parse_duration(day_in, "--day-in") if str(day_in).strip() else None
    scale = _number(_get(options, "scale", 1), "--scale", "a positive number such as 0.1 or 3")
    seed = int(_number(_get(options, "seed", 1), "--seed", "an integer", integer=True))
    day_type = _get(options, "day_type", "") or wl.default_day_type
    if day_type not in wl.day_types:
        raise ScenarioError(f"--day-type: expected one of {', '.join(sorted(wl.day_types))}, got {day_type!r}")
    mode = str(_get(options, "arrivals", "poisson") or "poisson").strip().lower()
    if mode not in ARRIVAL_MODES:
        raise ScenarioError(f"--arrivals: expected one of {', '.join(ARRIVAL_MODES)}, got {mode!r}")
    return ReplayPlan(wl, day_type, from_s, to_s, day_in_s, scale, seed, mode)
