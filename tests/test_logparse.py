"""Access-log parser: exact totals on the damaged NASA hour, fast path == strict path, gzip and several files,
route templates and masking, visits, and one-line errors (exit 2) on bad input."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys

import pytest
from conftest import REPO, shared_file

from scenarios import _logparse

# Independent reference: a strict Common Log Format line (RFC-like), written without the parser's code.
STRICT_CLF = re.compile(
    r'^(\S+) (\S+) (\S+) \[(\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "([^"]*)" (\d{3}) (\d+|-)$'
)


def _reference_totals(path) -> tuple[int, int, int]:
    lines = good = nbytes = 0
    with open(path, encoding="latin-1") as fh:
        for line in fh:
            lines += 1
            m = STRICT_CLF.match(line.rstrip("\n"))
            if m:
                good += 1
                nbytes += 0 if m.group(7) == "-" else int(m.group(7))
    return lines, good, nbytes


def _aggregates(state: _logparse.Ingest) -> dict:
    return {
        "requests": state.requests, "bytes": state.bytes_down, "parsed": state.parsed,
        "malformed": state.malformed, "visits": state.visit_summary.count,
        "routes": sorted(zip(state.route_names, state.route_count, state.route_bytes, strict=True)),
        "per_second": sorted((t, tuple(c)) for t, c in state.per_second.items()),
        "think": sorted(state.visit_summary.think_hist.items()),
    }


def test_nasa_hour_counts_every_damaged_line_and_totals_are_exact():
    path = shared_file("data", "nasa-http-aug95-first-hour.log")
    lines, good, nbytes = _reference_totals(path)
    assert lines - good > 50, "the sample is expected to hold damaged lines"
    state = _logparse.ingest([str(path)], key=b"test")
    assert state.files[0].format == "common"
    assert state.lines == lines
    assert state.parsed == good
    assert state.malformed == lines - good
    assert state.requests == good
    assert state.bytes_down == nbytes
    assert sum(c[1] for c in state.per_second.values()) == nbytes
    # examples are masked: no host name of the log survives, the structure does
    hosts = {m.group(1) for line in open(path, encoding="latin-1") if (m := STRICT_CLF.match(line.rstrip("\n")))}
    assert len(state.malformed_examples) == _logparse.EXAMPLES_CAP
    for example in state.malformed_examples:
        assert "nasa-http-aug95-first-hour.log:" in example
        for host in hosts:
            if len(host) > 3:
                assert host not in example.split(":", 2)[2], (host, example)


def test_fast_path_and_strict_path_agree(tmp_path):
    path = shared_file("data", "nasa-http-aug95-first-hour.log")
    fast = _logparse.Ingest(key=b"k")
    fast.feed_file(str(path))
    fast.close_all()
    strict = _logparse.Ingest(key=b"k")
    strict.feed_file(str(path), fast=False)
    strict.close_all()
    assert _aggregates(fast) == _aggregates(strict)
    # combined format with escaped quotes, a blank line and a CRLF line take the slow path next to fast ones
    log = tmp_path / "combined.log"
    ua = "Mozilla/5.0 (X11)"
    rows = [
        f'192.0.2.1 - - [12/Mar/2020:08:30:00 +0100] "GET /conversation/message/42 HTTP/1.1" 200 500 "-" "{ua}"',
        f'192.0.2.1 - - [12/Mar/2020:08:30:00 +0100] "GET /conversation/message/43 HTTP/1.1" 200 700 "-" "{ua}"',
        f'192.0.2.1 - - [12/Mar/2020:08:31:10 +0100] "GET /search?q=\\"x\\" HTTP/1.1" 200 10 "-" "{ua}"',
        "",
        f'192.0.2.2 - jdoe [12/Mar/2020:08:32:00 +0100] "POST /rack HTTP/1.1" 201 - "-" "{ua}"\r',
        f'192.0.2.2 - jdoe [12/Mar/2020:09:40:00 +0100] "GET /rack/list HTTP/1.1" 200 99 "-" "{ua}"',
        'garbage line',
    ]
    log.write_text("\n".join(rows) + "\n", encoding="latin-1")
    a, b = _logparse.Ingest(key=b"k"), _logparse.Ingest(key=b"k")
    a.feed_file(str(log))
    b.feed_file(str(log), fast=False)
    a.close_all()
    b.close_all()
    assert _aggregates(a) == _aggregates(b)
    assert a.parsed == 5 and a.malformed == 1 and a.bytes_down == 1309
    # 192.0.2.2 came back after 68 minutes: two visits; 192.0.2.1 one visit
    assert a.visit_summary.count == 3
    assert "GET /conversation/message/:id" in a.route_names


def test_gzip_and_several_files_equal_one_plain_file(tmp_path):
    src = shared_file("data", "nasa-http-aug95-first-hour.log").read_text(encoding="latin-1").splitlines(True)
    half = len(src) // 2
    first, second = tmp_path / "a.log.gz", tmp_path / "b.log"
    with gzip.open(first, "wt", encoding="latin-1") as fh:
        fh.writelines(src[:half])
    second.write_text("".join(src[half:]), encoding="latin-1")
    whole = tmp_path / "whole.log"
    whole.write_text("".join(src), encoding="latin-1")
    split_state = _logparse.ingest([str(second), str(first)], key=b"k")  # given out of order on purpose
    whole_state = _logparse.ingest([str(whole)], key=b"k")
    # the cut may fall inside a visit's think time, never inside a line: totals are identical
    assert (split_state.requests, split_state.bytes_down) == (whole_state.requests, whole_state.bytes_down)
    assert split_state.malformed == whole_state.malformed
    assert [f.path for f in split_state.files] == [str(first), str(second)]  # ordered by first timestamp


@pytest.mark.parametrize(("request_line", "route"), [
    ("GET /conversation/message/6f1c2a4e-9b1d-4c3e-8f7a-1234567890ab?x=1 HTTP/1.1", "GET /conversation/message/:id"),
    ("GET /schoolbook/list/0/s-12 HTTP/1.1", "GET /schoolbook/list/:id/:id"),
    ("POST /schoolbook/relation/acknowledge/w-3/s-12 HTTP/1.1", "POST /schoolbook/relation/acknowledge/:id/:id"),
    ("GET /auth/oauth2/userinfo HTTP/1.1", "GET /auth/oauth2/userinfo"),
    ("GET /userbook/jean.dupont@example.fr/avatar HTTP/1.1", "GET /userbook/:email/avatar"),
    ("GET /~alice/index.html HTTP/1.0", "GET /:user/index.html"),
    ("GET /rack/get/5f3e2a9b1c0d HTTP/1.1", "GET /rack/get/:id"),
    ("GET /timeline/lastNotifications?page=0&token=abc123 HTTP/1.1", "GET /timeline/lastNotifications"),
    ("GET /conversation/message/m-I6-0-17 HTTP/1.1", "GET /conversation/message/:id"),
    ("POST /api/exercises/ex-44-3/answers HTTP/1.1", "POST /api/exercises/:id/answers"),
    ("GET /rack/get/devoir_maths_3.jpg HTTP/1.1", "GET /rack/get/:id"),
    ("GET /assets/js/ent.bundle.js HTTP/1.1", "GET /assets/js/ent.bundle.js"),
    ("\\x16\\x03\\x01", _logparse.INVALID_ROUTE),
])
def test_route_templates_hide_ids(request_line, route):
    assert _logparse.route_of_request(request_line) == route


def test_query_sanitising_keeps_shape_not_values():
    assert _logparse.sanitize_query("page=2&unread=true&token=eyJhbGciOi&email=a%40b.fr&folder=INBOX") == \
        "page=2&unread=true&token=:v&email=:v&folder=INBOX"


def test_timezone_and_offsets():
    assert _logparse.parse_clf_time("01/Aug/1995:00:00:01 -0400") == 807249601
    assert _logparse.parse_clf_time("12/Mar/2020:08:30:00 +0100") == 1583998200
    assert _logparse.parse_clf_time("31/Foo/2020:08:30:00 +0100") is None


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "entload", "profile", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=60)


def test_bad_inputs_are_one_line_errors(tmp_path):
    binary = tmp_path / "binary.log"
    binary.write_bytes(bytes(range(256)) * 8)
    empty = tmp_path / "empty.log"
    empty.write_text("")
    unknown = tmp_path / "unknown.log"
    unknown.write_text("2020-03-12 08:30:00 GET /x 200\n" * 5)
    cases = [
        ([str(binary)], "binary data"),
        ([str(empty)], "empty file"),
        ([str(unknown)], "unknown format"),
        ([str(tmp_path / "missing.log")], "no such file"),
        (["--format", "combined", str(shared_file("data", "nasa-http-aug95-first-hour.log"))], "no line parsed"),
        (["--tz", "Mars/Olympus", str(unknown)], "--tz"),
    ]
    for args, expected in cases:
        proc = _cli(*args, "--out", str(tmp_path / "out" / "w.yaml"))
        assert proc.returncode == 2, (args, proc.stderr)
        err = proc.stderr.strip()
        assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err, (args, err)
    assert not (tmp_path / "out").exists()


def test_cut_gzip_keeps_what_was_read(tmp_path):
    src = shared_file("data", "nasa-http-aug95-first-hour.log").read_bytes() * 40  # ~7 MB: several batches
    whole = gzip.compress(src)
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    state = _logparse.ingest([str(cut)], key=b"k")
    fstats = state.files[0]
    assert fstats.truncated and "ends early" in fstats.truncated
    assert 0 < fstats.lines < src.count(b"\n") and state.parsed > 0
    assert any("ends early" in e for e in state.malformed_examples)


def test_bulk_stamp_times_equal_parse_clf_time():
    # every stamp shape the bulk regex accepts: any day 01-31 in any month (31/Feb is what parse_clf_time
    # makes of it), leap years, year 0000, hour 23, second 60, both offset signs
    rng = __import__("random").Random(5)
    months = list(_logparse.MONTHS)
    stamps = [f"[{d:02d}/{m}/{y:04d}:{hh:02d}:{mm:02d}:{ss:02d} {sign}{oh:02d}{om:02d}] "
              for d, m, y, hh, mm, ss, sign, oh, om in (
                  (31, "Feb", 2020, 23, 59, 60, "+", 14, 0), (1, "Jan", 0, 0, 0, 0, "-", 12, 30),
                  (29, "Feb", 1900, 12, 0, 0, "+", 0, 0), (1, "Mar", 2000, 0, 0, 0, "-", 0, 0))]
    stamps += [f"[{rng.randint(1, 31):02d}/{rng.choice(months)}/{rng.randint(0, 9999):04d}:{rng.randint(0, 23):02d}:"
               f"{rng.randint(0, 59):02d}:{rng.randint(0, 60):02d} {rng.choice('+-')}{rng.randint(0, 99):02d}"
               f"{rng.randint(0, 99):02d}] " for _ in range(5000)]
    assert all(re.fullmatch(_logparse._BULK_TS, s) for s in stamps)  # all of the shape the bulk path reads
    assert _logparse._stamp_times(stamps).tolist() == [_logparse.parse_clf_time(s[1:-2]) for s in stamps]


def test_time_map_applies_on_both_paths(tmp_path):
    path = shared_file("data", "nasa-http-aug95-first-hour.log")
    shift = lambda t: (t - 807249600) // 2 + 10**9  # noqa: E731  (a compressed clock, as `profile --run` maps)
    fast, strict = _logparse.Ingest(key=b"k", time_map=shift), _logparse.Ingest(key=b"k", time_map=shift)
    fast.feed_file(str(path))
    strict.feed_file(str(path), fast=False)
    fast.close_all()
    strict.close_all()
    assert _aggregates(fast) == _aggregates(strict)
    assert fast.t_min == shift(_logparse.parse_clf_time("01/Aug/1995:00:00:01 -0400"))


@pytest.mark.parametrize("chunk", [7, 100, 4096])
def test_any_read_size_and_line_ending_give_the_same_aggregates(tmp_path, monkeypatch, chunk):
    # lines cut across reads, a CR alone at the end of a read (the first half of a CRLF), LF and CRLF files
    lines = shared_file("data", "nasa-http-aug95-first-hour.log").read_text(encoding="latin-1").rstrip("\n").split("\n")
    lf, crlf = tmp_path / "lf.log", tmp_path / "crlf.log"
    lf.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    crlf.write_bytes(("\r\n".join(lines) + "\r\n").encode("latin-1"))
    whole = _logparse.ingest([str(lf)], key=b"k")
    monkeypatch.setattr(_logparse, "CHUNK_BYTES", chunk)
    for path in (lf, crlf):
        state = _logparse.ingest([str(path)], key=b"k")
        assert _aggregates(state) == _aggregates(whole), (path.name, chunk)
        assert state.lines == whole.lines == len(lines)


def test_an_absurd_response_size_is_a_damaged_line_not_a_crash(tmp_path):
    """A size of 19 digits or more (2**63 and over cannot be a response) is counted as damaged, on both paths."""
    log = tmp_path / "huge.log"
    rows = [
        '192.0.2.1 - - [12/Mar/2020:08:30:00 +0100] "GET /welcome HTTP/1.1" 200 500',
        '192.0.2.1 - - [12/Mar/2020:08:30:01 +0100] "GET /welcome HTTP/1.1" 200 99999999999999999999',
        '192.0.2.1 - - [12/Mar/2020:08:30:02 +0100] "GET /welcome HTTP/1.1" 200 999999999999999999',
    ]
    log.write_text("\n".join(rows) + "\n", encoding="latin-1")
    for fast in (True, False):
        state = _logparse.Ingest(key=b"k")
        state.feed_file(str(log), fast=fast)
        state.close_all()
        assert (state.parsed, state.malformed) == (2, 1)
        assert state.bytes_down == 500 + 999999999999999999
