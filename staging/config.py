"""The staging ENT's settings: documented defaults (defaults.yaml) overlaid by a user file, strictly checked.

A typo in a fault file must not silently test nothing, so unknown keys and wrong types are refused with one
line naming the file and the key (`ConfigError`; the CLI turns it into exit 2).
"""

from __future__ import annotations

import copy
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULTS_FILE = Path(__file__).with_name("defaults.yaml")
FAULT_KEYS = {"route", "app", "slowdown", "added_latency_ms", "error_ratio", "reset_ratio"}
APPS = ("ent", "enseigno", "any")
# Keys the admin route may change at run time (everything else is fixed at start).
RUNTIME_KEYS = ("faults", "news_feed_enabled", "session_quota")


class ConfigError(ValueError):
    """A settings file or admin request that cannot be used; the message is one line."""


def load_defaults() -> dict[str, Any]:
    with open(DEFAULTS_FILE, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _check_fault(where: str, i: int, rule: Any) -> dict[str, Any]:
    key = f"faults[{i}]"
    if not isinstance(rule, dict):
        raise ConfigError(f"{where}: key '{key}' must be a mapping with 'route' and knobs, got {_type_name(rule)}")
    for k in rule:
        if k not in FAULT_KEYS:
            raise ConfigError(f"{where}: unknown key '{key}.{k}' (expected one of {', '.join(sorted(FAULT_KEYS))})")
    route = rule.get("route")
    if not isinstance(route, str) or not route.startswith("/"):
        raise ConfigError(f"{where}: key '{key}.route' must be a path glob starting with '/', got {route!r}")
    app = rule.get("app", "any")
    if app not in APPS:
        raise ConfigError(f"{where}: key '{key}.app' must be one of {', '.join(APPS)}, got {app!r}")
    out = {"route": route, "app": app}
    for k, lo, hi, default in (
        ("error_ratio", 0.0, 1.0, 0.0),
        ("reset_ratio", 0.0, 1.0, 0.0),
        ("added_latency_ms", 0.0, 600_000.0, 0.0),
        ("slowdown", 1.0, 1000.0, 1.0),
    ):
        v = rule.get(k, default)
        if not _is_number(v) or not lo <= v <= hi:
            raise ConfigError(f"{where}: key '{key}.{k}' must be a number from {lo:g} to {hi:g}, got {v!r}")
        out[k] = float(v)
    if out["error_ratio"] + out["reset_ratio"] > 1.0:
        raise ConfigError(f"{where}: key '{key}': error_ratio + reset_ratio must not exceed 1")
    return out


def _check_quota(where: str, v: Any, slots: int) -> int | None:
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ConfigError(f"{where}: key 'session_quota' must be a whole number >= 0 or null, got {v!r}")
    if v > slots:
        raise ConfigError(f"{where}: key 'session_quota' ({v}) exceeds session_slots ({slots})")
    return v


def _merge_section(where: str, name: str, base: dict, over: Any, positive: bool) -> None:
    if not isinstance(over, dict):
        raise ConfigError(f"{where}: key '{name}' must be a mapping, got {_type_name(over)}")
    for k, v in over.items():
        if k not in base:
            raise ConfigError(f"{where}: unknown key '{name}.{k}' (see staging/defaults.yaml for the known keys)")
        if not isinstance(v, int) or isinstance(v, bool) or v < (1 if positive else 0):
            raise ConfigError(f"{where}: key '{name}.{k}' must be a whole number >= {1 if positive else 0}, got {v!r}")
        base[k] = v


def merge(settings: dict[str, Any], over: Any, where: str, runtime_only: bool = False) -> dict[str, Any]:
    """Return `settings` overlaid with the mapping `over`, every key and type checked."""
    if over is None:
        return settings
    if not isinstance(over, dict):
        raise ConfigError(f"{where}: expected a mapping of settings at the top level, got {_type_name(over)}")
    out = copy.deepcopy(settings)
    allowed = RUNTIME_KEYS if runtime_only else tuple(out)
    for k in over:
        if k not in allowed:
            raise ConfigError(f"{where}: unknown key '{k}' (expected one of {', '.join(allowed)})")
    if "session_slots" in over:
        v = over["session_slots"]
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 4_000_000:
            raise ConfigError(f"{where}: key 'session_slots' must be a whole number from 1 to 4000000, got {v!r}")
        out["session_slots"] = v
    for k, v in over.items():
        if k == "session_quota":
            out[k] = _check_quota(where, v, out["session_slots"])
        elif k == "session_idle_s":
            if not _is_number(v) or v <= 0:
                raise ConfigError(f"{where}: key 'session_idle_s' must be a positive number, got {v!r}")
            out[k] = float(v)
        elif k == "upload_quota_mib":
            if not _is_number(v) or v < 0:
                raise ConfigError(f"{where}: key 'upload_quota_mib' must be a number >= 0, got {v!r}")
            out[k] = v
        elif k == "upload_quota_window_s":
            if v is not None and (not _is_number(v) or v <= 0):
                raise ConfigError(f"{where}: key 'upload_quota_window_s' must be a positive number or null, got {v!r}")
            out[k] = v
        elif k == "news_feed_enabled":
            if not isinstance(v, bool):
                raise ConfigError(f"{where}: key 'news_feed_enabled' must be true or false, got {v!r}")
            out[k] = v
        elif k == "faults":
            if not isinstance(v, list):
                raise ConfigError(f"{where}: key 'faults' must be a list of rules, got {_type_name(v)}")
            out[k] = [_check_fault(where, i, r) for i, r in enumerate(v)]
        elif k == "service_time_ms":
            if not isinstance(v, dict):
                raise ConfigError(f"{where}: key 'service_time_ms' must be a mapping glob -> ms, got {_type_name(v)}")
            for g, ms in v.items():
                if not isinstance(g, str) or not (g == "default" or g.startswith("/")):
                    raise ConfigError(f"{where}: key 'service_time_ms.{g}' must be a path glob or 'default'")
                if not _is_number(ms) or ms < 0:
                    raise ConfigError(f"{where}: key 'service_time_ms.{g}' must be a number >= 0, got {ms!r}")
                out[k][g] = ms
        elif k in ("sizes", "accounts", "limits"):
            _merge_section(where, k, out[k], v, positive=(k != "sizes"))
    if out["session_quota"] is not None and out["session_quota"] > out["session_slots"]:
        raise ConfigError(f"{where}: key 'session_quota' exceeds session_slots ({out['session_slots']})")
    return out


def load(path: str | None) -> dict[str, Any]:
    """Defaults, overlaid by the YAML file `path` (if any)."""
    settings = load_defaults()
    settings["faults"] = [_check_fault(str(DEFAULTS_FILE), i, r) for i, r in enumerate(settings["faults"])]
    if not path:
        return settings
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the staging config ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(f"{path}{line}: not valid YAML ({problem})") from None
    return merge(settings, data if data is not None else {}, path)


@dataclass(frozen=True)
class FaultRule:
    """A compiled fault rule: the glob becomes a regex once, not per request."""

    match: Any
    app: str
    error_ratio: float
    reset_ratio: float
    added_latency_ms: float
    slowdown: float


def compile_faults(rules: list[dict[str, Any]]) -> list[FaultRule]:
    return [
        FaultRule(
            re.compile(fnmatch.translate(r["route"])).match, r["app"], r["error_ratio"], r["reset_ratio"],
            r["added_latency_ms"], r["slowdown"],
        )
        for r in rules
    ]


def compile_service_times(table: dict[str, float]) -> tuple[list[tuple[Any, float]], float]:
    default = float(table.get("default", 30))
    return [(re.compile(fnmatch.translate(g)).match, float(ms)) for g, ms in table.items() if g != "default"], default
