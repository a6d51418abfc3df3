"""A lean raw-ASGI core shared by the ENT and Enseigno apps: routing, sessions, CSRF, faults, access log.

No web framework: the staging ENT must out-run the load generator (issue 2 asks for >= ~9,000 req/s a core),
so routes are a precompiled table, bodies come pre-rendered, and a session cookie is verified once per
process (HMAC) and then found in a bounded cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import os
import random
import re
import socket
import struct
import sys
import time
import traceback
from urllib.parse import parse_qs, unquote_plus

from python_multipart.multipart import MultipartParser, parse_options_header

from staging.config import compile_faults, compile_service_times

JSON = (b"content-type", b"application/json; charset=utf-8")
HTML = (b"content-type", b"text/html; charset=utf-8")
BINARY = (b"content-type", b"application/octet-stream")
NO_STORE = (b"cache-control", b"no-store")
WRITE_METHODS = frozenset(("POST", "PUT", "DELETE", "PATCH"))
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

ERR_UNAUTHORIZED = b'{"error":"unauthorized"}'
ERR_CSRF = b'{"error":"csrf"}'
ERR_NOT_FOUND = b'{"error":"not_found"}'
ERR_FORBIDDEN = b'{"error":"forbidden"}'
ERR_INJECTED = b'{"error":"injected"}'
ERR_INTERNAL = b'{"error":"internal"}'
ERR_QUOTA = b'{"error":"quota"}'
ERR_MULTIPART = b'{"error":"multipart"}'
ERR_TOO_LARGE = b'{"error":"too_large"}'
ERR_BAD_REQUEST = b'{"error":"bad_request"}'


_STATUS_KEYS = ("status_2xx", "status_2xx", "status_2xx", "status_3xx", "status_4xx", "status_5xx")


class HTTPError(Exception):
    """Abort a handler with a status and a short JSON body."""

    def __init__(self, status: int, body: bytes):
        self.status, self.body = status, body


class AccessLog:
    """Combined log format, buffered: lines go out in whole-line batches with one O_APPEND write each,
    so several worker processes can share one file without interleaving inside a line."""

    def __init__(self, path: str | None):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if path else None
        self.buf: list[str] = []
        self.size = 0
        self._sec = -1
        self._stamp = ""

    def stamp(self, now: float) -> str:
        sec = int(now)
        if sec != self._sec:
            t = time.gmtime(sec)
            self._stamp = f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
            self._sec = sec
        return self._stamp

    def write(self, line: str) -> None:
        if self.fd is None:
            return
        self.buf.append(line)
        self.size += len(line)
        if self.size >= 65536:
            self.flush()

    def flush(self) -> None:
        if self.fd is not None and self.buf:
            data = "".join(self.buf).encode("utf-8", "replace")
            self.buf, self.size = [], 0
            while data:
                n = os.write(self.fd, data)
                data = data[n:]

    def close(self) -> None:
        self.flush()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f]')
_quoted: dict[bytes, str] = {}


def _escape(s: str) -> str:
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", s)


def _quote(value: bytes | None) -> str:
    """A header value as a log field; few distinct values (user agents, referers), so cached."""
    if not value:
        return "-"
    s = _quoted.get(value)
    if s is None:
        if len(_quoted) > 2048:
            _quoted.clear()
        s = _quoted[value] = _escape(value.decode("latin-1"))
    return s


class Request:
    __slots__ = ("scope", "receive", "method", "path", "headers", "params", "user", "session", "query_cache")

    def __init__(self, scope, receive, method, path, headers, params):
        self.scope, self.receive, self.method, self.path = scope, receive, method, path
        self.headers, self.params = headers, params
        self.user = None  # (kind, index)
        self.session = None
        self.query_cache = None

    def query(self, name: str, default: str = "") -> str:
        if self.query_cache is None:
            qs = self.scope.get("query_string")
            self.query_cache = q = {}
            if qs:
                for part in qs.decode("latin-1").split("&"):
                    k, _, v = part.partition("=")
                    if "%" in v or "+" in v:
                        v = unquote_plus(v)
                    if "%" in k or "+" in k:
                        k = unquote_plus(k)
                    q.setdefault(k, v)
        return self.query_cache.get(name, default)

    def int_query(self, name: str, default: int = 0, lo: int = 0, hi: int = 1_000_000) -> int:
        try:
            return min(hi, max(lo, int(self.query(name, str(default)))))
        except ValueError:
            raise HTTPError(400, b'{"error":"bad_request","detail":"' + name.encode() + b' must be an integer"}') from None

    async def body(self, limit: int) -> bytes:
        declared = self.headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPError(413, ERR_TOO_LARGE)
        chunks, size = [], 0
        while True:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                raise HTTPError(400, ERR_BAD_REQUEST)
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, ERR_TOO_LARGE)
            chunks.append(chunk)
            if not msg.get("more_body"):
                return b"".join(chunks)

    async def form(self, limit: int) -> dict[str, str]:
        raw = await self.body(limit)
        return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}

    async def json(self, limit: int):
        import json

        raw = await self.body(limit)
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise HTTPError(400, b'{"error":"bad_request","detail":"body is not JSON"}') from None

    async def multipart(self, budget: int | None, field_limit: int = 65536):
        """Stream a multipart body: count file bytes and discard them, keep small fields.

        Returns (fields, files[(field, filename, size)]). Raises HTTPError 400 on a malformed body, 413 when
        the file bytes pass `budget` (checked on Content-Length first, then while streaming).
        """
        ctype, opts = parse_options_header(self.headers.get(b"content-type", b""))
        boundary = opts.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            await self._drain()
            raise HTTPError(400, ERR_MULTIPART)
        declared = self.headers.get(b"content-length")
        if budget is not None and declared and declared.isdigit() and int(declared) > budget + 64 * 1024:
            raise HTTPError(413, ERR_QUOTA)
        fields: dict[str, str] = {}
        files: list[list] = []
        state = {"headers": {}, "field": b"", "value": b"", "name": None, "filename": None, "data": [],
                 "size": 0, "ended": False, "over": False, "hname": b""}
        total = [0]

        def on_part_begin():
            state["headers"] = {}
            state["data"] = []
            state["size"] = 0

        def on_header_field(data, start, end):
            state["hname"] += data[start:end]

        def on_header_value(data, start, end):
            state["headers"][state["hname"].lower()] = state["headers"].get(state["hname"].lower(), b"") + data[start:end]

        def on_header_end():
            state["hname"] = b""

        def on_headers_finished():
            _, o = parse_options_header(state["headers"].get(b"content-disposition", b""))
            state["name"] = o.get(b"name", b"").decode("utf-8", "replace")
            fn = o.get(b"filename")
            state["filename"] = fn.decode("utf-8", "replace") if fn is not None else None

        def on_part_data(data, start, end):
            n = end - start
            state["size"] += n
            if state["filename"] is not None:
                total[0] += n
                if budget is not None and total[0] > budget:
                    state["over"] = True
            elif state["size"] <= field_limit:
                state["data"].append(data[start:end])

        def on_part_end():
            if state["filename"] is not None:
                files.append([state["name"], state["filename"], state["size"]])
            else:
                fields[state["name"]] = b"".join(state["data"]).decode("utf-8", "replace")

        def on_end():
            state["ended"] = True

        parser = MultipartParser(boundary, {
            "on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_part_end": on_part_end,
            "on_header_field": on_header_field, "on_header_value": on_header_value,
            "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_end": on_end,
        })
        try:
            while True:
                msg = await self.receive()
                if msg["type"] == "http.disconnect":
                    raise HTTPError(400, ERR_MULTIPART)
                chunk = msg.get("body", b"")
                if chunk:
                    parser.write(chunk)
                if state["over"]:
                    raise HTTPError(413, ERR_QUOTA)  # uvicorn discards the rest of the body
                if not msg.get("more_body"):
                    break
            parser.finalize()
        except HTTPError:
            raise
        except Exception:
            raise HTTPError(400, ERR_MULTIPART) from None
        if not state["ended"]:
            raise HTTPError(400, ERR_MULTIPART)
        return fields, [tuple(f) for f in files]

    async def _drain(self) -> None:
        while True:
            msg = await self.receive()
            if msg["type"] == "http.disconnect" or not msg.get("more_body"):
                return


class Route:
    __slots__ = ("handler", "auth", "html", "csrf", "name")

    def __init__(self, handler, auth, html, csrf, name):
        self.handler, self.auth, self.html, self.csrf, self.name = handler, auth, html, csrf, name


class Context:
    """What one worker process holds: settings, accounts, content, shared state, runtime knobs, counters."""

    def __init__(self, settings, directory, content, shared, secret: bytes, worker: int, access_log: str | None):
        self.settings = settings
        self.directory = directory
        self.content = content
        self.shared = shared
        self.secret = secret
        self.worker = worker
        self.access_log_path = access_log
        self.counters = dict.fromkeys(("requests", "status_2xx", "status_3xx", "status_4xx", "status_5xx",
                                       "resets", "bytes_out", "logins", "login_failures", "quota_refusals",
                                       "uploads_bytes"), 0)
        self.service_rules, self.service_default = compile_service_times(settings["service_time_ms"])
        self.runtime_version = -1
        self.faults: list = []
        self.news_enabled = True
        self.upload_quota = int(settings["upload_quota_mib"] * 1024 * 1024)
        self.upload_window_s = settings["upload_quota_window_s"]
        self.idle_s = float(settings["session_idle_s"])
        self.refresh_runtime()

    def refresh_runtime(self) -> None:
        version, runtime = self.shared.get_runtime()
        self.faults = compile_faults(runtime["faults"])
        self.news_enabled = runtime["news_feed_enabled"]
        self.runtime_version = version

    def service_ms(self, path: str) -> float:
        for match, ms in self.service_rules:
            if match(path):
                return ms
        return self.service_default

    def sign(self, payload: str) -> str:
        return hmac.new(self.secret, payload.encode(), hashlib.sha256).hexdigest()[:32]

    def publish(self) -> None:
        self.shared.publish_stats(self.worker, self.counters)


def is_loopback(client) -> bool:
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


class App:
    """Base ASGI app: subclasses register routes and implement `authenticate`."""

    name = "app"
    login_path = "/auth/login"

    def __init__(self, ctx: Context, access_log: AccessLog):
        self.ctx = ctx
        self.log = access_log
        self.exact: dict[tuple[str, str], Route] = {}
        self.patterns: dict[tuple[str, int], list[tuple[tuple, Route]]] = {}
        self.session_cache: dict[bytes, tuple] = {}
        self.route_cache: dict[tuple[str, str], tuple] = {}

    # -- routing ---------------------------------------------------------------------------------------
    def add(self, method: str, pattern: str, handler, auth: bool = True, html: bool = False, csrf: bool = True):
        route = Route(handler, auth, html, csrf, pattern)
        if ":" not in pattern:
            self.exact[(method, pattern)] = route
        else:
            segs = tuple(pattern.split("/"))
            self.patterns.setdefault((method, len(segs)), []).append((segs, route))

    def resolve(self, method: str, path: str):
        key = (method, path)
        hit = self.route_cache.get(key)
        if hit is None:
            if len(self.route_cache) > 16384:
                self.route_cache.clear()
            hit = self.route_cache[key] = self._resolve(method, path)
        return hit

    def _resolve(self, method: str, path: str):
        route = self.exact.get((method, path))
        if route is not None:
            return route, ()
        segs = path.split("/")
        for pat, route in self.patterns.get((method, len(segs)), ()):
            params = []
            for p, s in zip(pat, segs, strict=True):
                if p and p[0] == ":":
                    if not s:
                        break
                    params.append(s)
                elif p != s:
                    break
            else:
                return route, params
        return None, ()

    # -- hooks for subclasses --------------------------------------------------------------------------
    def authenticate(self, req: Request, now: float):
        """Return (user, session, from_cookie) or None."""
        raise NotImplementedError

    # -- the ASGI entry point --------------------------------------------------------------------------
    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        ctx = self.ctx
        now = time.time()
        if ctx.shared.runtime_version() != ctx.runtime_version:
            ctx.refresh_runtime()
        method = scope["method"]
        path = scope["path"]
        headers = dict(scope["headers"])
        route, params = self.resolve(method, path)
        req = Request(scope, receive, method, path, headers, params)
        status, extra, body = 500, None, ERR_INTERNAL
        try:
            if route is None:
                status, extra, body = 404, [JSON], ERR_NOT_FOUND
            else:
                if ctx.faults and not path.startswith("/__admin"):
                    for rule in ctx.faults:
                        if (rule.app == "any" or rule.app == self.name) and rule.match(path):
                            if await self._fault(rule, req, scope, send, now):
                                return
                            break
                status, extra, body = await self._handle(route, req, now)
        except HTTPError as exc:
            status, extra, body = exc.status, [JSON], exc.body
        except Exception:
            traceback.print_exc(file=sys.stderr)
            status, extra, body = 500, [JSON], ERR_INTERNAL
        await self._send(scope, headers, send, status, extra, body, now)

    async def _handle(self, route: Route, req: Request, now: float):
        if route.auth:
            who = self.authenticate(req, now)
            if who is None:
                if route.html:
                    return 302, [(b"location", self.login_path.encode()), NO_STORE], b""
                return 401, [JSON], ERR_UNAUTHORIZED
            req.user, req.session, from_cookie = who
            if from_cookie and route.csrf and req.method in WRITE_METHODS:
                token = req.headers.get(b"x-xsrf-token")
                if token is None or not hmac.compare_digest(token, req.session[3]):
                    return 403, [JSON], ERR_CSRF
        return await route.handler(req)

    async def _fault(self, rule, req: Request, scope, send, now: float) -> bool:
        """Apply a fault rule; True when the request was answered (reset or injected error)."""
        r = random.random()
        if r < rule.reset_ratio:
            transport = scope.get("_entload_transport")
            if transport is not None:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    except OSError:
                        pass
                transport.abort()
                self.ctx.counters["resets"] += 1
                self._log(scope, req.headers, 0, 0, now)
                await asyncio.sleep(0)  # let uvicorn see the connection lost
                return True
        delay = rule.added_latency_ms + (rule.slowdown - 1.0) * self.ctx.service_ms(req.path)
        if delay > 0:
            await asyncio.sleep(delay / 1000.0)
        if r < rule.reset_ratio + rule.error_ratio:
            await self._send(scope, req.headers, send, 500, [JSON], ERR_INJECTED, now)
            return True
        return False

    async def _send(self, scope, headers, send, status, extra, body, now) -> None:
        if isinstance(body, int):  # a binary download streamed from the content block
            size = body
            await send({"type": "http.response.start", "status": status,
                        "headers": [*extra, (b"content-length", str(size).encode())]})
            for chunk in self.ctx.content.chunks(size):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            size = len(body)
            await send({"type": "http.response.start", "status": status,
                        "headers": [*extra, (b"content-length", str(size).encode())] if extra else
                        [(b"content-length", str(size).encode())]})
            await send({"type": "http.response.body", "body": body})
        c = self.ctx.counters
        c["requests"] += 1
        c["bytes_out"] += size
        c[_STATUS_KEYS[status // 100]] += 1
        self._log(scope, headers, status, size, now)

    def _log(self, scope, headers, status, size, now) -> None:
        log = self.log
        if log.fd is None:
            return
        client = scope.get("client")
        qs = scope.get("query_string")
        target = scope.get("raw_path", b"").decode("latin-1")
        if qs:
            target += "?" + qs.decode("latin-1")
        if '"' in target or "\\" in target:
            target = _escape(target)
        log.write(
            f'{client[0] if client else "-"} - - [{log.stamp(now)}] "{scope["method"]} {target} '
            f'HTTP/{scope.get("http_version", "1.1")}" {status} {size if size else "-"} '
            f'"{_quote(headers.get(b"referer"))}" "{_quote(headers.get(b"user-agent"))}"\n'
        )

    # -- cookies -------------------------------------------------------------------------------------------
    @staticmethod
    def cookie(headers: dict, name: bytes) -> bytes | None:
        raw = headers.get(b"cookie")
        if not raw:
            return None
        for part in raw.split(b";"):
            k, _, v = part.strip().partition(b"=")
            if k == name:
                return v
        return None
