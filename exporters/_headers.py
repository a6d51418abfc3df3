"""Bytes of a response's header lines, for the request path of the metrics and the recorder.

Both count the bytes that crossed the link for every request, so this runs twice per request on the same
headers: the last answer is kept (by identity), and geventhttpclient's `Headers` (FastHttpUser's responses) is
read through its storage, a dict of lowercased name -> (name, value) or a list of them for a repeated field,
rather than through its per-line generator and its `__len__`, which walk every field.
Imports nothing (the metrics module must not import Locust).
"""

from __future__ import annotations

_dict_values, _dict_get = dict.values, dict.get
_split: dict[type, bool] = {}  # header class -> stored the geventhttpclient way
_last: list = [None, (0, None)]  # the last headers object seen and its answer


def _is_split(headers) -> bool:
    t = type(headers)
    split = _split.get(t)
    if split is None:
        split = _split[t] = isinstance(headers, dict) and t.__module__.startswith("geventhttpclient.")
    return split


def head_bytes(headers) -> tuple[int, int | None]:
    """(Σ len(name) + len(value) + 4 over the header lines, i.e. "Name: value\\r\\n", 0 when there are none;
    the first Content-Length that parses, else None)."""
    if headers is _last[0]:
        return _last[1]
    if _is_split(headers):
        size = 0
        for v in _dict_values(headers):
            if type(v) is tuple:
                size += len(v[0]) + len(v[1]) + 4
            else:
                for field, value in v:
                    size += len(field) + len(value) + 4
        cl = _dict_get(headers, "content-length")
        lines = () if cl is None else (cl,) if type(cl) is tuple else cl
    else:
        size = sum(len(k) + len(v) + 4 for k, v in headers.items())
        lines = headers.items()
    body = None
    for k, v in lines:
        if len(k) == 14 and k.lower() == "content-length":
            try:
                body = int(v)
                break
            except ValueError:
                continue
    answer = (size, body)
    _last[0], _last[1] = headers, answer
    return answer


def header_lines_bytes(headers) -> int:
    """Σ len(name) + len(value) + 4 over the header lines; 0 when there are none."""
    return head_bytes(headers)[0]
