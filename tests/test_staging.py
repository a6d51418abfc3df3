"""The embedded staging ENT, over real HTTP against a real uvicorn server on an ephemeral loopback port.

Every route's happy path per persona, with the shapes of docs/contracts.md that the journeys rely on;
refusals (no session, CSRF, wrong password, malformed multipart, quota); the access log; Enseigno.
"""

from __future__ import annotations

import http.client
import io
import re
import subprocess
import sys
import time

import pytest
import requests
from conftest import REPO

from staging.accounts import Directory
from staging.config import load_defaults

DEFAULT_STUDENTS, DEFAULT_SEED = 3000, 1
COMBINED = re.compile(
    r'^(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] '
    r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/(?P<ver>[\d.]+)" (?P<status>\d{3}) (?P<size>\d+|-) '
    r'"(?P<referer>[^"]*)" "(?P<agent>[^"]*)"$'
)


def directory(students: int = DEFAULT_STUDENTS, seed: int = DEFAULT_SEED) -> Directory:
    return Directory(students, seed, load_defaults()["accounts"])


def login(url: str, who: str, students: int = DEFAULT_STUDENTS, seed: int = DEFAULT_SEED) -> requests.Session:
    """A logged-in browser-like session; the CSRF header is set from the XSRF-TOKEN cookie."""
    s = requests.Session()
    r = s.post(f"{url}/auth/login", data={"email": who, "password": directory(students, seed).password(who),
                                           "callBack": "/welcome"}, allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text[:200]
    assert r.headers["location"] == "/welcome"
    assert {"oneSessionId", "authenticated", "XSRF-TOKEN"} <= set(s.cookies.keys())
    assert s.cookies["authenticated"] == "true"
    s.headers["X-XSRF-TOKEN"] = s.cookies["XSRF-TOKEN"]
    return s


def ids_of(items: list) -> list[str]:
    assert isinstance(items, list)
    for it in items:
        assert isinstance(it["id"], str) and it["id"]
    return [it["id"] for it in items]


def multipart_file(size: int, extra: dict | None = None):
    return {"file": ("photo.jpg", io.BytesIO(b"x" * size), "image/jpeg")}, extra or {}


def common_routes(s: requests.Session, url: str, kind: str) -> dict:
    """Routes every persona uses; returns userinfo."""
    me = s.get(f"{url}/auth/oauth2/userinfo", timeout=10).json()
    assert me["type"] == {"student": "Student", "parent": "Relative", "teacher": "Teacher"}[kind]
    assert me["classes"] and me["structures"] and me["userId"] and me["login"] and me["username"]
    assert s.get(f"{url}/welcome", timeout=10).status_code == 200
    assert s.get(f"{url}/timeline/timeline", timeout=10).status_code == 200
    tl = s.get(f"{url}/timeline/lastNotifications?page=0", timeout=10).json()
    assert len(ids_of(tl["results"])) == 25
    news = s.get(f"{url}/actualites/list?page=0&pageSize=20", timeout=10).json()
    assert len(ids_of(news)) == 20
    assert s.get(f"{url}/actualites/info/{news[0]['id']}", timeout=10).json()["id"] == news[0]["id"]
    # messaging: list, unread count, read, visible, draft, attachment, send, download
    inbox = s.get(f"{url}/conversation/list/INBOX?page=0", timeout=10).json()
    assert len(ids_of(inbox)) == 25
    assert isinstance(s.get(f"{url}/conversation/count/INBOX?unread=true", timeout=10).json()["count"], int)
    msg = s.get(f"{url}/conversation/message/{inbox[0]['id']}", timeout=10).json()
    assert msg["id"] == inbox[0]["id"] and msg["body"]
    visible = s.get(f"{url}/conversation/visible?search=", timeout=10).json()
    to = ids_of(visible["users"])[:1]
    draft = s.post(f"{url}/conversation/draft", json={"subject": "Devoir", "body": "<p>bonjour</p>", "to": to},
                   timeout=10).json()["id"]
    files, _ = multipart_file(20_000)
    att = s.post(f"{url}/conversation/message/{draft}/attachment", files=files, timeout=10)
    assert att.status_code == 200 and att.json()["id"]
    sent = s.post(f"{url}/conversation/send?id={draft}", json={"subject": "Devoir", "body": "x", "to": to,
                                                               "cc": [], "cci": []}, timeout=10).json()
    assert sent["id"] == draft and sent["sent"] == 1 and sent["undelivered"] == [] and "thread_id" in sent
    got = s.get(f"{url}/conversation/message/{draft}/attachment/{att.json()['id']}", timeout=10)
    assert got.status_code == 200 and len(got.content) == 20_000
    # collaborative spaces, blogs, homework diary, workspace
    walls = s.get(f"{url}/collaborativewall/list/all", timeout=10).json()
    wall = s.get(f"{url}/collaborativewall/{ids_of(walls)[0]}", timeout=10).json()
    assert wall["id"] == walls[0]["id"] and ids_of(wall["notes"])
    blogs = s.get(f"{url}/blog/list/all", timeout=10).json()
    assert all(b["_id"] == b["id"] for b in blogs)
    posts = s.get(f"{url}/blog/post/list/all/{ids_of(blogs)[0]}?content=true&page=0", timeout=10).json()
    assert len(ids_of(posts)) == 20
    diaries = s.get(f"{url}/homeworks/list", timeout=10).json()
    assert s.get(f"{url}/homeworks/get/{ids_of(diaries)[0]}", timeout=10).json()["id"] == diaries[0]["id"]
    files, _ = multipart_file(50_000)
    doc = s.post(f"{url}/workspace/document", files=files, timeout=10).json()
    assert doc["_id"] == doc["id"]
    assert len(s.get(f"{url}/workspace/document/{doc['id']}", timeout=10).content) == 50_000
    assert doc["id"] in ids_of(s.get(f"{url}/workspace/documents?filter=owner", timeout=10).json())
    # casier
    rack = s.get(f"{url}/rack/list", timeout=10).json()
    assert all(r["_id"] == r["id"] for r in rack) and ids_of(rack)
    assert len(s.get(f"{url}/rack/get/{rack[0]['id']}", timeout=10).content) == load_defaults()["sizes"]["rack_file"]
    return me


def test_student_happy_path(staging):
    s = login(staging.url, "student.3")
    me = common_routes(s, staging.url, "student")
    teachers = s.get(f"{staging.url}/rack/users/available", timeout=10).json()
    ids_of(teachers)
    assert all(t["displayName"] for t in teachers)
    files, _ = multipart_file(30_000)
    r = s.post(f"{staging.url}/rack?thumbnail=120x120", files=files,
               data={"users": ",".join(t["id"] for t in teachers[:2])}, timeout=10)
    assert r.json() == {"success": 2, "failure": 0}
    words = s.get(f"{staging.url}/schoolbook/list/0/{me['userId']}", timeout=10).json()
    assert len(ids_of(words)) == 20
    assert "count" in s.get(f"{staging.url}/schoolbook/count/{me['userId']}", timeout=10).json()
    assert s.get(f"{staging.url}/schoolbook/report/{words[0]['id']}", timeout=10).json()["id"] == words[0]["id"]
    # another student's carnet is not visible
    assert s.get(f"{staging.url}/schoolbook/list/0/s-2999", timeout=10).status_code == 403
    out = s.get(f"{staging.url}/auth/logout?callback=/auth/login", allow_redirects=False, timeout=10)
    assert out.status_code == 302 and out.headers["location"] == "/auth/login"
    assert s.get(f"{staging.url}/auth/oauth2/userinfo", timeout=10).status_code == 401


def test_parent_happy_path(staging):
    s = login(staging.url, "parent.5")  # every 5th parent has two children
    me = common_routes(s, staging.url, "parent")
    assert me["childrenIds"] == ["s-5", "s-6"] and [c["id"] for c in me["children"]] == me["childrenIds"]
    for child in me["childrenIds"]:
        words = s.get(f"{staging.url}/schoolbook/list/0/{child}", timeout=10).json()
        before = s.get(f"{staging.url}/schoolbook/count/{child}", timeout=10).json()["count"]
        r = s.post(f"{staging.url}/schoolbook/relation/acknowledge/{words[0]['id']}/{child}", timeout=10)
        assert r.status_code == 200
        after = s.get(f"{staging.url}/schoolbook/count/{child}", timeout=10).json()["count"]
        assert after == max(0, before - 1)
        reply = s.post(f"{staging.url}/schoolbook/relation/reply/{words[0]['id']}",
                       json={"studentId": child, "text": "Lu et approuvé"}, timeout=10)
        assert reply.json()["id"]
    assert s.get(f"{staging.url}/schoolbook/list/0/s-7", timeout=10).status_code == 403


def test_teacher_happy_path(staging):
    s = login(staging.url, "teacher.0")
    me = common_routes(s, staging.url, "teacher")
    assert len(me["classes"]) == 6
    words = s.post(f"{staging.url}/schoolbook/list", json={"filter": "Any", "page": 0}, timeout=10).json()
    assert len(ids_of(words)) == 20
    assert s.post(f"{staging.url}/schoolbook/word", json={"title": "Sortie", "text": "x"}, timeout=10).json()["id"]
    students = ids_of(s.get(f"{staging.url}/rack/users/available", timeout=10).json())
    assert s.get(f"{staging.url}/schoolbook/count/{students[0]}", timeout=10).status_code == 200
    assert s.post(f"{staging.url}/collaborativewall/wall-0-0/note", json={"content": "x"}, timeout=10).json()["id"]
    assert s.post(f"{staging.url}/blog/post/blog-0", json={"title": "x", "content": "y"}, timeout=10).json()["id"]


def test_login_page_news_context_token_and_assets(staging):
    page = requests.get(f"{staging.url}/auth/login", timeout=10)
    assert page.status_code == 200 and "<form" in page.text and "too many users" not in page.text
    welcome = requests.get(f"{staging.url}/auth/configure/welcome", timeout=10).json()
    assert welcome["enabled"] is True and len(welcome["welcomeMessage"]) > 500
    assert requests.get(f"{staging.url}/auth/context", timeout=10).json()["callBack"]
    d = directory()
    tok = requests.post(f"{staging.url}/auth/oauth2/token", data={
        "grant_type": "password", "username": "student.9", "password": d.password("student.9"),
        "client_id": "app-e"}, timeout=10)
    assert tok.status_code == 200 and tok.json()["token_type"] == "Bearer"
    me = requests.get(f"{staging.url}/auth/oauth2/userinfo",
                      headers={"Authorization": f"Bearer {tok.json()['access_token']}"}, timeout=10)
    assert me.json()["login"] == "student.9"
    bad = requests.post(f"{staging.url}/auth/oauth2/token", data={
        "grant_type": "password", "username": "student.9", "password": "nope"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
    for path in ("/assets/js/ent.bundle.js", "/assets/css/ent.css"):
        first = requests.get(staging.url + path, timeout=10)
        assert first.status_code == 200 and len(first.content) > 100_000 and first.headers["etag"]
        again = requests.get(staging.url + path, headers={"If-None-Match": first.headers["etag"]}, timeout=10)
        assert again.status_code == 304 and again.content == b""
        stale = requests.get(staging.url + path, headers={"If-None-Match": '"stale"'}, timeout=10)
        assert stale.status_code == 200


def test_wrong_password_rerenders_login_without_session(staging):
    s = requests.Session()
    r = s.post(f"{staging.url}/auth/login", data={"email": "student.1", "password": "wrong", "callBack": "/"},
               allow_redirects=False, timeout=10)
    assert r.status_code == 200 and "<form" in r.text and "incorrect" in r.text
    assert "oneSessionId" not in s.cookies
    unknown = s.post(f"{staging.url}/auth/login", data={"email": "nobody.1", "password": "x"}, timeout=10)
    assert unknown.status_code == 200 and "oneSessionId" not in s.cookies


def test_no_session_json_401_html_302(staging):
    for path in ("/auth/oauth2/userinfo", "/timeline/lastNotifications", "/conversation/list/INBOX",
                 "/conversation/count/INBOX?unread=true", "/rack/list", "/schoolbook/count/s-1", "/homeworks/list"):
        r = requests.get(staging.url + path, allow_redirects=False, timeout=10)
        assert r.status_code == 401 and r.json() == {"error": "unauthorized"}, path
    for path in ("/welcome", "/timeline/timeline", "/"):
        r = requests.get(staging.url + path, allow_redirects=False, timeout=10)
        assert r.status_code == 302 and r.headers["location"] == "/auth/login", path
    r = requests.post(f"{staging.url}/conversation/draft", json={}, timeout=10)
    assert r.status_code == 401
    forged = requests.get(f"{staging.url}/auth/oauth2/userinfo", cookies={"oneSessionId": "s-1.0.1.deadbeef"}, timeout=10)
    assert forged.status_code == 401


def test_csrf_refusal(staging):
    s = login(staging.url, "student.4")
    del s.headers["X-XSRF-TOKEN"]
    r = s.post(f"{staging.url}/conversation/draft", json={"subject": "x"}, timeout=10)
    assert r.status_code == 403 and r.json() == {"error": "csrf"}
    r = s.post(f"{staging.url}/conversation/draft", json={"subject": "x"}, headers={"X-XSRF-TOKEN": "forged"}, timeout=10)
    assert r.status_code == 403 and r.json() == {"error": "csrf"}
    r = s.put(f"{staging.url}/conversation/draft/m-1", json={}, headers={"X-XSRF-TOKEN": s.cookies["XSRF-TOKEN"]},
              timeout=10)
    assert r.status_code == 200


def test_malformed_multipart_is_400_and_server_survives(staging):
    s = login(staging.url, "student.5")
    cases = [
        ("multipart/form-data; boundary=XyZ", b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; "
                                             b"filename=\"a.jpg\"\r\n\r\nabc"),           # never closed
        ("multipart/form-data", b"no boundary at all"),
        ("multipart/form-data; boundary=XyZ", b"garbage without any boundary line\r\n"),
        ("multipart/form-data; boundary=XyZ", b"--XyZ--\r\n"),                              # no file part
    ]
    for ctype, body in cases:
        for path in ("/workspace/document", "/rack?thumbnail=120x120", "/conversation/message/m-1/attachment"):
            r = s.post(staging.url + path, data=body, headers={"Content-Type": ctype}, timeout=10)
            assert r.status_code == 400 and r.json()["error"] == "multipart", (path, body, r.text)
    assert requests.get(f"{staging.url}/healthz", timeout=10).status_code == 200


def test_access_log_is_combined_log_format(staging):
    marker = f"/conversation/list/INBOX?page=1&probe={time.time_ns()}"
    s = login(staging.url, "student.6")
    s.headers["User-Agent"] = 'entload-test "quoted"'
    s.headers["Referer"] = f"{staging.url}/welcome"
    assert s.get(staging.url + marker, timeout=10).status_code == 200
    deadline = time.monotonic() + 5
    line = None
    while time.monotonic() < deadline and line is None:
        for candidate in staging.access_log.read_text().splitlines():
            if marker in candidate:
                line = candidate
        time.sleep(0.1)
    assert line is not None, "the request never reached the access log"
    m = COMBINED.match(line)
    assert m, line
    assert m["host"] == "127.0.0.1" and m["method"] == "GET" and m["target"] == marker and m["status"] == "200"
    assert int(m["size"]) > 5000 and m["referer"] == f"{staging.url}/welcome" and "entload-test" in m["agent"]
    text = staging.access_log.read_text()
    assert "oneSessionId" not in text and directory().password("student.6") not in text
    assert all(COMBINED.match(x) for x in text.splitlines()), "every line parses as combined log format"


def test_enseigno_student_and_teacher(staging):
    e, d = staging.enseigno_url, directory()
    assert requests.get(f"{e}/api/paths", timeout=10).status_code == 401
    assert requests.get(f"{e}/", allow_redirects=False, timeout=10).headers["location"] == "/login"
    st = requests.Session()
    r = st.post(f"{e}/login", data={"email": "student.30", "password": d.password("student.30")},
                allow_redirects=False, timeout=10)
    assert r.status_code == 302 and "enseigno_session" in st.cookies
    st.headers["X-XSRF-TOKEN"] = st.cookies["XSRF-TOKEN"]
    paths = st.get(f"{e}/api/paths", timeout=10).json()
    assert all({"id", "title"} <= set(p) for p in paths)
    path = st.get(f"{e}/api/paths/{paths[0]['id']}", timeout=10).json()
    ex = st.get(f"{e}/api/exercises/{path['exercises'][0]}", timeout=10).json()
    media = st.get(e + ex["media"][0], timeout=10)
    assert media.status_code == 200 and len(media.content) == load_defaults()["sizes"]["exercise_media"]
    score = st.post(f"{e}/api/exercises/{ex['id']}/answers", json={"answers": ["a"]}, timeout=10).json()
    assert 0 <= score["score"] <= 20
    nocsrf = requests.post(f"{e}/api/exercises/{ex['id']}/answers", json={}, cookies=st.cookies.get_dict(), timeout=10)
    assert nocsrf.status_code == 403 and nocsrf.json() == {"error": "csrf"}
    assert st.post(f"{e}/api/paths", json={"title": "x"}, timeout=10).status_code == 403
    tc = requests.Session()
    tc.post(f"{e}/login", data={"email": "teacher.1", "password": d.password("teacher.1")}, timeout=10)
    tc.headers["X-XSRF-TOKEN"] = tc.cookies["XSRF-TOKEN"]
    new = tc.post(f"{e}/api/paths", json={"title": "Fractions", "classId": "class-6"}, timeout=10).json()
    assert new["id"] in [p["id"] for p in tc.get(f"{e}/api/paths", timeout=10).json()]
    results = tc.get(f"{e}/api/classes/class-6/results", timeout=10).json()
    assert len(ids_of(results)) == 25
    fb = tc.post(f"{e}/api/feedback", json={"studentId": results[0]["id"], "exerciseId": ex["id"], "text": "Bien"},
                 timeout=10).json()
    assert fb["id"]
    assert tc.get(f"{e}/api/classes/class-0/results", timeout=10).status_code == 403
    assert st.get(f"{e}/logout", allow_redirects=False, timeout=10).status_code == 302
    assert requests.get(f"{e}/api/paths", cookies={"enseigno_session": "forged.1.2.3"}, timeout=10).status_code == 401


def test_export_accounts_csv(tmp_path):
    out = tmp_path / "accounts.csv"
    proc = subprocess.run([sys.executable, "-m", "entload", "staging", "--export-accounts", str(out),
                           "--students", "600", "--seed", "7"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    import csv

    rows = list(csv.DictReader(out.open()))
    personas = {p: sum(1 for r in rows if r["persona"] == p) for p in ("student", "parent", "teacher")}
    assert personas["student"] == 600 and personas["parent"] == 600 and personas["teacher"] > 0
    assert len({r["login"] for r in rows}) == len(rows)
    d = directory(600, 7)
    assert all(d.check(r["login"], r["password"]) for r in rows[::50])
    assert directory(600, 8).check(rows[0]["login"], rows[0]["password"]) is None  # the seed decides passwords


def test_large_departement_starts_fast_and_logs_in(staging_factory):
    s = staging_factory("--students", "75000", "--seed", "3")
    sess = login(s.url, "student.74999", 75000, 3)
    assert sess.get(f"{s.url}/auth/oauth2/userinfo", timeout=10).json()["userId"] == "s-74999"
    out_file = s.workdir / f"staging-{s.url.rsplit(':', 1)[1]}.out"
    deadline = time.monotonic() + 15  # /healthz answers as soon as a worker is up; `ready` follows
    while "ready" not in out_file.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    out = out_file.read_text()
    assert "ready" in out and "75000 students" in out


@pytest.mark.parametrize("workers", [2])
def test_sessions_and_quota_hold_across_workers(staging_factory, tmp_path, workers):
    cfg = tmp_path / "quota.yaml"
    cfg.write_text("session_quota: 4\n")
    s = staging_factory("--workers", str(workers), "--config", str(cfg))
    host, port = "127.0.0.1", int(s.url.rsplit(":", 1)[1])
    d = directory()

    def on_fresh_connection(method: str, path: str, headers: dict | None = None, body: str | None = None):
        """(worker that served /healthz on this connection, response of the request on the same connection)."""
        c = http.client.HTTPConnection(host, port, timeout=10)
        c.request("GET", "/healthz")
        worker = int(__import__("json").loads(c.getresponse().read())["worker"])
        c.request(method, path, body=body, headers=headers or {})
        resp = c.getresponse()
        data = resp.read()
        c.close()
        return worker, resp, data

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    w0, resp, _ = on_fresh_connection("POST", "/auth/login", form,
                                      f"email=student.1&password={d.password('student.1')}&callBack=/")
    assert resp.status == 302
    cookie = "; ".join(c.split(";")[0] for c in resp.headers.get_all("set-cookie"))
    seen_other = False
    for _ in range(200):
        w, r, body = on_fresh_connection("GET", "/auth/oauth2/userinfo", {"Cookie": cookie})
        assert r.status == 200, body
        if w != w0:
            seen_other = True
            break
    assert seen_other, "200 fresh connections never reached the other worker"
    # the quota counts sessions of every worker: 3 more logins fit, the 5th session is refused
    for n in (2, 3, 4):
        _, r, _ = on_fresh_connection("POST", "/auth/login", form,
                                      f"email=student.{n}&password={d.password(f'student.{n}')}&callBack=/")
        assert r.status == 302
    _, r, body = on_fresh_connection("POST", "/auth/oauth2/token", form,
                                     f"grant_type=password&username=student.9&password={d.password('student.9')}")
    assert r.status == 509 and body == b'{"error":"quota_overflow"}'
    # logout on whichever worker frees the slot for everyone
    on_fresh_connection("GET", "/auth/logout", {"Cookie": cookie})
    _, r, _ = on_fresh_connection("POST", "/auth/oauth2/token", form,
                                  f"grant_type=password&username=student.9&password={d.password('student.9')}")
    assert r.status == 200
    _, r, _ = on_fresh_connection("GET", "/auth/oauth2/userinfo", {"Cookie": cookie})
    assert r.status == 401


@pytest.mark.parametrize("students", [1, 37, 601, 3000])
def test_seeded_relations_are_consistent(students):
    d = directory(students, 5)
    for k in range(d.n_classes):
        teachers = d.class_teachers(k)
        assert teachers and all(d.exists("t", t) and k in d.teacher_classes(t) for t in teachers)
        assert len(d.class_students(k)) > 0
    for s in range(students):
        assert d.parents_of(s) and all(s in d.children_of(p) for p in d.parents_of(s))
    for p in range(students):
        assert all(p in d.parents_of(c) for c in d.children_of(p))
    teachers = [t for t in range(d.n_colleges * d.tpc) if d.exists("t", t)]
    assert teachers and all(d.teacher_classes(t) for t in teachers)
    assert d.parse("s-0") == ("s", 0) and d.parse(f"s-{students}") is None and d.parse("s-01") is None
