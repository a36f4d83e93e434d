"""A webhook receiver on 127.0.0.1 (or another loopback address) that misbehaves on request: answers, answers late, hangs
(reads the request, never answers) or drips its answer a byte at a time (slow loris).

Records every request with its webhook-id; `delivered` counts ids it answered 2xx to."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, mode: str = "ok", delay: float = 0.0, host: str = "127.0.0.1", port: int = 0):
        self.mode, self.delay = mode, delay
        self.requests: list[dict] = []
        self.answered: list[str] = []  # webhook-ids answered 2xx, in order
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self):
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                msg_id = self.headers.get("webhook-id", "")
                with rec.lock:
                    rec.requests.append({"at": time.monotonic(), "id": msg_id, "mode": rec.mode,
                                         "host": self.headers.get("Host", "")})
                mode = rec.mode
                if mode == "hang":
                    rec.stop.wait(120)
                    return
                if mode == "drip":
                    # A status line and headers that never end, one byte a second.
                    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"." * 10_000:
                        if rec.stop.wait(1.0):
                            return
                        try:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                        except OSError:
                            return
                    return
                if mode == "slow":
                    time.sleep(rec.delay)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                with rec.lock:
                    rec.answered.append(msg_id)

        return Handler

    def figures(self) -> dict:
        with self.lock:
            ids = [r["id"] for r in self.requests]
            return {"received": len(ids), "delivered": len(set(self.answered)),
                    "duplicates": len(self.answered) - len(set(self.answered))}

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
