"""A tiny stand-in for the Hugging Face Hub's file-resolve endpoint, on 127.0.0.1.

Answers HEAD and GET ``/{owner}/{name}/resolve/{revision}/{filename}`` for the files it is
given, with the headers huggingface_hub reads (X-Repo-Commit, ETag, Content-Length); 404
otherwise. Used by the zoo tests through HF_ENDPOINT."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HubServer:
    def __init__(self, files: dict[tuple[str, str, str], bytes]):
        """files: (repo, revision, filename) -> content."""
        self.files = files
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _find(self):
                outer.requests.append(f"{self.command} {self.path}")
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return None, None
                repo, rev, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                return rev, outer.files.get((repo, rev, name))

            def _head(self, rev, body):
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    return False
                self.send_response(200)
                self.send_header("X-Repo-Commit", rev)
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                return True

            def do_HEAD(self):
                self._head(*self._find())

            def do_GET(self):
                rev, body = self._find()
                if self._head(rev, body):
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
