"""Who may fetch which file of the web page: uploads and results are served to the browser that made them.

Gradio serves every file of its cache folder (`/gradio_api/file=PATH`) to anyone who knows the URL.
`SessionGuard`, an ASGI middleware in front of Gradio's routes, ties them to a browser instead:

- every browser gets a random owner cookie (HttpOnly, SameSite=Lax) on its first request;
- the paths an upload request returns are recorded as that owner's (`SessionFiles.claim`), before
  the browser sees them; the page records its results the same way (`owner_of(request)`);
- a file request for a path with owners, from anyone else, is answered 404.

Files nobody claimed (the examples, Gradio's own assets) are served as Gradio serves them.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
from typing import Dict, Iterable, Optional, Set

OWNER_COOKIE = "edtalk_owner"
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{32}$")  # secrets.token_urlsafe(24)
FILE_ROUTE = re.compile(r"/file=(.+)$")
UPLOAD_ROUTE = re.compile(r"/upload/?$")


def owner_id(token: Optional[str]) -> Optional[str]:
    """The owner a cookie value stands for (a hash: the token itself is never stored); None if invalid."""
    if not token or not TOKEN_PATTERN.match(token):
        return None
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def owner_of(request) -> Optional[str]:
    """The owner of a Gradio request (gr.Request), from its cookie."""
    cookies = getattr(request, "cookies", None) or {}
    return owner_id(cookies.get(OWNER_COOKIE))


class SessionFiles:
    """Owners of served files: a file with owners is served to them only; a published file (an
    example) to everyone, even when someone uploads the same bytes (Gradio stores both at one path)."""

    def __init__(self):
        self.owners: Dict[str, Set[str]] = {}
        self.public: Set[str] = set()
        self.lock = threading.Lock()

    @staticmethod
    def key(path) -> str:
        return os.path.realpath(str(path))

    def publish(self, path) -> None:
        with self.lock:
            self.public.add(self.key(path))
            self.owners.pop(self.key(path), None)

    def claim(self, path, owner: Optional[str]) -> None:
        if owner is None:
            return
        with self.lock:
            if self.key(path) not in self.public:
                self.owners.setdefault(self.key(path), set()).add(owner)

    def may_read(self, path, owner: Optional[str]) -> bool:
        with self.lock:
            owners = self.owners.get(self.key(path))
        return owners is None or owner in owners

    def forget(self, paths: Iterable) -> None:
        with self.lock:
            for path in paths:
                self.owners.pop(self.key(path), None)


def _cookie(scope, name: str) -> Optional[str]:
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                k, _, v = part.strip().partition("=")
                if k == name:
                    return v
    return None


def _set_cookie(token: str) -> tuple:
    return b"set-cookie", f"{OWNER_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax".encode()


def _uploaded_paths(body: bytes) -> list:
    try:
        paths = json.loads(body or b"null")
    except ValueError:
        return []
    return [p for p in paths if isinstance(p, str)] if isinstance(paths, list) else []


class SessionGuard:
    """ASGI middleware: the owner cookie, upload claims, and 404 for another owner's files."""

    def __init__(self, app, files: SessionFiles):
        self.app, self.files = app, files

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        token = _cookie(scope, OWNER_COOKIE)
        fresh = None
        if owner_id(token) is None:
            token = fresh = secrets.token_urlsafe(24)
        owner = owner_id(token)
        path = scope.get("path", "")
        served = FILE_ROUTE.search(path)
        if served and not self.files.may_read(served.group(1), owner):
            return await self._not_found(send, fresh)
        upload = scope.get("method") == "POST" and bool(UPLOAD_ROUTE.search(path))
        held = {"start": None, "body": b""}

        async def reply(message):
            if message["type"] == "http.response.start" and fresh:
                message = {**message, "headers": [*message.get("headers", []), _set_cookie(fresh)]}
            if not upload:
                return await send(message)
            # An upload's answer is held until complete: its paths are claimed before the browser has them.
            if message["type"] == "http.response.start":
                held["start"] = message
                return None
            held["body"] += message.get("body", b"")
            if message.get("more_body"):
                return None
            if held["start"]["status"] == 200:
                for uploaded in _uploaded_paths(held["body"]):
                    self.files.claim(uploaded, owner)
            await send(held["start"])
            await send({"type": "http.response.body", "body": held["body"]})

        return await self.app(scope, receive, reply)

    @staticmethod
    async def _not_found(send, fresh: Optional[str]) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8")] + ([_set_cookie(fresh)] if fresh else [])
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": b"Not found"})


__all__ = ["OWNER_COOKIE", "SessionFiles", "SessionGuard", "owner_id", "owner_of"]
