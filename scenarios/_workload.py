"""The workload model: load a workload YAML, validate it strictly, and expose it as plain data.

Why strict: a workload file is typed by people (or written by `entload profile`); a misspelt key silently
ignored would replay a different day than the one asked for. Every error is one line naming the file, the
line when known, the key path and what was expected. Pure Python + PyYAML: no Locust import here, so the
CLI, the log profiler and the manifest writer can load a workload cheaply.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_WORKLOAD = Path(__file__).with_name("workload.yaml")
SCHEMA_VERSION = 1
APPS = ("ent", "enseigno")
ACCOUNT_KINDS = ("student", "parent", "teacher")
#: personas the journeys implement (scenarios/_journeys.py has one FastHttpUser class for each)
PERSONAS = {
    "student": "ent",
    "parent": "ent",
    "teacher": "ent",
    "enseigno_student": "enseigno",
    "enseigno_teacher": "enseigno",
}
#: action -> (app, routes it uses). The journeys implement exactly these; validation checks the route map.
ACTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "login": ("ent", ("login_page", "welcome_news", "auth_context", "login_submit", "portal", "userinfo")),
    "logout": ("ent", ("logout",)),
    "timeline": ("ent", ("timeline",)),
    "news": ("ent", ("news_list", "news_item")),
    "unread_count": ("ent", ("unread_count",)),
    "inbox": ("ent", ("inbox",)),
    "read_message": ("ent", ("message",)),
    "send_message": ("ent", ("recipients", "draft", "attachment", "send")),
    "casier_deposit": ("ent", ("rack_recipients", "rack_deposit")),
    "casier_collect": ("ent", ("rack_list", "rack_get")),
    "carnet_read": ("ent", ("carnet_count", "carnet_list")),
    "carnet_ack": ("ent", ("carnet_list", "carnet_ack")),
    "carnet_teacher": ("ent", ("carnet_teacher_list",)),
    "wall": ("ent", ("walls", "wall")),
    "blog": ("ent", ("blogs", "blog_posts")),
    "homework": ("ent", ("homeworks", "homework")),
    "enseigno_login": ("enseigno", ("enseigno_login",)),
    "enseigno_logout": ("enseigno", ("enseigno_logout",)),
    "enseigno_paths": ("enseigno", ("enseigno_paths", "enseigno_path")),
    "enseigno_exercise": ("enseigno", ("enseigno_path", "enseigno_exercise", "enseigno_media", "enseigno_answer")),
    "enseigno_create_path": ("enseigno", ("enseigno_create_path",)),
    "enseigno_results": ("enseigno", ("enseigno_results",)),
    "enseigno_feedback": ("enseigno", ("enseigno_results", "enseigno_feedback")),
}
PROFILE_LENGTHS = (24, 48, 96)
_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD")
_ROUTE_RE = re.compile(r"^(GET|POST|PUT|DELETE|PATCH|HEAD) (/[^\s?#]*)$")
_PARAM_RE = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster


class WorkloadError(ValueError):
    """A workload file is missing or malformed; the message is one line (file, key path, what was expected).

    A ValueError so callers outside entload can catch it; `entload` maps it to exit code 2.
    """


# ----------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Step:
    do: str
    p: float
    repeat: tuple[int, int]
    think_s: float

    @property
    def mean_repeat(self) -> float:
        return (self.repeat[0] + self.repeat[1]) / 2.0


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str  # with :params
    template: str  # request name: path with [params]
    params: tuple[str, ...]

    def url(self, **params: Any) -> str:
        """The concrete path; every parameter of the template must be given."""

        def sub(m: re.Match) -> str:
            return str(params[m.group(1)])

        return _PARAM_RE.sub(sub, self.path)


@dataclass(frozen=True)
class PersonaDay:
    visits: float
    profile: str


@dataclass(frozen=True)
class DayType:
    name: str
    ent_visits: int
    personas: dict[str, PersonaDay]


@dataclass
class Workload:
    """A validated workload. `raw` is the parsed YAML (canonical content for the digest)."""

    path: Path
    raw: dict
    name: str
    default_day_type: str
    personas: dict[str, dict[str, str]]  # persona -> {app, accounts}
    day_types: dict[str, DayType]
    profiles: dict[str, tuple[float, ...]]  # normalised: fractions of the day's visits per slot, sum 1
    journeys: dict[str, tuple[Step, ...]]
    payloads: dict[str, Any]
    cache_hit_ratio: float
    static_routes: tuple[str, ...]
    arrivals: dict[str, float]
    routes: dict[str, Route]

    def digest(self) -> str:
        return workload_digest(self)

    def day(self, day_type: str | None = None) -> DayType:
        name = day_type or self.default_day_type
        if name not in self.day_types:
            raise WorkloadError(
                f"{self.path}: unknown day type {name!r}; expected one of {', '.join(sorted(self.day_types))}"
            )
        return self.day_types[name]

    def mean_think_s(self, persona: str) -> float:
        """Expected total think time of one visit in seconds of the real day."""
        return sum(s.p * s.mean_repeat * s.think_s for s in self.journeys[persona])


def workload_digest(workload: Workload | dict) -> str:
    """sha256 of the canonical workload content (sorted-key JSON): comments and layout do not change it."""
    raw = workload.raw if isinstance(workload, Workload) else workload
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------------- loading


class _Checker:
    """Type checks that raise one-line WorkloadErrors naming the file, line and key path."""

    def __init__(self, path: Path, root_node: yaml.Node | None):
        self.path = path
        self.root = root_node

    def _line(self, keypath: tuple) -> str:
        node = self.root
        for key in keypath:
            if isinstance(node, yaml.MappingNode):
                nxt = None
                for k, v in node.value:
                    if k.value == str(key):
                        nxt = v
                        break
                node = nxt
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                node = node.value[key]
            else:
                node = None
            if node is None:
                break
        if node is None:
            return ""
        return f":{node.start_mark.line + 1}"

    def fail(self, keypath: tuple, what: str) -> WorkloadError:
        dotted = ".".join(f"[{k}]" if isinstance(k, int) else str(k) for k in keypath).replace(".[", "[")
        where = f" {dotted}:" if dotted else ""
        return WorkloadError(f"{self.path}{self._line(keypath)}:{where} {what}")

    def mapping(self, value: Any, keypath: tuple, allowed: set[str], required: set[str] = frozenset()) -> dict:
        if not isinstance(value, dict):
            raise self.fail(keypath, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(keypath, f"keys must be names, got {key!r}")
            if allowed and key not in allowed:
                raise self.fail(
                    keypath + (key,), f"unknown key (expected one of {', '.join(sorted(allowed))})"
                )
        for key in sorted(required):
            if key not in value:
                raise self.fail(keypath, f"missing key {key!r}")
        return value

    def number(self, value: Any, keypath: tuple, lo: float | None = None, hi: float | None = None,
               integer: bool = False) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if ok and integer and float(value) != int(value):
            ok = False
        if ok and lo is not None and value < lo:
            ok = False
        if ok and hi is not None and value > hi:
            ok = False
        if not ok:
            kind = "an integer" if integer else "a number"
            bounds = (f" between {lo:g} and {hi:g}" if lo is not None and hi is not None
                      else f" >= {lo:g}" if lo is not None else "")
            raise self.fail(keypath, f"expected {kind}{bounds}, got {value!r}")
        return int(value) if integer else float(value)

    def string(self, value: Any, keypath: tuple, choices: tuple | list | None = None) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(keypath, f"expected a non-empty string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(keypath, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def pair(self, value: Any, keypath: tuple, lo: float, integer: bool = False) -> tuple:
        if isinstance(value, int | float) and not isinstance(value, bool):
            v = self.number(value, keypath, lo=lo, integer=integer)
            return (v, v)
        if not isinstance(value, list) or len(value) != 2:
            raise self.fail(keypath, f"expected [min, max], got {value!r}")
        a = self.number(value[0], keypath + (0,), lo=lo, integer=integer)
        b = self.number(value[1], keypath + (1,), lo=lo, integer=integer)
        if b < a:
            raise self.fail(keypath, f"expected [min, max] with min <= max, got {value!r}")
        return (a, b)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


def load_workload(path: str | Path | None = None) -> Workload:
    """Read and validate a workload file (default: scenarios/workload.yaml). Raises WorkloadError."""
    p = Path(path) if path else DEFAULT_WORKLOAD
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkloadError(f"{p}: no such workload file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"{p}: cannot read the workload file ({exc.__class__.__name__}: {exc})") from None
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            raw = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise WorkloadError(f"{p}{where}: not valid YAML ({problem})") from None
    return parse_workload(raw, p, node)


def parse_workload(raw: Any, path: str | Path = "<workload>", node: yaml.Node | None = None) -> Workload:
    """Validate an already-parsed workload mapping (as `load_workload` does for a file)."""
    p = Path(path)
    c = _Checker(p, node)
    top_keys = {"schema_version", "name", "description", "default_day_type", "personas", "day_types",
                "profiles", "journeys", "payloads", "static_assets", "arrivals", "routes"}
    c.mapping(raw, (), top_keys, required=top_keys - {"description"})
    version = c.number(raw["schema_version"], ("schema_version",), integer=True)
    if version != SCHEMA_VERSION:
        raise c.fail(("schema_version",), f"expected {SCHEMA_VERSION}, got {version}")
    name = c.string(raw["name"], ("name",))
    if "description" in raw:
        c.string(raw["description"], ("description",))

    # routes
    routes: dict[str, Route] = {}
    c.mapping(raw["routes"], ("routes",), set())
    for rname, spec in raw["routes"].items():
        kp = ("routes", rname)
        if not isinstance(spec, str) or not _ROUTE_RE.match(spec.strip()):
            raise c.fail(kp, f'expected "METHOD /path" (METHOD one of {", ".join(_METHODS)}), got {spec!r}')
        method, rpath = spec.strip().split(" ", 1)
        params = tuple(_PARAM_RE.findall(rpath))
        routes[rname] = Route(rname, method, rpath, _PARAM_RE.sub(r"[\1]", rpath), params)

    # personas
    personas: dict[str, dict[str, str]] = {}
    c.mapping(raw["personas"], ("personas",), set(PERSONAS))
    if not raw["personas"]:
        raise c.fail(("personas",), "expected at least one persona")
    for pname, spec in raw["personas"].items():
        kp = ("personas", pname)
        c.mapping(spec, kp, {"app", "accounts"}, required={"app", "accounts"})
        app = c.string(spec["app"], kp + ("app",), APPS)
        if app != PERSONAS[pname]:
            raise c.fail(kp + ("app",), f"the {pname} journeys talk to {PERSONAS[pname]}, got {app!r}")
        personas[pname] = {"app": app, "accounts": c.string(spec["accounts"], kp + ("accounts",), ACCOUNT_KINDS)}

    # profiles
    profiles: dict[str, tuple[float, ...]] = {}
    c.mapping(raw["profiles"], ("profiles",), set())
    for prname, values in raw["profiles"].items():
        kp = ("profiles", prname)
        if not isinstance(values, list) or len(values) not in PROFILE_LENGTHS:
            got = f"{len(values)} values" if isinstance(values, list) else _kind(values)
            raise c.fail(kp, f"expected a list of {', '.join(map(str, PROFILE_LENGTHS))} slot weights, got {got}")
        ws = [c.number(v, kp + (i,), lo=0) for i, v in enumerate(values)]
        total = sum(ws)
        if total <= 0:
            raise c.fail(kp, "expected at least one positive weight")
        profiles[prname] = tuple(w / total for w in ws)

    # day types
    day_types: dict[str, DayType] = {}
    c.mapping(raw["day_types"], ("day_types",), set())
    if not raw["day_types"]:
        raise c.fail(("day_types",), "expected at least one day type")
    for dname, spec in raw["day_types"].items():
        kp = ("day_types", dname)
        c.mapping(spec, kp, {"ent_visits", "personas"}, required={"personas"})
        pd: dict[str, PersonaDay] = {}
        c.mapping(spec["personas"], kp + ("personas",), set(personas))
        for pname, pspec in spec["personas"].items():
            pkp = kp + ("personas", pname)
            c.mapping(pspec, pkp, {"visits", "profile"}, required={"visits", "profile"})
            visits = c.number(pspec["visits"], pkp + ("visits",), lo=0)
            prof = c.string(pspec["profile"], pkp + ("profile",))
            if prof not in profiles:
                raise c.fail(pkp + ("profile",), f"unknown profile {prof!r} (profiles: {', '.join(sorted(profiles))})")
            pd[pname] = PersonaDay(visits, prof)
        ent_sum = sum(v.visits for k, v in pd.items() if personas[k]["app"] == "ent")
        ent_visits = int(round(ent_sum))
        if "ent_visits" in spec:
            ent_visits = c.number(spec["ent_visits"], kp + ("ent_visits",), lo=0, integer=True)
            if abs(ent_visits - ent_sum) > 0.5:
                raise c.fail(kp + ("ent_visits",),
                             f"expected the sum of the ENT personas' visits ({ent_sum:g}), got {ent_visits}")
        if sum(v.visits for v in pd.values()) <= 0:
            raise c.fail(kp + ("personas",), "expected at least one persona with visits > 0")
        day_types[dname] = DayType(dname, ent_visits, pd)
    default_day = c.string(raw["default_day_type"], ("default_day_type",), tuple(day_types))

    # journeys
    journeys: dict[str, tuple[Step, ...]] = {}
    c.mapping(raw["journeys"], ("journeys",), set(personas))
    for pname in personas:
        if pname not in raw["journeys"]:
            raise c.fail(("journeys",), f"missing the journey of persona {pname!r}")
    for pname, steps in raw["journeys"].items():
        kp = ("journeys", pname)
        if not isinstance(steps, list) or not steps:
            raise c.fail(kp, f"expected a list of steps, got {_kind(steps)}")
        out = []
        for i, st in enumerate(steps):
            skp = kp + (i,)
            c.mapping(st, skp, {"do", "p", "repeat", "think_s"}, required={"do"})
            action = c.string(st["do"], skp + ("do",))
            if action not in ACTIONS:
                raise c.fail(skp + ("do",), f"unknown action {action!r} (actions: {', '.join(sorted(ACTIONS))})")
            if ACTIONS[action][0] != personas[pname]["app"]:
                raise c.fail(skp + ("do",), f"action {action!r} talks to {ACTIONS[action][0]}, "
                                            f"but {pname} visits {personas[pname]['app']}")
            for rname in ACTIONS[action][1]:
                if rname not in routes:
                    raise c.fail(("routes",), f"missing route {rname!r} (used by action {action!r})")
            prob = c.number(st.get("p", 1.0), skp + ("p",), lo=0, hi=1)
            rep = c.pair(st.get("repeat", 1), skp + ("repeat",), lo=0, integer=True)
            think = c.number(st.get("think_s", 0.0), skp + ("think_s",), lo=0)
            out.append(Step(action, prob, (int(rep[0]), int(rep[1])), think))
        journeys[pname] = tuple(out)

    # payloads
    pay_keys = {"casier_bytes", "attachment_bytes", "attachment_probability", "attachments_per_message",
                "message_body_bytes", "enseigno_answer_bytes", "feedback_bytes"}
    c.mapping(raw["payloads"], ("payloads",), pay_keys, required=pay_keys)
    payloads: dict[str, Any] = {}
    for key in pay_keys - {"attachment_probability", "attachments_per_message"}:
        payloads[key] = c.pair(raw["payloads"][key], ("payloads", key), lo=1, integer=True)
    payloads["attachments_per_message"] = c.pair(
        raw["payloads"]["attachments_per_message"], ("payloads", "attachments_per_message"), lo=0, integer=True)
    ap = c.mapping(raw["payloads"]["attachment_probability"], ("payloads", "attachment_probability"),
                   {"student", "parent", "teacher"})
    payloads["attachment_probability"] = {
        k: c.number(v, ("payloads", "attachment_probability", k), lo=0, hi=1) for k, v in ap.items()
    }

    # static assets
    sa = c.mapping(raw["static_assets"], ("static_assets",), {"cache_hit_ratio", "routes"},
                   required={"cache_hit_ratio", "routes"})
    hit = c.number(sa["cache_hit_ratio"], ("static_assets", "cache_hit_ratio"), lo=0, hi=1)
    if not isinstance(sa["routes"], list):
        raise c.fail(("static_assets", "routes"), f"expected a list of route names, got {_kind(sa['routes'])}")
    static_routes = []
    for i, r in enumerate(sa["routes"]):
        rn = c.string(r, ("static_assets", "routes", i))
        if rn not in routes:
            raise c.fail(("static_assets", "routes", i), f"unknown route {rn!r}")
        static_routes.append(rn)

    # arrivals
    arr_keys = {"late_tolerance_s": (0, None), "headroom": (1, 100), "assumed_response_s": (0, 60),
                "drain_max_s": (0, 86400)}
    ar = c.mapping(raw["arrivals"], ("arrivals",), set(arr_keys), required=set(arr_keys))
    arrivals = {k: c.number(ar[k], ("arrivals", k), lo=lo, hi=hi) for k, (lo, hi) in arr_keys.items()}

    return Workload(
        path=p, raw=raw, name=name, default_day_type=default_day, personas=personas, day_types=day_types,
        profiles=profiles, journeys=journeys, payloads=payloads, cache_hit_ratio=hit,
        static_routes=tuple(static_routes), arrivals=arrivals, routes=routes,
    )
