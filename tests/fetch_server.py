"""A real HTTP server on 127.0.0.1 for the fetch tests: serves real encoded files and misbehaves on
purpose, by path. Every request is logged (path, headers) so that tests can count fetches.

    /audio/<name>            the file, with its Content-Length
    /slow/<name>             headers, then the body one 1 KiB chunk every ``slow_s`` seconds
    /stall/<name>            headers and half the body, then nothing for 5 s
    /reset/<name>            half the body, then a TCP reset
    /reset-once/<name>       the first request is reset mid-body, the next ones get the file
    /longer/<name>           the file, then 4 KiB more than Content-Length says
    /huge                    an endless body without Content-Length (ends when the client leaves)
    /status/<code>           that status, a short body
    /429-once/<name>         429 with Retry-After: 1 on the first request, then the file
    /500-until/<n>/<name>    500 for the first n requests, then the file
    /loop/<i>                302 to /loop/<i+1>
    /to-file                 302 to file:///etc/passwd
    /to-nonsense             302 to a Location that is no URL (an unclosed IPv6 host)
    /to-host/<host>/<path>   302 to http://<host>:<port>/<path>
    /freesound/apiv2/sounds/<id>/   Freesound's sound instance JSON (token required), `previews` ->
                             /audio/<id>.ogg; over ``freesound_cap`` API requests: 429
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FetchServer:
    def __init__(self, files: dict[str, bytes], *, slow_s: float = 0.05):
        self.files = files
        self.slow_s = slow_s
        self.log: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.freesound_token = "secret-token"
        self.freesound_cap: int | None = None
        self.freesound_calls = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                with server.lock:
                    server.log.append((self.path, dict(self.headers.items())))
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                try:
                    server.route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server.lock:
                        server.active -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # clients that hang up mid-body
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FetchServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def count(self, path: str) -> int:
        with self.lock:
            return sum(1 for p, _ in self.log if p == path)

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(p for p, _ in self.log)

    def headers_for(self, path: str) -> list[dict[str, str]]:
        with self.lock:
            return [h for p, h in self.log if p == path]

    # -- behaviour by path --

    def route(self, h: BaseHTTPRequestHandler) -> None:
        parts = h.path.split("?", 1)[0].strip("/").split("/")
        kind, rest = parts[0], parts[1:]
        if kind in ("audio", "slow", "stall", "reset", "reset-once", "longer") and rest[-1] not in self.files:
            return self._send(h, b"not found", status=404)
        if kind == "audio":
            ext = rest[0].rsplit(".", 1)[-1]
            kind_of = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "ogg": "audio/ogg"}
            return self._send(h, self.files[rest[0]], extra={"Content-Type": kind_of.get(ext, "audio/mpeg")})
        if kind == "slow":
            return self._slow(h, self.files[rest[0]])
        if kind == "stall":
            data = self.files[rest[0]]
            self._head(h, 200, len(data))
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            time.sleep(5)
            return
        if kind == "reset" or (kind == "reset-once" and self.count(h.path) == 1):
            data = self.files[rest[0]]
            self._head(h, 200, len(data))
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            # SO_LINGER 0: close() sends RST instead of FIN
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
            h.close_connection = True
            return
        if kind == "reset-once":
            return self._send(h, self.files[rest[0]])
        if kind == "longer":
            data = self.files[rest[0]]
            self._head(h, 200, len(data))
            h.wfile.write(data + b"\x00" * 4096)
            h.close_connection = True
            return
        if kind == "huge":
            h.send_response(200)
            h.send_header("Content-Type", "audio/wav")
            h.send_header("Connection", "close")
            h.end_headers()
            h.close_connection = True
            block = b"\x01" * 65536
            for _ in range(100_000):  # 6.5 GB unless the client hangs up first
                h.wfile.write(block)
            return
        if kind == "status":
            return self._send(h, b"no", status=int(rest[0]))
        if kind == "429-once":
            if self.count(h.path) == 1:
                return self._send(h, b"slow down", status=429, extra={"Retry-After": "1"})
            return self._send(h, self.files[rest[0]])
        if kind == "500-until":
            if self.count(h.path) <= int(rest[0]):
                return self._send(h, b"oops", status=500)
            return self._send(h, self.files[rest[1]])
        if kind == "loop":
            return self._send(h, b"", status=302, extra={"Location": f"/loop/{int(rest[0]) + 1}"})
        if kind == "to-nonsense":
            return self._send(h, b"", status=302, extra={"Location": "http://[::1/audio"})
        if kind == "to-file":
            return self._send(h, b"", status=302, extra={"Location": "file:///etc/passwd"})
        if kind == "to-host":
            target = f"http://{rest[0]}:{self.port}/{'/'.join(rest[1:])}"
            return self._send(h, b"", status=302, extra={"Location": target})
        if kind == "freesound":
            return self._freesound(h, rest)
        return self._send(h, b"not found", status=404)

    def _freesound(self, h: BaseHTTPRequestHandler, rest: list[str]) -> None:
        # /freesound/apiv2/sounds/<id>/
        if h.headers.get("Authorization") != f"Token {self.freesound_token}":
            return self._send(h, b'{"detail": "Authentication credentials were not provided."}', status=401)
        with self.lock:
            self.freesound_calls += 1
            over = self.freesound_cap is not None and self.freesound_calls > self.freesound_cap
        if over:
            body = b'{"detail": "Request was throttled. Expected available in 86400 seconds."}'
            return self._send(h, body, status=429, extra={"Retry-After": "86400"})
        sound = rest[2]
        name = f"{sound}.ogg"
        if name not in self.files:
            return self._send(h, b'{"detail": "Not found."}', status=404)
        doc = {
            "id": int(sound),
            "name": name,
            "previews": {
                "preview-hq-ogg": self.url(f"/audio/{name}"),
                "preview-lq-ogg": self.url(f"/audio/{name}"),
            },
        }
        return self._send(h, json.dumps(doc).encode(), extra={"Content-Type": "application/json"})

    def _head(self, h: BaseHTTPRequestHandler, status: int, length: int, extra: dict | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Length", str(length))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()

    def _send(self, h, data: bytes, status: int = 200, extra: dict | None = None) -> None:
        self._head(h, status, len(data), extra)
        h.wfile.write(data)

    def _slow(self, h, data: bytes) -> None:
        self._head(h, 200, len(data))
        for i in range(0, len(data), 1024):
            h.wfile.write(data[i : i + 1024])
            h.wfile.flush()
            time.sleep(self.slow_s)
