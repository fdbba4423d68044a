"""A local HTTPS stand-in for the OpenAI, Anthropic and Gemini APIs.

It presents a certificate (made with trustme) for the real API host names,
records every request it gets (host, method, path, headers, body) and answers
each API with a minimal response the official SDKs parse. lantern reaches it
through `upstream.resolve` and trusts it through `upstream.ca_file`.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import trustme

HOSTS = ("api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com")
REPLY = "mock reply from upstream"
SOCKET_TIMEOUT = 15.0


@dataclass
class Recorded:
    host: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = field(repr=False)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


def _openai_chat(req: Recorded) -> dict:
    model = req.json().get("model", "gpt-4o-mini")
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
    }


def _openai_file(req: Recorded) -> dict:
    name = re.search(rb'filename="([^"]*)"', req.body)
    return {
        "id": "file-mock123",
        "object": "file",
        "bytes": len(req.body),
        "created_at": int(time.time()),
        "filename": name.group(1).decode() if name else "upload",
        "purpose": "assistants",
        "status": "processed",
    }


def _anthropic_message(req: Recorded) -> dict:
    model = req.json().get("model", "claude-sonnet-4-5")
    return {
        "id": "msg_mock",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": REPLY}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 4},
    }


def _gemini_generate(req: Recorded) -> dict:
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": REPLY}]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 4, "totalTokenCount": 9},
        "modelVersion": "gemini-2.0-flash",
    }


ROUTES = [
    ("api.openai.com", "POST", re.compile(r"^/v1/chat/completions$"), _openai_chat),
    ("api.openai.com", "POST", re.compile(r"^/v1/files$"), _openai_file),
    ("api.anthropic.com", "POST", re.compile(r"^/v1/messages$"), _anthropic_message),
    (
        "generativelanguage.googleapis.com",
        "POST",
        re.compile(r"^/v1(beta)?/models/[^/:]+:generateContent$"),
        _gemini_generate,
    ),
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format, *args):  # noqa: A002 - keep the test output quiet
        pass

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self):
        host = (self.headers.get("Host") or "").split(":")[0]
        path = self.path.split("?")[0]
        req = Recorded(
            host=host,
            method=self.command,
            path=path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._body(),
        )
        self.server.upstream._record(req)
        for r_host, r_method, r_path, answer in ROUTES:
            if host == r_host and self.command == r_method and r_path.match(path):
                status, payload = 200, answer(req)
                break
        else:
            status, payload = 404, {"error": {"message": f"mock: no route for {self.command} {host}{path}"}}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    upstream: "MockUpstream"

    def finish_request(self, request, client_address):
        # TLS handshake in the per-connection thread, never in the accept loop.
        request.settimeout(SOCKET_TIMEOUT)
        try:
            tls = self.upstream.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass


class MockUpstream:
    """HTTPS server on 127.0.0.1:<ephemeral> answering as all three APIs."""

    def __init__(self, ca: trustme.CA):
        cert = ca.issue_cert(*HOSTS)
        self.ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(self.ssl_context)
        self.ssl_context.set_alpn_protocols(["http/1.1"])
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.upstream = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="mock-upstream", daemon=True)

    def start(self) -> "MockUpstream":
        self._thread.start()
        # Fail early if the listener does not accept.
        socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _record(self, req: Recorded):
        with self._lock:
            self._requests.append(req)

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def clear(self):
        with self._lock:
            self._requests.clear()

    def only(self, path_prefix: str = "") -> Recorded:
        """The single recorded request (optionally under a path prefix)."""
        reqs = [r for r in self.requests if r.path.startswith(path_prefix)]
        assert len(reqs) == 1, f"expected exactly one upstream request under {path_prefix!r}, got {reqs}"
        return reqs[0]
