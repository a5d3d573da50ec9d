"""A local stand-in for the Hugging Face Hub's download API, for tests.

It serves model repos held in memory on 127.0.0.1 (a random port), speaking
what ``huggingface_hub`` (0.30 to 2.x) uses to download:

- ``HEAD``/``GET /{owner}/{repo}/resolve/{revision}/{file}``: the file, with
  ``X-Repo-Commit``, ``ETag`` (the sha256 of an LFS file, the git blob sha1
  of another, quoted) and ``Content-Length``; never ``X-Xet-Hash`` (the
  client would then try the Xet protocol). ``Range: bytes=N-`` is honoured.
- ``GET /api/models/{owner}/{repo}/revision/{revision}``: JSON with ``sha``
  and ``siblings`` (older clients list files here).
- ``GET /api/models/{owner}/{repo}/tree/{revision}[?recursive=true]``: JSON
  list of ``{type, path, size, oid[, lfs]}`` (recent clients).

Unknown repos, revisions and files answer 404 with the Hub's
``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``), which the client turns into its typed errors.

Example:

```python
with LocalHub() as hub:
    commit = hub.add_repo("owner/repo", folder)      # branch "main"
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    ...
```
"""

import hashlib
import http.server
import json
import socket
import threading
import urllib.parse
from pathlib import Path

# Files the Hub stores through LFS (by .gitattributes); their ETag is the sha256.
LFS_SUFFIXES = (".h5", ".keras", ".bin", ".safetensors", ".npz")


def git_blob_sha1(data):
    """The git object id of a blob: sha1 of "blob <size>\\0" + data."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def is_lfs(path):
    return path.endswith(LFS_SUFFIXES)


class LocalHub:
    """Model repos served over HTTP the way the Hub serves them.

    Attributes:
        url: ``http://127.0.0.1:<port>``, for ``HF_ENDPOINT``.
        requests: list of ``(method, path)`` received, for assertions.
    """

    def __init__(self):
        self._repos = {}  # repo_id -> {"commits": {sha: {path: bytes}}, "refs": {name: sha}}
        self._tampered = {}  # (repo_id, path) -> bytes served instead
        self._drops = {}  # file name -> how many more downloads to cut midway
        self.requests = []
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    # --- repos -------------------------------------------------------------

    def add_repo(self, repo_id, files, branch="main", commit=None):
        """Adds a commit to ``repo_id`` holding ``files`` (a folder, or a dict
        path -> bytes) and points ``branch`` at it. ``commit`` (40 hex
        digits) names the commit, e.g. a registry entry's pinned revision;
        by default it is a hash of the content. Returns the commit sha."""
        if not isinstance(files, dict):
            folder = Path(files)
            files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        if commit is None:
            digest = hashlib.sha1(repo_id.encode())
            for path in sorted(files):
                digest.update(path.encode() + b"\x00" + files[path])
            commit = digest.hexdigest()
        with self._lock:
            repo = self._repos.setdefault(repo_id, {"commits": {}, "refs": {}})
            repo["commits"][commit] = dict(files)
            if branch is not None:
                repo["refs"][branch] = commit
        return commit

    def tamper(self, repo_id, path, data):
        """Serves ``data`` for ``path`` in every revision of ``repo_id`` (with
        headers that match the new bytes, as a compromised mirror would)."""
        with self._lock:
            self._tampered[(repo_id, path)] = data

    def drop_connections(self, filename, times):
        """Cuts the next ``times`` downloads of ``filename``: the headers
        promise the whole file, half of it is sent, then the connection is
        closed (a dropped connection, as a flaky network gives)."""
        with self._lock:
            self._drops[filename] = times

    def _take_drop(self, path):
        with self._lock:
            name = path.rsplit("/", 1)[-1]
            if self._drops.get(name, 0) > 0:
                self._drops[name] -= 1
                return True
            return False

    def _resolve(self, repo_id, revision):
        repo = self._repos.get(repo_id)
        if repo is None:
            return None, "RepoNotFound"
        commit = repo["refs"].get(revision, revision)
        if commit not in repo["commits"]:
            return None, "RevisionNotFound"
        return commit, None

    def _file(self, repo_id, commit, path):
        files = self._repos[repo_id]["commits"][commit]
        if path not in files:
            return None
        return self._tampered.get((repo_id, path), files[path])

    # --- server ------------------------------------------------------------

    @property
    def url(self):
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class _Handler(http.server.BaseHTTPRequestHandler):
    hub = None
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output clean
        pass

    # --- replies -----------------------------------------------------------

    def _reply(self, status, body=b"", headers=None, send_body=True):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)

    def _error(self, status, code, message, send_body=True, commit=None):
        headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
        if commit is not None:
            headers["X-Repo-Commit"] = commit
        self._reply(status, json.dumps({"error": message}).encode(), headers, send_body)

    def _json(self, value):
        self._reply(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

    # --- routes ------------------------------------------------------------

    def do_HEAD(self):
        self._route(send_body=False)

    def do_GET(self):
        self._route(send_body=True)

    def _route(self, send_body):
        parsed = urllib.parse.urlsplit(self.path)
        with self.hub._lock:
            self.hub.requests.append((self.command, parsed.path))
        parts = [urllib.parse.unquote(p) for p in parsed.path.split("/") if p]
        if len(parts) >= 5 and parts[0] == "api" and parts[1] == "models" and parts[4] in ("revision", "tree"):
            if len(parts) < 6:
                return self._error(404, "RevisionNotFound", "no revision", send_body)
            repo_id = f"{parts[2]}/{parts[3]}"
            # A revision such as "refs/pr/1" arrives URL-quoted in one segment.
            revision = parts[5]
            if parts[4] == "revision":
                return self._model_info(repo_id, revision, send_body)
            return self._tree(repo_id, revision, "/".join(parts[6:]), send_body)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id = f"{parts[0]}/{parts[1]}"
            return self._resolve_file(repo_id, parts[3], "/".join(parts[4:]), send_body)
        return self._error(404, "EntryNotFound", f"no route {parsed.path}", send_body)

    def _model_info(self, repo_id, revision, send_body):
        commit, error = self.hub._resolve(repo_id, revision)
        if error:
            return self._error(404, error, f"{repo_id}@{revision}: {error}", send_body)
        files = self.hub._repos[repo_id]["commits"][commit]
        self._json(
            {
                "_id": repo_id,
                "id": repo_id,
                "modelId": repo_id,
                "sha": commit,
                "private": False,
                "siblings": [{"rfilename": path} for path in sorted(files)],
            }
        )

    def _tree(self, repo_id, revision, prefix, send_body):
        commit, error = self.hub._resolve(repo_id, revision)
        if error:
            return self._error(404, error, f"{repo_id}@{revision}: {error}", send_body)
        entries = []
        for path in sorted(self.hub._repos[repo_id]["commits"][commit]):
            if prefix and not path.startswith(prefix.rstrip("/") + "/"):
                continue
            data = self.hub._file(repo_id, commit, path)
            entry = {"type": "file", "path": path, "size": len(data), "oid": git_blob_sha1(data)}
            if is_lfs(path):
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        self._json(entries)

    def _resolve_file(self, repo_id, revision, path, send_body):
        commit, error = self.hub._resolve(repo_id, revision)
        if error:
            return self._error(404, error, f"{repo_id}@{revision}: {error}", send_body)
        data = self.hub._file(repo_id, commit, path)
        if data is None:
            return self._error(404, "EntryNotFound", f"{path} not in {repo_id}@{revision}", send_body, commit)
        etag = hashlib.sha256(data).hexdigest() if is_lfs(path) else git_blob_sha1(data)
        headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream"}
        status, body = 200, data
        byte_range = self.headers.get("Range", "")
        if send_body and byte_range.startswith("bytes=") and byte_range.endswith("-"):
            start = int(byte_range[len("bytes=") : -1] or 0)
            status, body = 206, data[start:]
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        headers["Content-Length"] = str(len(body))
        if send_body and len(body) > 1 and self.hub._take_drop(path):
            self._reply(status, body[: len(body) // 2], headers, send_body)
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._reply(status, body, headers, send_body)
