"""Streaming access-log ingestion: Common / Combined Log Format -> anonymised aggregates.

Why it looks the way it does:
- Speed. A busy ENT day is millions of lines; a regex per line in pure Python tops out well below the
  250,000 lines/s bar once the real work (time, route, visit, bytes) is added. The hot path therefore
  reads 4 MB at a time and splits the whole read with one line regex (one C call), whose groups are
  the columns of the block: times come from the stamps' digit columns as arrays, sizes from one
  numeric parse, route ids from a request cache (requests with ids share a key with the ids cut out),
  clients are numbered per block and hashed once each. A block where any line does not match is
  halved until the odd lines (escaped quotes, a broken line) are found; they take a strict regex
  slow path that feeds the same aggregates.
- Privacy at ingestion. The client address, ident, login and user agent only ever form the key of a
  keyed BLAKE2b hash (a random key per run unless one is given) that groups requests into visits. The
  raw identity is kept in memory only in front of that hash while its visit is open, then dropped; no
  aggregate holds it. Paths become route templates (numeric, uuid, hex and token segments -> `:id`,
  e-mails -> `:email`, `~user` -> `:user`), query strings are dropped from routes (see
  `sanitize_query` for the few values kept), and malformed-line examples are masked token by token.
- Memory flat in the input: per-second totals are bounded by the time span, per-route size samples by a
  reservoir, visits are closed (and forgotten) on their inactivity timeout, caches are bounded.
"""

from __future__ import annotations

import functools
import gc
import gzip
import hashlib
import io
import itertools
import math
import operator
import os
import random
import re
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

FORMATS = ("common", "combined")
MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1
    )
}
METHODS = frozenset(
    [
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "DELETE",
        "PATCH",
        "OPTIONS",
        "CONNECT",
        "TRACE",
        "PROPFIND",
        "MKCOL",
        "COPY",
        "MOVE",
    ]
)
INVALID_ROUTE = "(invalid request)"
OTHER_ROUTE_SUFFIX = " (other)"
SAMPLE_CAP = 1000  # payload sizes kept per route (uniform reservoir): plenty for a 2-parameter fit
DURATION_CAP = 50000  # visit samples kept (uniform reservoir)
MAX_ROUTES = 3000  # distinct route templates tracked one by one; the rest pool per method
CACHE_CAP = 200_000  # request-string -> route id cache entries before it is reset
EXAMPLES_CAP = 5

# Strict slow path: CLF fields, request with escaped quotes allowed, optional referer and user agent.
_Q = r'"([^"\\]*(?:\\.[^"\\]*)*)"'  # unrolled: no per-character alternation
_SLOW = re.compile(
    r"^(\S+) (\S+) (\S+) \[(\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "
    + _Q
    + r" (\d{3}) (\d{1,18}|-)(?: "
    + _Q
    + " "
    + _Q
    + r")?[ \t]*\r?\n?$"
)
_TS = re.compile(r"^(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$")

# Bulk path: a well-formed line as the strict path reads it, matched over a whole chunk at once (MULTILINE).
# It accepts a subset of what _SLOW accepts and captures the same fields, so a line may take either path
# with the same result. The time is checked field by field (month names, hour < 24...) so that every time
# it accepts, parse_clf_time accepts too; odd status codes or spacing go to the strict path.
# _BULK is the quick form: its quoted fields are single-character loops (`[^"]*`, `.*`), which the regex
# engine runs several times faster than a class of several characters. It is only used on a chunk without
# a backslash (no escaped quote anywhere), and its rows are dropped if an agent holds a quote (`(.*)`
# reads up to the last one); a quote in the client fields is read by _SLOW's `\S+` just the same.
# _BULK_STRICT (no quote, backslash or newline in a field) serves the other chunks.
_BULK_TS = (
    r"(\[(?:0[1-9]|[12][0-9]|3[01])/(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/[0-9]{4}"
    r":(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60) [+-][0-9]{4}\] )"
)
# The status is captured only when it is an error (4xx, 5xx: all the aggregates need); other lines get ""
# (one shared object, where a captured "200" would be a new string per line).
_STATUS = r"(?:[1-3][0-9][0-9]|([45][0-9][0-9]))"
_BULK = {  # groups: ident prefix, "[time] ", request, error status or "", bytes, user agent ("" in common format)
    "common": re.compile(r"^(\S+ \S+ \S+ )" + _BULK_TS + r'"([^"]*)" ' + _STATUS + r" ([0-9]{1,18}|-)()$", re.M),
    "combined": re.compile(
        r"^(\S+ \S+ \S+ )" + _BULK_TS + r'"([^"]*)" ' + _STATUS + r' ([0-9]{1,18}|-) "[^"]*" "(.*)"$', re.M
    ),
}
_FIELD = r'[^"\\\n]*'
_BULK_STRICT_HEAD = r'^([^\s"]+ [^\s"]+ [^\s"]+ )' + _BULK_TS + '"(' + _FIELD + r')" ' + _STATUS + r" ([0-9]{1,18}|-)"
_BULK_STRICT = {
    "common": re.compile(_BULK_STRICT_HEAD + r"()$", re.M),
    "combined": re.compile(_BULK_STRICT_HEAD + ' "' + _FIELD + '" "(' + _FIELD + ')"$', re.M),
}
QUOTES = itertools.repeat('"')
QMARKS = itertools.repeat("?")
NO_ROUTE = itertools.repeat(-1)
# A query value that is an id (hex digits and `-`, a digit among them, 4 characters or more):
# `sanitize_query` writes it `:v` as it would `-`, so `=-` in its place leaves the query's shape as it was
# and makes one-off queries (`?id=<uuid>`) share a skeleton whose shape is computed once. (The skeleton
# also has its path ids as `/:id`: a query part holding a `/` is `:v` or dropped either way.)
_ID_VALUE = re.compile(r"=(?=[0-9A-Fa-f-]*[0-9])[0-9A-Fa-f-]{4,}+(?![^& \n])")
CHUNK_BYTES = 4 << 20  # read size: big enough that per-chunk overhead vanishes, small enough for flat memory
SLOW_BLOCK_LINES = 8  # a block that does not parse whole is halved down to this many lines

_SAFE_QVALUE = re.compile(r"^(?:true|false|\d{1,3}|\d{1,4}x\d{1,4}|[A-Z][A-Z_]{1,15})$")
_SAFE_QKEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,30}$")


_MONTH_KEYS = np.array(sorted((ord(m[0]) << 16) | (ord(m[1]) << 8) | ord(m[2]) for m in MONTHS))
_MONTH_OF_KEY = np.array([MONTHS[chr(k >> 16) + chr(k >> 8 & 255) + chr(k & 255)] for k in _MONTH_KEYS.tolist()])


def _stamp_times(stamps: list[str]) -> np.ndarray:
    """`[dd/Mon/yyyy:hh:mm:ss +zzzz] ` stamps as the bulk regex reads them -> Unix seconds, as int64.

    The stamps have one width, so joined they are a table of characters whose digit columns give the
    fields; the arithmetic is `parse_clf_time`'s (`_days_from_civil`, offset subtracted) on arrays.
    """
    table = np.frombuffer("".join(stamps).encode("latin-1"), dtype=np.uint8).reshape(len(stamps), 29)

    def num(*cols: int) -> np.ndarray:
        value = table[:, cols[0]].astype(np.int64) - 48
        for c in cols[1:]:
            value = value * 10 + (table[:, c].astype(np.int64) - 48)
        return value

    key = (table[:, 4].astype(np.int64) << 16) | (table[:, 5].astype(np.int64) << 8) | table[:, 6]
    month = _MONTH_OF_KEY[np.searchsorted(_MONTH_KEYS, key)]
    y = num(8, 9, 10, 11) - (month <= 2)
    era = np.where(y >= 0, y, y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + num(1, 2) - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    offset = (num(23, 24) * 3600 + num(25, 26) * 60) * np.where(table[:, 22] == 43, 1, -1)  # 43: "+"
    return days * 86400 + num(13, 14) * 3600 + num(16, 17) * 60 + num(19, 20) - offset


def _clients(prefixes: list[str], agents: list[str]) -> tuple[np.ndarray, list[int]]:
    """Client of each line of a block (its `host ident user ` and agent) as a number, 0 for the first client
    to appear, 1 for the next...; and the first line of each client.

    Each column is numbered by a dictionary of the block, then the pairs by an array sort: the line's
    identity text (prefix + agent) is only built once per client, not once per line.
    """
    n = len(prefixes)
    pcode = np.fromiter(map({}.setdefault, prefixes, itertools.count()), dtype=np.int64, count=n)
    acode = np.fromiter(map({}.setdefault, agents, itertools.count()), dtype=np.int64, count=n)
    _, first, where = np.unique(pcode * n + acode, return_index=True, return_inverse=True)
    by_first = np.argsort(first)
    rank = np.empty(len(first), dtype=np.int64)
    rank[by_first] = np.arange(len(first))
    return rank[where.ravel()], first[by_first].tolist()


def _sizes(sizes: list[str]) -> np.ndarray:
    """Response sizes of a block (`-` is 0) as int64, parsed in one C call where the column allows it."""
    if "-" not in sizes:  # (fromstring would read `- 5` as -5)
        arr = np.fromstring(" ".join(sizes), dtype=np.int64, sep=" ")
        if len(arr) == len(sizes) and arr.max() < 10**18:  # (it clips 2**63 and over: take the exact path)
            return arr
    return np.array([0 if s == "-" else int(s) for s in sizes], dtype=np.int64)


@functools.lru_cache(maxsize=4096)
def _utc_hour_bucket(hour: int) -> tuple[str, int]:
    return time.strftime("%Y-%m-%d", time.gmtime(hour * 3600)), hour % 24


def _utc_bucket(t: int) -> tuple[str, int]:
    """(UTC date, hour) of a visit start, the default bucket; cached per hour (visits close by thousands)."""
    return _utc_hour_bucket(t // 3600)


class LogFormatError(ValueError):
    """The input cannot be read as an access log at all (binary, empty, unknown format, nothing parsed)."""


# ---------------------------------------------------------------------------------------------------
# Fields


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 (proleptic Gregorian), without datetime objects on the hot path."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_clf_time(text: str) -> int | None:
    """`01/Aug/1995:00:00:01 -0400` -> Unix seconds (UTC), or None if it is not a valid CLF time."""
    m = _TS.match(text)
    if not m:
        return None
    d, mon, y, hh, mm, ss, sign, oh, om = m.groups()
    month = MONTHS.get(mon)
    day, hour, minute, sec = int(d), int(hh), int(mm), int(ss)
    if month is None or not (1 <= day <= 31 and hour < 24 and minute < 60 and sec < 61):
        return None
    offset = (int(oh) * 3600 + int(om) * 60) * (1 if sign == "+" else -1)
    return _days_from_civil(int(y), month, day) * 86400 + hour * 3600 + minute * 60 + sec - offset


_SEGMENT_CACHE: dict[str, str] = {}
#: path segments known to be literal route words even though they hold digits (`oauth2`): taken from the
#: workload's route map by `entload profile`, so `/auth/oauth2/userinfo` stays a route, not `/auth/:id/...`
STATIC_SEGMENTS: set[str] = {"oauth2", "v1", "v2", "v3", "api2", "html5", "ie11", "mp3", "mp4", "h264", "utf8"}
_DIGIT = re.compile(r"\d")


def _classify_segment(seg: str) -> str:
    """`:id`, `:email`, `:user` or the segment itself; called once per segment the cache has not seen.

    Any segment holding a digit is an id (`42`, uuids, `s-12`, `m-I6-0-17`, `photo3.jpg`) unless the route
    map names it as a literal word (`oauth2`): ids come in too many shapes to list, and a route word
    rarely has a digit, so this errs on the side of hiding.
    """
    if seg in STATIC_SEGMENTS:
        return seg
    if "@" in seg or "%40" in seg:
        return ":email"
    if seg[0] == "~":
        return ":user"
    if len(seg) > 64 or _DIGIT.search(seg):
        return ":id"
    return seg


def _template_segment(seg: str) -> str:
    """One path segment as `route_template` writes it (the loop body there, for callers that cache)."""
    if not seg or seg.isalpha():
        return seg
    hit = _SEGMENT_CACHE.get(seg)
    if hit is None:
        hit = _classify_segment(seg)
        if hit == seg:
            if len(_SEGMENT_CACHE) > 50_000:
                _SEGMENT_CACHE.clear()
            _SEGMENT_CACHE[seg] = seg
    return hit


def _id_segments(static: set[str]) -> re.Pattern:
    """Regex of path segments that `_classify_segment` surely turns into `:id`: hex digits and `-` with
    at least one digit (numbers, uuids, hashes), not a static word of the route map.

    A segment is what `route_template` splits on `/` before the query (`?#;`) or the HTTP version
    (space). Replacing a match with `/:id` never changes the route a request gets (`:id` templates to
    itself), so the result serves as a cache key for requests carrying ids. It need not catch every id
    (`s-12` stays): a key that keeps one is merely a key that does not repeat. Starting with a literal
    `/` and consuming the segment possessively keeps the pass fast.
    """
    hexlike = re.compile(r"[0-9A-Fa-f-]*[0-9][0-9A-Fa-f-]*")
    words = sorted((re.escape(w) for w in static if hexlike.fullmatch(w)), key=len, reverse=True)
    guard = "(?!(?:" + "|".join(words) + r")(?![^/?#; \n]))" if words else ""
    # (no lookahead for the digit: backtracking to it, then the possessive rest, ends where the lookahead form
    # ends, and saves a second pass over the segment at every `/`)
    return re.compile("/" + guard + r"[0-9A-Fa-f-]*[0-9][0-9A-Fa-f-]*+(?![^/?#; \n])")


# What follows a `?` up to the next space (the query string, in a request target): cut from the route
# cache key, as the route never depends on it (its shape is taken from the raw request). The `?` stays, so
# a `?` elsewhere (`GET?x /`) still makes the same invalid request.
_QUERY_OF_KEY = re.compile(r"\?[^ \n]+")


def _query_shape(request: str) -> str:
    """The sanitised query string of a request line holding a `?` (`GET /x?a=1 HTTP/1.1` -> `a=1`)."""
    return sanitize_query(request[request.find("?") + 1 :].rsplit(" ", 1)[0])


def route_template(target: str) -> str:
    """Path of a request target with ids and personal segments replaced; the query string is dropped."""
    for ch in "?#;":
        if ch in target:
            target = target[: target.index(ch)]
    if target[:1] != "/":
        if target.startswith(("http://", "https://")):  # absolute-form request target (proxies)
            rest = target.split("://", 1)[1]
            target = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
        else:
            return "*" if target == "*" else INVALID_ROUTE
    segs = target.split("/")
    cache = _SEGMENT_CACHE
    for i, seg in enumerate(segs):
        if seg and not seg.isalpha():
            hit = cache.get(seg)
            if hit is None:
                hit = _classify_segment(seg)
                if hit == seg:  # only static segments are worth remembering; ids are one-offs
                    if len(cache) > 50_000:
                        cache.clear()
                    cache[seg] = seg
                else:
                    segs[i] = hit
    return "/".join(segs)


def sanitize_query(query: str) -> str:
    """Keep a query string's shape (keys) but only enumeration-like values (page numbers, flags, INBOX)."""
    out = []
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if not _SAFE_QKEY.match(key):
            continue
        out.append(f"{key}={value}" if _SAFE_QVALUE.match(value) else f"{key}=:v")
    return "&".join(out)


def route_of_request(request: str) -> str:
    """`GET /conversation/message/42?x=1 HTTP/1.1` -> `GET /conversation/message/:id`."""
    parts = request.split(" ")
    n = len(parts)
    if n == 3:
        if parts[2][:5] != "HTTP/":
            return INVALID_ROUTE
    elif n != 2:
        return INVALID_ROUTE
    if parts[0] not in METHODS or not parts[1]:
        return INVALID_ROUTE
    return parts[0] + " " + route_template(parts[1])


_MASK_KEEP = re.compile(
    r"^(?:-|HTTP/\d(?:\.\d)?\"?|\d{1,9}|[+-]\d{1,4}\]?|\[?\d{0,2}/?(?:[A-Z][a-z]{0,2})?/?\d{0,4}(?::\d{0,2}){0,3})$"
)


def mask_line(line: str, limit: int = 160) -> str:
    """An unparsable line made safe to print: request paths templated, anything else unknown masked.

    A broken line can start anywhere (`in24.inetnebr.` then `com - - [...]`), so we cannot tell a host
    name from a word: every token that is not a method, a path, a number, a dash or a date piece
    becomes `<x>`.
    """
    out = []
    for tok in re.split(r'(\s+|")', line.rstrip("\r\n")[:2000]):
        if not tok or tok.isspace() or tok == '"' or tok in METHODS or _MASK_KEEP.match(tok):
            out.append(tok)
        elif tok.startswith("/"):
            out.append(route_template(tok))
        elif tok.startswith("[") and _MASK_KEEP.match(tok[1:] or "-"):
            out.append(tok)
        else:
            out.append("<x>")
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------------
# Files


def open_binary(path: str) -> tuple[io.BufferedIOBase, Callable[[], float]]:
    """Open plain or gzip (by magic bytes) as bytes, for chunked reading; returns (stream, fraction read)."""
    try:
        raw = open(path, "rb")
    except OSError as exc:
        raise LogFormatError(f"{path}: cannot open: {exc.strerror or exc}") from None
    size = os.fstat(raw.fileno()).st_size
    head = raw.read(2)
    raw.seek(0)
    fraction = lambda: raw.tell() / size if size else 1.0  # noqa: E731
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb"), fraction
    return raw, fraction


def sniff(path: str, max_lines: int = 200) -> tuple[str, int | None]:
    """Format of a file (`common` or `combined`) and its first timestamp; LogFormatError if not a log."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
            fh.seek(0)
            stream = gzip.GzipFile(fileobj=fh) if head == b"\x1f\x8b" else fh
            try:
                blob = stream.read(256 * 1024)
            except (OSError, EOFError) as exc:
                raise LogFormatError(f"{path}: not a readable gzip file ({exc})") from None
    except OSError as exc:
        raise LogFormatError(f"{path}: cannot open: {exc.strerror or exc}") from None
    if not blob.strip():
        raise LogFormatError(f"{path}: empty file (expected access-log lines in common or combined format)")
    if b"\x00" in blob or sum(b < 9 or 13 < b < 32 for b in blob[:8192]) > 0.01 * min(len(blob), 8192):
        raise LogFormatError(
            f"{path}: binary data, not a text access log (expected common or combined format)"
        )
    lines = blob.decode("latin-1").splitlines()[:max_lines]
    if len(lines) > 1 and len(blob) == 256 * 1024:
        lines = lines[:-1]  # possibly cut
    counts = {"common": 0, "combined": 0}
    first_t = None
    for line in lines:
        m = _SLOW.match(line)
        if m:
            counts["combined" if m.group(8) is not None else "common"] += 1
            if first_t is None:
                first_t = parse_clf_time(m.group(4))
    best = max(counts, key=counts.get)
    if counts[best] == 0:
        example = mask_line(lines[0] if lines else "", 80)
        raise LogFormatError(
            f"{path}: line 1: unknown format (expected common or combined log format, e.g. "
            f"'host - user [10/Oct/2000:13:55:36 +0200] \"GET / HTTP/1.1\" 200 2326'); got '{example}'"
        )
    return best, first_t


# ---------------------------------------------------------------------------------------------------
# Aggregates


@dataclass
class VisitSummary:
    """Bounded view of closed visits: counts by start bucket and persona, reservoirs of shapes."""

    count: int = 0
    by_start: dict = field(default_factory=dict)  # (local date, hour) -> {persona: visits}
    persona_counts: dict = field(default_factory=dict)
    durations: list = field(default_factory=list)  # (persona, duration_s, requests, bytes)
    think_hist: dict = field(default_factory=dict)  # gap seconds (>=1) -> count
    bursty_gaps: int = 0  # gaps of 0 s (same second: page assets, XHR fan-out)


@dataclass
class FileStats:
    path: str
    format: str
    lines: int = 0
    parsed: int = 0
    malformed: int = 0
    truncated: str | None = None  # why reading stopped early (a cut gzip stream), if it did


class Ingest:
    """Feed it files; it keeps only anonymised, bounded aggregates.

    `persona_rules` is a list of (persona, compiled regex on `METHOD /route/template`), in priority
    order: a visit's persona is the first rule any of its requests matched, else `unknown`.
    """

    def __init__(
        self,
        *,
        key: bytes | None = None,
        timeout_s: int = 1800,
        persona_rules: list[tuple[str, re.Pattern]] | None = None,
        seed: int = 0,
        progress: Callable[[str], None] | None = None,
        local_bucket: Callable | None = None,
        time_map: Callable[[int], int] | None = None,
    ):
        self._hkey = key if key is not None else os.urandom(32)
        self.timeout_s = int(timeout_s)
        self.persona_rules = list(persona_rules or [])
        self.rng = random.Random(seed)
        self.progress = progress
        self.local_bucket = local_bucket or _utc_bucket
        self.time_map = time_map  # e.g. wall clock of a compressed run -> simulated clock
        self.files: list[FileStats] = []
        self.lines = self.parsed = self.malformed = 0
        self.malformed_examples: list[str] = []
        self.t_min: int | None = None
        self.t_max: int | None = None
        # per second: epoch -> [requests, bytes]
        self.per_second: dict[int, list[int]] = {}
        # routes
        self.route_names: list[str] = []
        self.route_ids: dict[str, int] = {}
        self.route_count: list[int] = []
        self.route_bytes: list[int] = []
        self.route_errors: list[int] = []
        self.route_samples: list[list[int]] = []
        self.route_next: list[int] = []  # count at which the next reservoir replacement happens
        self.route_persona: list[int] = []
        self.route_w: list[float] = []
        self.route_queries: list[set[str]] = []  # sanitised query shapes seen (see sanitize_query)
        self._rcache: dict[str, int] = {}
        self._tcache: dict[str, int] = {}
        self._icache: dict[str, bytes] = {}
        self._kcache: dict[str, tuple[int, bool]] = {}  # request with ids as `:id` -> (route id, cacheable)
        self._qcache: dict[str, str] = {}  # request with id values as `-` -> sanitised query shape
        self._id_regex: re.Pattern | None = None
        self._id_static: set[str] = set()
        self._dcache: dict[str, str] = {}  # path directory -> its template (see _route_name)
        self.visits: dict[bytes, list] = {}
        self.visit_summary = VisitSummary()
        self._visit_seen = 0
        self._next_sweep: int | None = None
        self._wheel: dict[int, list[bytes]] = {}

    # -- identity ---------------------------------------------------------------------------------
    def _client_id(self, identity: str) -> bytes:
        return hashlib.blake2b(identity.encode("latin-1", "replace"), key=self._hkey, digest_size=12).digest()

    # -- routes -----------------------------------------------------------------------------------
    def _route_name(self, request: str) -> str:
        """`route_of_request`, with the directory part of the path templated once per distinct directory.

        Requests with an id are never cached whole (each is a one-off), but their directory repeats:
        `GET /conversation/message/<uuid> HTTP/1.1` costs one split, one look-up and one segment. Any
        target this shortcut does not cover (no HTTP version, `#` or `;`, absolute form) takes
        `route_of_request` itself; both give the same name (a template is per segment).
        """
        parts = request.split(" ")
        if len(parts) == 3 and parts[2][:5] == "HTTP/":
            method, target = parts[0], parts[1]
            if target[:1] == "/" and method in METHODS:
                path = target.partition("?")[0]
                if "#" not in path and ";" not in path:
                    k = path.rfind("/")
                    folder = path[:k]
                    dcache = self._dcache
                    tdir = dcache.get(folder)
                    if tdir is None:
                        if len(dcache) >= CACHE_CAP:
                            dcache.clear()
                        tdir = dcache[folder] = "/".join(map(_template_segment, folder.split("/")))
                    return method + " " + tdir + "/" + _template_segment(path[k + 1 :])
        return route_of_request(request)

    def _route_id(self, request: str) -> int:
        name = self._route_name(request)
        rid = self.route_ids.get(name)
        if rid is None:
            if len(self.route_names) >= MAX_ROUTES and name != INVALID_ROUTE:
                name = name.split(" ", 1)[0] + OTHER_ROUTE_SUFFIX
                rid = self.route_ids.get(name)
            if rid is None:
                rid = len(self.route_names)
                self.route_ids[name] = rid
                self.route_names.append(name)
                self.route_count.append(0)
                self.route_bytes.append(0)
                self.route_errors.append(0)
                self.route_samples.append([])
                self.route_next.append(1)
                self.route_w.append(1.0)
                mask = 0
                for i, (_persona, rx) in enumerate(self.persona_rules):
                    if rx.search(name):
                        mask |= 1 << i
                self.route_persona.append(mask)
                self.route_queries.append(set())
        self._note_query(rid, request)
        if ":id" not in name and ":email" not in name and ":user" not in name:
            # cache only requests that can repeat: one with an id in its path is a one-off, and keeping
            # it would fill memory (and the allocator) with strings that never hit again
            if len(self._rcache) >= CACHE_CAP:
                self._rcache.clear()
            self._rcache[request] = rid
        return rid

    def _note_query(self, rid: int, request: str) -> None:
        """The shapes of the query strings a route takes (at most 8), values only when enumeration-like."""
        if "?" in request:
            shapes = self.route_queries[rid]
            if len(shapes) < 8:
                shape = _query_shape(request)
                if shape:
                    shapes.add(shape)

    def _route_ids(self, requests: list[str]) -> np.ndarray:
        """Route id of each request of a block.

        Requests seen before (without an id) are one C-level `map` over the request cache. The others,
        each distinct one once and in order of first sight, lose their query string and get their id
        segments replaced by `:id` in two regex passes over all of them (`_QUERY_OF_KEY`, `_id_segments`),
        which turns one-off requests into a key that repeats (`GET /conversation/message/:id HTTP/1.1`):
        a key names the same route as its requests,
        so only a new key runs `_route_id`. The query shapes see every distinct request, as before.
        """
        rcache = self._rcache
        rids = np.fromiter(map(rcache.get, requests, NO_ROUTE), dtype=np.int64, count=len(requests))
        where = np.flatnonzero(rids < 0).tolist()
        if not where:
            return rids
        # the requests not cached, in line order (repeats included: a request with an id rarely repeats)
        missing = list(operator.itemgetter(*where)(requests)) if len(where) > 1 else [requests[where[0]]]
        if self._id_regex is None or self._id_static != STATIC_SEGMENTS:
            self._id_static = set(STATIC_SEGMENTS)
            self._id_regex = _id_segments(self._id_static)
        joined = self._id_regex.sub("/:id", "\n".join(missing))
        keys = _QUERY_OF_KEY.sub("?", joined).split("\n")
        kcache = self._kcache
        hits = list(map(kcache.get, keys))
        i = -1
        try:
            while True:  # a new key: the first request of a route not seen yet (in line order)
                i = hits.index(None, i + 1)
                hit = kcache.get(keys[i])
                if hit is None:
                    request = missing[i]
                    rid = self._route_id(request)
                    if len(kcache) >= CACHE_CAP:
                        kcache.clear()
                    hit = kcache[keys[i]] = (rid, request in rcache)
                hits[i] = hit
        except ValueError:
            pass
        mrids = list(map(operator.itemgetter(0), hits))
        if "?" in joined:  # the query shapes, as _note_query takes them, each distinct skeleton once
            skeletons = _ID_VALUE.sub("=-", joined).split("\n")
            queries, qcache = self.route_queries, self._qcache
            with_query = map(operator.contains, missing, QMARKS)
            for rid, skeleton in dict.fromkeys(itertools.compress(zip(mrids, skeletons, strict=True), with_query)):
                shapes = queries[rid]
                if len(shapes) < 8:
                    shape = qcache.get(skeleton)
                    if shape is None:
                        shape = _query_shape(skeleton)
                        if len(qcache) >= CACHE_CAP:
                            qcache.clear()
                        qcache[skeleton] = shape
                    if shape:
                        shapes.add(shape)
        if len(rcache) + len(missing) >= CACHE_CAP:
            rcache.clear()
        rcache.update(itertools.compress(zip(missing, mrids, strict=True), map(operator.itemgetter(1), hits)))
        rids[where] = mrids
        return rids

    def _sample(self, rid: int, size: int) -> None:
        """Uniform reservoir of payload sizes per route (Li's Algorithm L: O(1) work between kept items)."""
        samples = self.route_samples[rid]
        n = self.route_count[rid]
        rng = self.rng
        if len(samples) < SAMPLE_CAP:
            samples.append(size)
            if len(samples) < SAMPLE_CAP:
                self.route_next[rid] = n + 1
                return
            self.route_w[rid] = math.exp(math.log(rng.random() or 1e-300) / SAMPLE_CAP)
        else:
            samples[rng.randrange(SAMPLE_CAP)] = size
            self.route_w[rid] *= math.exp(math.log(rng.random() or 1e-300) / SAMPLE_CAP)
        w = min(self.route_w[rid], 1 - 1e-12)
        self.route_next[rid] = n + int(math.log(rng.random() or 1e-300) / math.log(1 - w)) + 1

    # -- visits -----------------------------------------------------------------------------------
    def _close_visit(self, v: list) -> None:
        start, last, nreq, nbytes, mask = v[0], v[1], v[2], v[3], v[4]
        persona = "unknown"
        if mask:
            low = (mask & -mask).bit_length() - 1
            persona = self.persona_rules[low][0]
        s = self.visit_summary
        s.count += 1
        s.persona_counts[persona] = s.persona_counts.get(persona, 0) + 1
        bucket = self.local_bucket(start)
        cell = s.by_start.setdefault(bucket, {})
        cell[persona] = cell.get(persona, 0) + 1
        rec = (persona, last - start, nreq, nbytes)
        self._visit_seen += 1
        if len(s.durations) < DURATION_CAP:
            s.durations.append(rec)
        else:
            j = self.rng.randrange(self._visit_seen)
            if j < DURATION_CAP:
                s.durations[j] = rec

    def _sweep(self, now: int) -> None:
        """Close visits idle longer than the timeout and forget their raw identities.

        Each new visit is scheduled for a check one timeout after it starts (a timing wheel of minutes);
        a check finds it idle (close) or reschedules it after its last request, so a sweep touches only
        the visits that may have ended, never all open visits.
        """
        visits, wheel, icache = self.visits, self._wheel, self._icache
        minute = now // 60
        for slot in [m for m in wheel if m <= minute]:
            for cid in wheel.pop(slot):
                v = visits.get(cid)
                if v is None:
                    continue
                if now - v[1] > self.timeout_s:
                    del visits[cid]
                    icache.pop(v[5], None)
                    self._close_visit(v)
                else:
                    wheel.setdefault((v[1] + self.timeout_s) // 60 + 1, []).append(cid)
        self._next_sweep = now + 60

    def close_all(self) -> None:
        for v in self.visits.values():
            self._close_visit(v)
        self.visits.clear()
        self._wheel.clear()
        self._icache.clear()
        self._rcache.clear()

    # -- the slow, strict path --------------------------------------------------------------------
    def _bad(self, fstats: FileStats, lineno: int, line: str) -> None:
        fstats.malformed += 1
        if len(self.malformed_examples) < EXAMPLES_CAP:
            self.malformed_examples.append(f"{os.path.basename(fstats.path)}:{lineno}: {mask_line(line)}")

    def _slow(self, line: str, fmt: str, fstats: FileStats, lineno: int) -> bool:
        """Strict regex path, for the lines the bulk path leaves (and every line with `fast=False`)."""
        m = _SLOW.match(line)
        if not m or (fmt == "combined") != (m.group(8) is not None):
            if not line.strip():
                return True  # blank line: not a request, not damage
            self._bad(fstats, lineno, line)
            return False
        host, ident, user, ts, request, status, size, _ref, ua = m.groups()
        tcache = self._tcache
        t = tcache.get(ts)
        if t is None:
            t = parse_clf_time(ts)
            if t is None:
                self._bad(fstats, lineno, line)
                return False
            if self.time_map is not None:
                t = self.time_map(t)
            if len(tcache) > 400_000:
                tcache.clear()
            tcache[ts] = t
        prefix = f"{host} {ident} {user} "
        self._record(
            t, prefix + (ua or ""), request.replace('\\"', '"'), status, 0 if size == "-" else int(size)
        )
        return True

    def _record(self, t: int, identity: str, request: str, status: str, b: int) -> None:
        """Same bookkeeping as the hot loop, for lines that took the slow path."""
        rid = self._rcache.get(request)
        if rid is None:
            rid = self._route_id(request)
        if status >= "400":
            self.route_errors[rid] += 1
        self.route_count[rid] += 1
        self.route_bytes[rid] += b
        if self.route_count[rid] >= self.route_next[rid]:
            self._sample(rid, b)
        cell = self.per_second.get(t)
        if cell is None:
            self.per_second[t] = [1, b]
        else:
            cell[0] += 1
            cell[1] += b
        if self.t_min is None or t < self.t_min:
            self.t_min = t
        if self.t_max is None or t > self.t_max:
            self.t_max = t
        cid = self._icache.get(identity)
        if cid is None:
            cid = self._icache[identity] = self._client_id(identity)
        self._visit_step(cid, identity, t, b, self.route_persona[rid])
        if self._next_sweep is None:
            self._next_sweep = t + 60
        elif t >= self._next_sweep:
            self._sweep(t)

    def _visit_step(self, cid: bytes, identity: str, t: int, b: int, pm: int) -> None:
        v = self.visits.get(cid)
        if v is None or t - v[1] > self.timeout_s:
            self.visits[cid] = [t, t, 1, b, pm, identity]
            if v is not None:
                self._close_visit(v)
                return
            self._wheel.setdefault((t + self.timeout_s) // 60 + 1, []).append(cid)
            return
        gap = t - v[1]
        th = self.visit_summary.think_hist
        if gap > 0:
            v[1] = t
            th[gap] = th.get(gap, 0) + 1
        elif gap == 0:
            self.visit_summary.bursty_gaps += 1
        v[2] += 1
        v[3] += b
        v[4] |= pm

    # -- the hot path -----------------------------------------------------------------------------
    def feed_file(self, path: str, fmt: str = "auto", *, fast: bool = True) -> FileStats:
        """Parse one file; returns its counts. `fast=False` forces the strict path (tests compare both).

        The file is read in big chunks (decoded once, newlines normalised as universal-newline text
        reading does), each chunk cut at its last newline and handed to `_block`.
        """
        if fmt == "auto":
            fmt, _ = sniff(path)
        elif fmt not in FORMATS:
            raise LogFormatError(f"--format: unknown format {fmt!r} (expected common, combined or auto)")
        else:
            sniff(path)  # still refuse binary / empty files
        fstats = FileStats(path=path, format=fmt)
        self.files.append(fstats)
        stream, fraction = open_binary(path)
        bulk = (_BULK[fmt].split, _BULK_STRICT[fmt].split) if fast else None
        lineno = parsed = 0
        progress = self.progress
        last_report = started = time.monotonic()
        # Reads go into one buffer, behind the unfinished line of the read before (`carry`), and only the
        # whole lines are decoded: one new 4 MB string per read, where reading, decoding, joining to the
        # carry and cutting at the last newline made four.
        buf = bytearray(CHUNK_BYTES)
        view = memoryview(buf)
        carry = b""
        # The cyclic garbage collector would walk every tracked object (the open visits, the caches) each
        # few thousand allocations, and a chunk allocates hundreds of thousands of tuples and strings; none
        # of them form cycles (reference counting frees them), so it is paused while a file is read.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            while True:
                k = len(carry)
                if k + CHUNK_BYTES > len(buf):  # a line longer than a read: room for it and a read
                    view.release()
                    buf = bytearray(k + CHUNK_BYTES)
                    view = memoryview(buf)
                view[:k] = carry
                got = stream.readinto(view[k : k + CHUNK_BYTES])
                if not got:
                    break
                end = k + got
                if buf.find(b"\r", 0, end) < 0:
                    cut = buf.rfind(b"\n", 0, end) + 1
                    carry = bytes(view[cut:end])
                    # (an array count of the newlines: several times faster than str.count)
                    n = int(np.count_nonzero(np.frombuffer(buf, np.uint8, cut) == 10)) if cut else 0
                    text = str(view[:cut], "latin-1")
                else:  # universal newlines, as text reading does
                    data, tail = bytes(view[:end]), b""
                    if data[-1:] == b"\r":  # may be the first half of a CRLF split across two reads
                        data, tail = data[:-1], b"\r"
                    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                    cut = data.rfind(b"\n") + 1
                    carry = data[cut:] + tail
                    text = data[:cut].decode("latin-1")
                    n = text.count("\n")
                if cut:
                    parsed += self._block(text, n, lineno, fmt, fstats, bulk)
                    lineno += n
                if progress:
                    now = time.monotonic()
                    if now - last_report >= 1.0:
                        last_report = now
                        progress(
                            f"{os.path.basename(path)}: {lineno:,} lines, {fraction():.0%} read, "
                            f"{lineno / (now - started):,.0f} lines/s"
                        )
            if carry:  # the last line, without its newline
                text = carry.decode("latin-1").replace("\r", "\n")
                n = text.count("\n") + (text[-1] != "\n")
                parsed += self._block(text, n, lineno, fmt, fstats, bulk)
                lineno += n
        except (EOFError, OSError, zlib.error) as exc:
            # a cut or corrupt compressed file: keep every whole line read so far, say where it stopped
            fstats.truncated = f"stream ends early after line {lineno:,} ({type(exc).__name__}: {exc})"
            if len(self.malformed_examples) < EXAMPLES_CAP + 1:
                self.malformed_examples.append(f"{os.path.basename(path)}: {fstats.truncated}")
        finally:
            view.release()
            stream.close()
            if gc_was_enabled:
                gc.enable()
        fstats.lines = lineno
        fstats.parsed = parsed
        self.lines += lineno
        self.parsed += parsed
        self.malformed += fstats.malformed
        return fstats

    def _block(self, text: str, nlines: int, lineno: int, fmt: str, fstats: FileStats, bulk) -> int:
        """Parse `nlines` lines (after line `lineno`) of `text`; returns how many were requests.

        One C-level `split` reads every field of every line. If it matched every line, each line
        is well formed and the rows go to `_bulk`. Otherwise the block holds a damaged (or merely odd)
        line: it is halved until the pieces that still disagree are a few lines long, and those lines
        take the strict path one by one. So a damaged line costs a few extra regex passes over its
        neighbourhood, never the speed of the clean lines around it, and the order of lines (which the
        visits depend on) is kept.
        """
        if bulk is not None:
            quick, strict = bulk
            # `split` on the line regex gives, per line, its 6 groups then what follows the match (the
            # newline: a shared 1-character string), in one flat list: slices of it are the columns, with no
            # tuple per line (`findall`) to build, take apart and free. 6 groups + 1 per line means every
            # line matched (a match cannot hold two lines' starts, nor a line two matches).
            parts = strict(text) if "\\" in text else quick(text)
            if len(parts) == 7 * nlines + 1:
                columns = [parts[k::7] for k in range(1, 7)]
                del parts
                # the quick form's `(.*)` reads an agent up to the line's last quote: one holding a
                # quote is not what the strict path reads; let the halving find the line
                if not any(map(operator.contains, columns[5], QUOTES)):
                    self._bulk(*columns)
                    return nlines
            if nlines > SLOW_BLOCK_LINES:
                mid = text.find("\n", len(text) // 2) + 1
                if 0 < mid < len(text):
                    head = text.count("\n", 0, mid)
                    parsed = self._block(text[:mid], head, lineno, fmt, fstats, bulk)
                    return parsed + self._block(text[mid:], nlines - head, lineno + head, fmt, fstats, bulk)
        parsed = 0
        slow = self._slow
        for i, line in enumerate(text.split("\n")[:nlines], start=lineno + 1):
            if slow(line, fmt, fstats, i) and line.strip():
                parsed += 1
        return parsed

    def _bulk(self, prefixes: list[str], stamps: list[str], requests: list[str], statuses: list[str],
              sizes: list[str], agents: list[str]) -> None:
        """Record well-formed lines, given as columns: ident prefix, `[time] `, request, error status (else
        "" or None), bytes, agent.

        Column at a time, so most of the work is C loops rather than bytecode per line: times and sizes
        are array parses (`_stamp_times`, `_sizes`), route ids a `map` over the request cache whose misses
        are keyed in bulk (`_route_ids`), clients a numbering of the block whose identity text is built
        and hashed once per client (`_clients`). Route counts, error counts, route bytes and per-second
        totals are `numpy.bincount` sums; visits are advanced per client and visit (`_visits`).
        """
        # time: the digits of every stamp at once (the bulk regex checked every range)
        tarr = _stamp_times(stamps)
        if self.time_map is not None:
            distinct, where = np.unique(tarr, return_inverse=True)
            tarr = np.array(list(map(self.time_map, distinct.tolist())), dtype=np.int64)[where]
        nbytes = _sizes(sizes)
        # identity -> keyed hash, once per client (the cache forgets a client when its visit closes)
        code, firsts = _clients(prefixes, agents)
        idents = [prefixes[i] + agents[i] for i in firsts]
        icache, client_id = self._icache, self._client_id
        ccids = list(map(icache.get, idents))
        for j in itertools.compress(range(len(idents)), map(operator.not_, ccids)):
            ccids[j] = icache[idents[j]] = client_id(idents[j])
        # routes
        rids = self._route_ids(requests)
        self._count_routes(rids, nbytes, statuses)
        # per-second totals
        barr = nbytes.astype(np.float64)  # sums stay exact below 2**53 bytes
        seconds, where = np.unique(tarr, return_inverse=True)
        per_second = self.per_second
        for t, n, b in zip(seconds.tolist(), np.bincount(where).tolist(), np.bincount(where, barr).tolist(), strict=True):
            cell = per_second.get(t)
            if cell is None:
                per_second[t] = [n, int(b)]
            else:
                cell[0] += n
                cell[1] += int(b)
        lo, hi = int(seconds[0]), int(seconds[-1])
        if self.t_min is None or lo < self.t_min:
            self.t_min = lo
        if self.t_max is None or hi > self.t_max:
            self.t_max = hi
        # visits: per client, in line order
        route_persona = self.route_persona
        masks = np.array(route_persona, dtype=np.int64)[rids] if any(route_persona) else None
        self._visits(code, ccids, idents, tarr, nbytes, masks)
        now = int(tarr[-1])
        if self._next_sweep is None:
            self._next_sweep = now + 60
        elif now >= self._next_sweep:
            self._sweep(now)

    def _visits(self, code: np.ndarray, cids: list[bytes], identities: list[str], tarr, nbytes: np.ndarray,
                masks: np.ndarray | None) -> None:
        """Advance the visits with a block of lines, array at a time.

        Per client, a visit's last request time is the running maximum of its times, so the gap before
        each line, the visit boundaries (gap over the timeout) and the think times come from a stable sort
        by client, a grouped running maximum and comparisons; requests, bytes and persona evidence per
        visit are `reduceat` sums. Python then touches each client and visit of the block once, not each
        line. The result is the line-by-line one (`_visit_step`); idle visits are swept once per block.
        """
        n = len(code)
        order = np.argsort(code, kind="stable")
        ts = tarr[order]
        head = np.empty(n, dtype=bool)  # first line of a client (in sorted order)
        head[0] = True
        np.not_equal(code[order][1:], code[order][:-1], out=head[1:])
        heads = np.flatnonzero(head)
        group = np.cumsum(head) - 1
        visits = self.visits
        prior = list(map(visits.get, cids))  # group g is client g
        never = -(1 << 62)
        prior_last = np.array([never if v is None else v[1] for v in prior], dtype=np.int64)
        # running maximum of the times within each client (groups offset so that they cannot mix)
        t0 = int(ts.min())
        width = int(ts.max()) - t0 + 1
        shifted = ts - t0 + group * width
        running = np.maximum.accumulate(shifted) - group * width + t0
        before = np.empty(n, dtype=np.int64)
        before[1:] = running[:-1]
        before[heads] = never
        np.maximum(before, prior_last[group], out=before)
        gap = ts - before
        timeout = self.timeout_s
        new = gap > timeout
        cont = ~new
        thinking = gap[cont & (gap > 0)]
        if thinking.size:
            think = self.visit_summary.think_hist
            values, counts = np.unique(thinking, return_counts=True)
            for g, c in zip(values.tolist(), counts.tolist(), strict=True):
                think[g] = think.get(g, 0) + c
        self.visit_summary.bursty_gaps += int(np.count_nonzero(cont & (gap == 0)))
        # visit segments: a new visit, or the first lines of a client (which may continue its open visit)
        bounds = np.flatnonzero(new | head)
        sizes = np.diff(np.append(bounds, n)).tolist()
        seg_bytes = np.add.reduceat(nbytes[order], bounds).tolist()
        seg_last = np.maximum.reduceat(ts, bounds).tolist()
        seg_start = ts[bounds].tolist()
        seg_new = new[bounds].tolist()
        seg_head = head[bounds].tolist()
        seg_mask = (np.bitwise_or.reduceat(masks[order], bounds).tolist()
                    if masks is not None else itertools.repeat(0))
        wheel, close_visit = self._wheel, self._close_visit
        g = -1
        v = None
        cid = identity = None
        for size, nb, last, start, is_new, is_head, mask in zip(
            sizes, seg_bytes, seg_last, seg_start, seg_new, seg_head, seg_mask, strict=False
        ):
            if is_head:  # a client's first segment in the block: settle what it carries over
                if v is not None:
                    visits[cid] = v
                g += 1
                cid, identity = cids[g], identities[g]
                v = prior[g]
                if v is None:
                    slot = (start + timeout) // 60 + 1
                    wl = wheel.get(slot)
                    if wl is None:
                        wheel[slot] = [cid]
                    else:
                        wl.append(cid)
                elif not is_new:
                    if last > v[1]:
                        v[1] = last
                    v[2] += size
                    v[3] += nb
                    v[4] |= mask
                    continue
            if v is not None:
                close_visit(v)
            v = [start, last, size, nb, mask, identity]
        if v is not None:
            visits[cid] = v

    def _count_routes(self, rarr: np.ndarray, barr: np.ndarray, statuses: list[str]) -> None:
        """Requests, errors and bytes per route for a block, and the payload reservoirs.

        The reservoir (Algorithm L) only needs the sizes at the positions it picks in each route's own
        sequence, so the sizes are grouped by route (a stable sort keeps each route's order) and only
        those positions are read: the same choices a line-by-line pass makes, apart from how routes
        interleave their draws from the one random generator.
        """
        route_count, route_bytes, route_next, route_w = self.route_count, self.route_bytes, self.route_next, self.route_w
        randrange, random, exp, log = self.rng.randrange, self.rng.random, math.exp, math.log
        if any(statuses):  # the bulk regex captures a status only when it is an error
            is_error = np.fromiter(map(bool, statuses), dtype=bool, count=len(statuses))
            errs = np.bincount(rarr[is_error])
            for rid in np.flatnonzero(errs).tolist():
                self.route_errors[rid] += int(errs[rid])
        per_route = np.bincount(rarr)
        sums = np.bincount(rarr, barr).tolist()
        counts = per_route.tolist()
        grouped = starts = None
        for rid in np.flatnonzero(per_route).tolist():
            n = counts[rid]
            route_bytes[rid] += int(sums[rid])
            before = route_count[rid]
            end = before + n
            if route_next[rid] <= end:
                if grouped is None:  # (an array: only the sizes the reservoirs pick become ints)
                    grouped = barr[np.argsort(rarr, kind="stable")]
                    starts = np.concatenate(([0], np.cumsum(per_route))).tolist()
                first = starts[rid]
                samples = self.route_samples[rid]
                room = SAMPLE_CAP - 1 - len(samples)
                if room > 0 and route_next[rid] == before + 1:
                    # filling the reservoir: every size is kept, in order (what _sample does one by one,
                    # without a random draw), up to the last one, which _sample takes to start skipping
                    take = min(room, n)
                    samples.extend(grouped[first : first + take].tolist())
                    route_next[rid] = before + take + 1
                while route_next[rid] <= end and len(samples) < SAMPLE_CAP:
                    k = route_next[rid]
                    route_count[rid] = k  # what _sample reads as "this route's request count"
                    self._sample(rid, int(grouped[first + k - before - 1]))
                k = route_next[rid]
                if k <= end:  # a full reservoir: _sample's replacement and skip, inlined (same draws)
                    w = route_w[rid]
                    while k <= end:
                        samples[randrange(SAMPLE_CAP)] = int(grouped[first + k - before - 1])
                        w *= exp(log(random() or 1e-300) / SAMPLE_CAP)
                        k += int(log(random() or 1e-300) / log(1 - min(w, 1 - 1e-12))) + 1
                    route_w[rid] = w
                    route_next[rid] = k
            route_count[rid] = end

    @property
    def requests(self) -> int:
        return sum(self.route_count)

    @property
    def bytes_down(self) -> int:
        return sum(self.route_bytes)


def ingest(paths: Iterable[str], fmt: str = "auto", **kwargs) -> Ingest:
    """Parse several files in order of their first timestamp (so visits spanning files stay whole)."""
    paths = list(paths)
    order = []
    for i, path in enumerate(paths):
        detected, first_t = sniff(path)
        order.append((first_t if first_t is not None else float("inf"), i, path))
    state = Ingest(**kwargs)
    for _first, _i, path in sorted(order):
        state.feed_file(path, fmt)
    state.close_all()
    if state.parsed == 0:
        shown = "; ".join(state.malformed_examples[:1])
        raise LogFormatError(
            f"{', '.join(paths)}: no line parsed as {fmt if fmt != 'auto' else 'common/combined'} log format "
            f"({state.malformed} malformed lines{'; first: ' + shown if shown else ''})"
        )
    return state
