"""A local fake Hugging Face hub: just what huggingface_hub's downloads ask for.

    GET  /api/models/{org}/{name}[/revision/{rev}]     repo info (sha, siblings)
    GET  /api/models/{org}/{name}/tree/{rev}[/{path}]  file listing (path, size, oid)
    HEAD /{org}/{name}/resolve/{rev}/{path}            X-Repo-Commit, ETag, Content-Length
    GET  /{org}/{name}/resolve/{rev}/{path}            the bytes

Unknown repositories answer 404 with `X-Error-Code: RepoNotFound`, unknown files 404 with
`X-Error-Code: EntryNotFound`, as the real hub does. Every request is recorded, so tests
can check what was (not) downloaded.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


@dataclass
class FakeHub:
    """Repositories served by the fake hub: repo id -> {path in repo: local file}."""

    repos: dict[str, dict[str, Path]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""

    def add(self, repo: str, files: dict[str, Path]) -> None:
        self.repos[repo] = dict(files)

    @staticmethod
    def commit(repo: str) -> str:
        return hashlib.sha1(repo.encode()).hexdigest()

    def downloaded(self, repo: str) -> set[str]:
        """Files of `repo` whose bytes were sent (GET on a resolve URL)."""
        prefix = f"/{repo}/resolve/"
        return {
            path.split("/", 1)[1]
            for method, full in self.requests
            if method == "GET" and full.startswith(prefix)
            for path in [full[len(prefix) :]]
        }


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        self.hub.requests.append((self.command, path))
        if match := _TREE.match(path):
            self._tree(match["repo"], match["path"] or "")
        elif match := _INFO.match(path):
            self._info(match["repo"])
        elif match := _RESOLVE.match(path):
            self._file(match["repo"], match["path"], body)
        else:
            self._error(404, "RepoNotFound")

    def _json(self, data: Any) -> None:
        payload = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, status: int, code: str) -> None:
        payload = json.dumps({"error": code}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _info(self, repo: str) -> None:
        if repo not in self.hub.repos:
            return self._error(404, "RepoNotFound")
        siblings = [{"rfilename": name} for name in sorted(self.hub.repos[repo])]
        self._json({"id": repo, "sha": FakeHub.commit(repo), "siblings": siblings})

    def _tree(self, repo: str, prefix: str) -> None:
        if repo not in self.hub.repos:
            return self._error(404, "RepoNotFound")
        entries = [
            {"type": "file", "path": name, "size": file.stat().st_size, "oid": _sha(file)}
            for name, file in sorted(self.hub.repos[repo].items())
            if name.startswith(prefix)
        ]
        self._json(entries)

    def _file(self, repo: str, name: str, body: bool) -> None:
        file = self.hub.repos.get(repo, {}).get(name)
        if file is None:
            return self._error(404, "EntryNotFound" if repo in self.hub.repos else "RepoNotFound")
        data = file.read_bytes()
        self.send_response(200)
        self.send_header("X-Repo-Commit", FakeHub.commit(repo))
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if body:
            self.wfile.write(data)


def _sha(file: Path) -> str:
    return hashlib.sha1(file.read_bytes()).hexdigest()


@contextmanager
def serve(hub: FakeHub) -> Iterator[FakeHub]:
    """Serve `hub` on 127.0.0.1 (a free port) in a background thread; sets `hub.url`."""
    handler = type("Handler", (_Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
