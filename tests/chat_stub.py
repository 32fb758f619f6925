"""An OpenAI-compatible ``/v1/chat/completions`` on 127.0.0.1 for the judge and served-generation tests: every
request recorded, ``script`` replies (status, headers, body) served first, then ``reply(request)``'s."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Reply = tuple[int, dict, str]


class ChatStub:
    def __init__(self, reply: Callable[[dict], Reply]):
        self.requests: list[dict] = []      # {"path", "auth" (the Authorization header or None), "body"}
        self.script: list[Reply] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                request = {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                with stub.lock:
                    stub.requests.append(request)
                    scripted = stub.script.pop(0) if stub.script else None
                status, headers, text = scripted or reply(request)
                data = text.encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
