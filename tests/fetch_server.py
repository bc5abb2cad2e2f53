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
    /to-file-signed          302 to file:///etc/passwd?sig=l0cati0n (a secret only the server knows)
    /to-nonsense             302 to a Location that is no URL (an unclosed IPv6 host)
    /to-host/<host>/<path>   302 to http://<host>:<port>/<path>
    /to?u=<quoted URL>       302 to that URL, whatever it is
    /drip/<name>             headers, then the body one byte every ``drip_s`` seconds (for ``drip_for`` s)
    /drip-head               the status line and headers one byte every ``drip_s`` seconds
    /gzip/<name>             the file gzip-compressed, with Content-Encoding: gzip
    /encoded/<coding>/<name> the file as it is, labelled Content-Encoding: <coding>
    /html-once/<name>        a 200 HTML error page the first time, then the file
    /freesound/apiv2/sounds/<id>/   Freesound's sound instance JSON (token required), `previews` ->
                             /audio/<id>.ogg; over ``freesound_cap`` API requests: 429
"""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class FetchServer:
    """``host``: the loopback address it binds (127.0.0.1-127.0.0.9 play different hosts);
    ``tls``: (certificate file, key file) to serve https."""

    def __init__(
        self,
        files: dict[str, bytes],
        *,
        slow_s: float = 0.05,
        host: str = "127.0.0.1",
        tls: tuple[str, str] | None = None,
        drip_s: float = 0.5,
        drip_for: float = 30.0,
    ):
        self.files = files
        self.slow_s = slow_s
        self.host = host
        self.scheme = "https" if tls else "http"
        self.drip_s, self.drip_for = drip_s, drip_for
        self.times: list[tuple[str, float]] = []  # (path, time.monotonic() at arrival)
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
                    server.times.append((self.path, time.monotonic()))
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                try:
                    server.route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server.lock:
                        server.active -= 1

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
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

    def url(self, path: str, host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"

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
        if kind == "to-file-signed":
            return self._send(h, b"", status=302, extra={"Location": "file:///etc/passwd?sig=l0cati0n"})
        if kind == "to-file":
            return self._send(h, b"", status=302, extra={"Location": "file:///etc/passwd"})
        if kind == "to-host":
            target = f"http://{rest[0]}:{self.port}/{'/'.join(rest[1:])}"
            return self._send(h, b"", status=302, extra={"Location": target})
        if kind == "freesound":
            return self._freesound(h, rest)
        if kind == "to":
            target = parse_qs(urlsplit(h.path).query)["u"][0]
            return self._send(h, b"", status=302, extra={"Location": target})
        if kind == "drip":
            data = self.files[rest[0]]
            self._head(h, 200, len(data))
            end = time.monotonic() + self.drip_for
            for i in range(len(data)):
                if time.monotonic() > end:
                    break
                h.wfile.write(data[i : i + 1])
                h.wfile.flush()
                time.sleep(self.drip_s)
            h.close_connection = True
            return
        if kind == "drip-head":
            head = b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\n" + b"X-Pad: " + b"a" * 200 + b"\r\n\r\n"
            end = time.monotonic() + self.drip_for
            for i in range(len(head)):
                if time.monotonic() > end:
                    break
                h.wfile.write(head[i : i + 1])
                h.wfile.flush()
                time.sleep(self.drip_s)
            h.close_connection = True
            return
        if kind == "gzip":
            body = gzip.compress(self.files[rest[0]], mtime=0)
            return self._send(h, body, extra={"Content-Type": "audio/flac", "Content-Encoding": "gzip"})
        if kind == "encoded":
            return self._send(h, self.files[rest[1]], extra={"Content-Encoding": rest[0]})
        if kind == "html-once":
            if self.count(h.path) == 1:
                page = b"<!DOCTYPE html><html><body><h1>503 Service busy</h1></body></html>"
                return self._send(h, page, extra={"Content-Type": "text/html"})
            return self._send(h, self.files[rest[0]])
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


def self_signed(folder) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and localhost, made here: (cert file, key file). A
    client trusts it with SSL_CERT_FILE pointing at the cert file."""
    import datetime
    import ipaddress
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clap-corpus test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_file), str(key_file)
