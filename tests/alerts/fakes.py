"""Local fake servers on 127.0.0.1 speaking the real formats: SendGrid v3 mail/send and a
Standard Webhooks receiver. Both answer from a script of statuses (then 2xx)."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Recorder:
    def __init__(self, statuses=(), default=200, headers=None):
        self.statuses = list(statuses)
        self.default = default
        self.extra_headers = headers or {}
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.hang = None  # a threading.Event: the first request waits on it before answering

    def wait_for(self, count: int, timeout: float) -> dict | None:
        """Blocks (no polling: a waiting thread must not steal CPU from what is measured) until
        `count` requests have arrived; the count-th request, or None on timeout."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout)
            return self.requests[count - 1] if len(self.requests) >= count else None

    def next_status(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if self.statuses else self.default


def _handler(rec: Recorder, check):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            request = {"at": time.perf_counter(), "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
            with rec.lock:
                rec.requests.append(request)
                first = len(rec.requests) == 1
                rec.arrived.notify_all()
            if rec.hang is not None and first:
                rec.hang.wait(60)
            problem = check(request) if check else None
            status = 400 if problem else rec.next_status()
            answer = json.dumps({"errors": [{"message": problem}]} if problem else {"ok": status < 300}).encode()
            if status == 202:  # SendGrid accepts with an empty body
                answer = b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            if status == 429:
                for k, v in rec.extra_headers.items():
                    self.send_header(k, v)
            self.end_headers()
            self.wfile.write(answer)

    return Handler


def check_sendgrid_v3(request) -> str | None:
    """The parts of SendGrid's v3 mail/send contract our client must honour."""
    h = request["headers"]
    if request["path"] != "/v3/mail/send":
        return f"unknown path {request['path']}"
    if not h.get("authorization", "").startswith("Bearer "):
        return "missing bearer API key"
    if not h.get("content-type", "").startswith("application/json"):
        return "content-type must be application/json"
    try:
        p = json.loads(request["body"])
    except ValueError:
        return "body is not JSON"
    pers = p.get("personalizations")
    if not pers or not all(person.get("to") and all("@" in t["email"] for t in person["to"]) for person in pers):
        return "personalizations[].to[].email required"
    if "@" not in p.get("from", {}).get("email", ""):
        return "from.email required"
    if not p.get("subject"):
        return "subject required"
    types = [c["type"] for c in p.get("content", [])]
    if not types or types[0] != "text/plain" or any(not c.get("value") for c in p["content"]):
        return "content: text/plain first, values non-empty"
    return None


@contextmanager
def serve(rec: Recorder, check=None):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec, check))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        if rec.hang is not None:
            rec.hang.set()
        server.shutdown()
        server.server_close()
