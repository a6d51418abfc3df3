"""ENT journeys as Locust users: one FastHttpUser class per persona, each visit one journey of the workload.

A visit logs in like a browser (login page, static assets with ETag revalidation, daily news, context,
form post, portal, userinfo), walks the workload's steps for its persona (`journeys:` in the workload YAML,
actions below), then logs out. Paths come from the workload's route map; request names are route templates
(`/conversation/message/[id]`), never raw ids, and logins or passwords never appear in names or messages.

Open model (the EntDayShape is in use): a user waits for an arrival ticket, runs that one visit, and waits
again. Closed loop (no EntDayShape, e.g. a plain locustfile that imports these classes): visits run back to
back, think times still divided by the compression factor.

Outcomes: "ok"; "failed" (a request failed; a lost session or a refused login ends the visit); "quota" (the
ENT answered "too many users": the login page text, or HTTP 509), which ends the visit at once. Every
request carries the context of exporters/events.py: persona, request_bytes (request line + headers + body as
sent), lateness_s (how late the visit started).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import time
from urllib.parse import urlencode, urlsplit

from locust import FastHttpUser, constant, task

from exporters import events as ev
from scenarios._runtime import RUNTIME, Runtime, sleep_think
from scenarios._workload import ACTIONS

log = logging.getLogger("entload.scenarios")
WRITE_METHODS = ("POST", "PUT", "DELETE", "PATCH")
QUOTA_TEXT = b"too many users"
_user_numbers = itertools.count()
_WARNED: dict[str, bool] = {}
_ETAGS: dict[str, str] = {}  # static asset route -> ETag a browser holds (one value per process)
_BLOB = random.Random(20200316).randbytes(4 * 1024 * 1024)  # upload content (incompressible, like JPEGs)


class _Quota(Exception):
    """The ENT said "too many users": the visit ends with outcome quota."""


class _EndVisit(Exception):
    """The visit cannot go on (login refused, session lost): outcome failed."""


def _blob(size: int) -> bytes:
    if size <= len(_BLOB):
        return _BLOB[:size]
    return (_BLOB * (size // len(_BLOB) + 1))[:size]


def _ids(data) -> list[str]:
    """Ids of a JSON list answer (an array, or {"results": [...]} for the timeline)."""
    if isinstance(data, dict):
        data = data.get("results", data.get("items", []))
    if not isinstance(data, list):
        return []
    return [str(x.get("id") or x.get("_id")) for x in data if isinstance(x, dict) and (x.get("id") or x.get("_id"))]


def close_connections(session) -> None:
    """End a visit's connections with the visit, as a browser session's end does.

    A pooled user waits between visits; the ENT closes its idle keep-alive connections meanwhile, and a socket
    kept in the user's pool stays in CLOSE_WAIT, holding an ephemeral port. At the full day's peak the pool holds
    tens of thousands of users: their stale sockets filled the ~28,000 ports towards the one loopback address and
    the kernel's port search made every new connect() crawl (the generator collapsed at 30 % CPU). The next visit
    opens a fresh connection, as it would have anyway after the ENT's idle timeout.
    """
    agent = getattr(session, "client", None)  # FastHttpSession -> geventhttpclient UserAgent
    close = getattr(agent, "close", None)
    if close is not None:
        try:
            close()
        except OSError:
            pass


class Visit:
    """The state of one visit: account, session data discovered on the way, outcome."""

    def __init__(self, user: EntVisitor, rt: Runtime, lateness_s: float):
        self.user, self.rt, self.rng = user, rt, user.rng
        self.persona = user.persona
        self.plan = rt.plan
        self.k = self.plan.k
        self.workload = self.plan.workload
        self.base = rt.enseigno_host if user.app == "enseigno" else rt.ent_host
        kind = self.workload.personas[self.persona]["accounts"]
        self.account = self.rng.choice(rt.accounts[kind])
        self.context = {"persona": self.persona, "request_bytes": 0, "lateness_s": float(lateness_s)}
        # Production visits come from many client addresses; one load generator has one. Each visit names its own
        # client in X-Forwarded-For (a documentation address, RFC 3849, never routed), so the staging ENT's access
        # log groups into visits as a production log does (entload profile round trip).
        n = self.rng.getrandbits(32)
        self.client_addr = f"2001:db8::{n >> 16:x}:{n & 0xFFFF:x}"
        self.failed = False
        self.me: dict = {}
        self.seen: dict[str, list[str]] = {}
        self.results: list[dict] = []

    # -- the journey --------------------------------------------------------------------------------------
    def run(self) -> str:
        self.user.client.cookiejar.clear()
        try:
            for step in self.workload.journeys[self.persona]:
                if step.p < 1.0 and self.rng.random() >= step.p:
                    continue
                for _ in range(self.rng.randint(*step.repeat)):
                    getattr(self, "do_" + step.do)()
                    if step.think_s > 0:
                        sleep_think(self.rng.expovariate(1.0 / step.think_s) / self.k)
        except _Quota:
            return "quota"
        except _EndVisit:
            return "failed"
        return "failed" if self.failed else "ok"

    # -- HTTP -----------------------------------------------------------------------------------------------
    def _xsrf(self) -> str:
        for cookie in self.user.client.cookiejar:
            if cookie.name == "XSRF-TOKEN":
                return cookie.value
        return ""

    def call(self, route_name: str, params: dict | None = None, query: dict | None = None, body: bytes = b"",
             content_type: str = "", json_body=None, headers: dict | None = None, expect=(200,),
             redirects: bool = True, fatal: bool = False):
        """One request of the route map. Returns the response when its status is expected, else None.

        `fatal`: a failure ends the visit (login). A 401 always does (the session is gone)."""
        route = self.workload.routes[route_name]
        url = self.base + route.url(**(params or {}))
        if query:
            url += "?" + urlencode(query)
        hdrs = dict(headers or {})
        hdrs["X-Forwarded-For"] = self.client_addr
        if json_body is not None:
            body = json.dumps(json_body).encode()
            content_type = "application/json"
        if content_type:
            hdrs["Content-Type"] = content_type
        if route.method in WRITE_METHODS:
            hdrs["X-XSRF-TOKEN"] = self._xsrf()
        with self.user.client.request(route.method, url, name=route.template, data=body or None, headers=hdrs,
                                      catch_response=True, allow_redirects=redirects,
                                      context=dict(self.context)) as resp:
            sent = getattr(resp, "_sent_request", None)
            resp.request_meta["context"]["request_bytes"] = (
                len(sent) if sent else len(route.method) + len(url) + 120) + len(body or b"")
            status = resp.status_code
            if status == 509 or (status == 200 and route_name in ("login_page", "login_submit")
                                 and QUOTA_TEXT in (resp.content or b"")[:65536].lower()):
                resp.failure("quota: the ENT answered too many users")
                raise _Quota
            if status in expect:
                resp.success()
                return resp
            if status == 401:
                resp.failure("HTTP 401: session lost")
                raise _EndVisit
            resp.failure(f"HTTP {status}, expected {'/'.join(map(str, expect))}" if status else
                         f"no response ({type(resp.error).__name__ if getattr(resp, 'error', None) else 'error'})")
            self.failed = True
            if fatal:
                raise _EndVisit
            return None

    def call_json(self, route_name: str, **kw):
        resp = self.call(route_name, **kw)
        if resp is None:
            return None
        try:
            return json.loads(resp.content or b"null")
        except ValueError:
            return None

    def _pick(self, key: str, route_name: str, **kw) -> str | None:
        """A random id from a list (fetched once per visit)."""
        if key not in self.seen:
            self.seen[key] = _ids(self.call_json(route_name, **kw))
        ids = self.seen[key]
        return self.rng.choice(ids) if ids else None

    def _size(self, key: str) -> int:
        lo, hi = self.workload.payloads[key]
        return int(round(math.exp(self.rng.uniform(math.log(lo), math.log(hi)))))

    def _multipart(self, fields: dict[str, str], filename: str, mime: str, size: int) -> tuple[bytes, str]:
        boundary = f"----entload{self.rng.getrandbits(64):016x}"
        parts = []
        for name, value in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                     f"Content-Type: {mime}\r\n\r\n".encode())
        parts.append(_blob(size))
        parts.append(f"\r\n--{boundary}--\r\n".encode())
        return b"".join(parts), f"multipart/form-data; boundary={boundary}"

    def _document(self) -> tuple[str, str]:
        if self.rng.random() < 0.7:
            return f"devoir-{self.rng.randint(1, 99)}.jpg", "image/jpeg"
        return f"devoir-{self.rng.randint(1, 99)}.pdf", "application/pdf"

    # -- ENT actions --------------------------------------------------------------------------------------
    def do_login(self) -> None:
        self.call("login_page", fatal=True)
        for route_name in self.workload.static_routes:
            etag = _ETAGS.get(route_name)
            if etag and self.rng.random() < self.workload.cache_hit_ratio:
                self.call(route_name, headers={"If-None-Match": etag}, expect=(304, 200))
            else:
                resp = self.call(route_name)
                if resp is not None and resp.headers and resp.headers.get("ETag"):
                    _ETAGS[route_name] = resp.headers.get("ETag")
        self.call("welcome_news")
        self.call("auth_context")
        portal = self.workload.routes["portal"].path
        form = urlencode({"email": self.account.login, "password": self.account.password, "callBack": portal,
                          "rememberMe": "false"}).encode()
        resp = self.call("login_submit", body=form, content_type="application/x-www-form-urlencoded",
                         expect=(302, 303), redirects=False, fatal=True)
        if not any(c.name == "oneSessionId" for c in self.user.client.cookiejar):
            self.failed = True
            raise _EndVisit
        location = resp.headers.get("Location", "") if resp.headers else ""
        if location and urlsplit(location).path not in ("", portal):
            log.debug("login redirected to an unexpected place")
        self.call("portal", fatal=True)
        self.me = self.call_json("userinfo", fatal=True) or {}

    def do_logout(self) -> None:
        self.call("logout", expect=(200, 302, 303), redirects=False)

    def do_timeline(self) -> None:
        self.call("timeline", query={"page": 0})

    def do_news(self) -> None:
        item = self._pick("news", "news_list", query={"page": 1, "pageSize": 20})
        if item:
            self.call("news_item", params={"id": item})

    def do_unread_count(self) -> None:
        self.call("unread_count", query={"unread": "true"})

    def do_inbox(self) -> None:
        self.seen["inbox"] = _ids(self.call_json("inbox", query={"page": 0}))

    def do_read_message(self) -> None:
        mid = self._pick("inbox", "inbox", query={"page": 0})
        if mid:
            self.call("message", params={"id": mid})

    def do_send_message(self) -> None:
        to = self._pick("recipients", "recipients", query={"search": self.rng.choice("abcdelmnrst")})
        to_ids = [to] if to else ([self.me.get("userId")] if self.me.get("userId") else [])
        text = "x" * self._size("message_body_bytes")
        draft = self.call_json("draft", json_body={"subject": "Travail du jour", "body": text, "to": to_ids})
        draft_id = str(draft.get("id")) if isinstance(draft, dict) and draft.get("id") else None
        if not draft_id:
            return
        p_attach = self.workload.payloads["attachment_probability"].get(self.persona, 0.0)
        if self.rng.random() < p_attach:
            for _ in range(self.rng.randint(*self.workload.payloads["attachments_per_message"])):
                name, mime = self._document()
                body, ctype = self._multipart({}, name, mime, self._size("attachment_bytes"))
                self.call("attachment", params={"id": draft_id}, body=body, content_type=ctype)
        self.call("send", query={"id": draft_id},
                  json_body={"subject": "Travail du jour", "body": text, "to": to_ids, "cc": [], "cci": []})

    def do_casier_deposit(self) -> None:
        to = self._pick("rack_recipients", "rack_recipients")
        if not to:
            return
        name, mime = self._document()
        body, ctype = self._multipart({"users": to}, name, mime, self._size("casier_bytes"))
        self.call("rack_deposit", query={"thumbnail": "120x120"}, body=body, content_type=ctype,
                  expect=(200, 201))

    def do_casier_collect(self) -> None:
        ids = _ids(self.call_json("rack_list"))
        for fid in self.rng.sample(ids, min(len(ids), self.rng.randint(1, 5))):
            self.call("rack_get", params={"id": fid})

    def _child(self) -> str | None:
        children = self.me.get("childrenIds") or [c.get("id") for c in self.me.get("children", []) if c.get("id")]
        children = children or list(self.account.children_ids)
        if self.persona == "student":
            return self.me.get("userId") or self.account.user_id or None
        return self.rng.choice(children) if children else None

    def do_carnet_read(self) -> None:
        child = self._child()
        if not child:
            return
        self.call("carnet_count", params={"studentId": child})
        self.seen["carnet"] = _ids(self.call_json("carnet_list", params={"page": 0, "studentId": child}))
        self.seen["carnet_child"] = [child]

    def do_carnet_ack(self) -> None:
        if "carnet" not in self.seen:
            child = self._child()
            if not child:
                return
            self.seen["carnet"] = _ids(self.call_json("carnet_list", params={"page": 0, "studentId": child}))
            self.seen["carnet_child"] = [child]
        if self.seen["carnet"]:
            word = self.rng.choice(self.seen["carnet"])
            self.call("carnet_ack", params={"wordId": word, "studentId": self.seen["carnet_child"][0]},
                      expect=(200, 201, 204))

    def do_carnet_teacher(self) -> None:
        self.call("carnet_teacher_list", json_body={"filter": "Any", "page": 0})

    def do_wall(self) -> None:
        wid = self._pick("walls", "walls")
        if wid:
            self.call("wall", params={"id": wid})

    def do_blog(self) -> None:
        bid = self._pick("blogs", "blogs")
        if bid:
            self.call("blog_posts", params={"blogId": bid}, query={"content": "true", "page": 0})

    def do_homework(self) -> None:
        did = self._pick("homeworks", "homeworks")
        if did:
            self.call("homework", params={"diaryId": did})

    # -- Enseigno actions ---------------------------------------------------------------------------------
    def do_enseigno_login(self) -> None:
        form = urlencode({"email": self.account.login, "password": self.account.password}).encode()
        self.call("enseigno_login", body=form, content_type="application/x-www-form-urlencoded",
                  expect=(302, 303), redirects=False, fatal=True)
        if not any(c.name == "enseigno_session" for c in self.user.client.cookiejar):
            self.failed = True
            raise _EndVisit

    def do_enseigno_logout(self) -> None:
        self.call("enseigno_logout", expect=(200, 302, 303), redirects=False)

    def do_enseigno_paths(self) -> None:
        path_id = self._pick("paths", "enseigno_paths")
        if path_id:
            data = self.call_json("enseigno_path", params={"id": path_id})
            self.seen["exercises"] = [str(x.get("id") if isinstance(x, dict) else x)
                                      for x in (data or {}).get("exercises", [])] if isinstance(data, dict) else []

    def do_enseigno_exercise(self) -> None:
        if not self.seen.get("exercises"):
            self.do_enseigno_paths()
        if not self.seen.get("exercises"):
            return
        ex_id = self.rng.choice(self.seen["exercises"])
        data = self.call_json("enseigno_exercise", params={"id": ex_id})
        for media in (data or {}).get("media", []) if isinstance(data, dict) else []:
            ref = media.get("url") or media.get("id") if isinstance(media, dict) else media
            if ref:
                self.call("enseigno_media", params={"id": str(ref).rstrip("/").rsplit("/", 1)[-1]})
        answer = "r" * self._size("enseigno_answer_bytes")
        self.call("enseigno_answer", params={"id": ex_id}, json_body={"answers": [answer]}, expect=(200, 201))

    def do_enseigno_create_path(self) -> None:
        exercises = self.seen.get("exercises", [])[:5]
        self.call("enseigno_create_path", json_body={"title": "Parcours de révision", "exercises": exercises},
                  expect=(200, 201))

    def _class_id(self) -> str | None:
        classes = list(self.account.class_ids) or list(self.me.get("classes", []))
        return self.rng.choice(classes) if classes else None

    def do_enseigno_results(self) -> None:
        class_id = self._class_id()
        if not class_id:
            self.failed = True
            if not _WARNED.get("class_ids"):
                _WARNED["class_ids"] = True
                log.warning("enseigno_results: the accounts CSV has no class_ids for teachers; step skipped")
            return
        data = self.call_json("enseigno_results", params={"classId": class_id})
        self.results = [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []

    def do_enseigno_feedback(self) -> None:
        if not self.results:
            self.do_enseigno_results()
        if not self.results:
            return
        row = self.rng.choice(self.results)
        student = row.get("studentId") or row.get("student_id") or row.get("userId")
        exercise = row.get("exerciseId") or row.get("exercise_id") or row.get("id")
        if student and exercise:
            text = "Bien, revois la question 3. " * max(1, self._size("feedback_bytes") // 30)
            self.call("enseigno_feedback", json_body={"studentId": student, "exerciseId": exercise, "text": text},
                      expect=(200, 201))


_missing = [a for a in ACTIONS if not hasattr(Visit, "do_" + a)]
assert not _missing, f"actions without an implementation: {_missing}"


class EntVisitor(FastHttpUser):
    """A browser of one persona; see the module docstring for the open and closed modes."""

    abstract = True
    persona = ""
    app = "ent"
    wait_time = constant(0)
    network_timeout = 60.0
    connection_timeout = 10.0
    host = "http://127.0.0.1"  # replaced by --host; Enseigno personas use --enseigno-host

    def __init__(self, environment):
        super().__init__(environment)
        self.number = next(_user_numbers)
        seed = RUNTIME.plan.seed if RUNTIME.plan else 1
        self.rng = random.Random(f"entload-user:{seed}:{self.persona}:{self.number}")

    def on_start(self):
        RUNTIME.user_joined(self.persona)

    def on_stop(self):
        RUNTIME.user_left(self.persona)

    @task
    def visit(self):
        rt = RUNTIME
        if rt.plan is None:
            rt.configure(self.environment)
        if rt.open_model:
            sched = rt.wait_scheduler()
            ticket = sched.wait_ticket(id(self), self.persona)
            started = time.time()
            lateness, late = sched.visit_began(ticket, started)
            intended = ticket.intended_at
        else:
            sched, started, lateness, late = None, time.time(), 0.0, False
            intended = started
        ev.visit_started.fire(persona=self.persona, intended_at=intended, started_at=started, late=late)
        try:
            outcome = Visit(self, rt, lateness).run()
        finally:
            close_connections(self.client)
            if sched is not None:
                sched.visit_ended(self.persona, time.time() - started)
        ev.visit_completed.fire(persona=self.persona, outcome=outcome, duration_s=time.time() - started)


class StudentUser(EntVisitor):
    persona = "student"


class ParentUser(EntVisitor):
    persona = "parent"


class TeacherUser(EntVisitor):
    persona = "teacher"


class EnseignoStudentUser(EntVisitor):
    persona = "enseigno_student"
    app = "enseigno"


class EnseignoTeacherUser(EntVisitor):
    persona = "enseigno_teacher"
    app = "enseigno"


PERSONA_CLASSES = {c.persona: c for c in (StudentUser, ParentUser, TeacherUser, EnseignoStudentUser,
                                          EnseignoTeacherUser)}
