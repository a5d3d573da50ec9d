"""A local stand-in for the Hugging Face Hub's download and upload API, for tests.

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

and to upload (``create_repo``, ``create_branch``, ``upload_folder``):

- ``POST /api/validate-yaml``: a README's YAML front matter must parse into
  a mapping (400 with ``errors`` otherwise).
- ``POST /api/repos/create``: a new repo with an empty first commit on
  ``main``; 409 (with the repo's ``url``) when it exists.
- ``POST /api/models/{owner}/{repo}/branch/{branch}``: a branch at
  ``main``'s head (or the body's ``startingPoint``); 409 when it exists.
- ``POST /api/models/{owner}/{repo}/preupload/{revision}``: every file is
  a "regular" upload (its bytes travel base64-encoded in the commit, so the
  client never takes the LFS or Xet path), with the git blob sha1 of the
  file already at that path as ``oid``.
- ``POST /api/models/{owner}/{repo}/commit/{revision}``: the NDJSON commit
  (``header``, ``file``, ``deletedFile``, ``deletedFolder``) applied to the
  branch's head, answering ``commitOid`` and ``commitUrl``; a
  ``parentCommit`` that is not the head is refused (412), as the Hub does.

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

import base64
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

    def commit_files(self, repo_id, revision="main"):
        """``{path: bytes}`` of ``revision`` (a branch or a commit) of ``repo_id``."""
        with self._lock:
            commit, error = self._resolve(repo_id, revision)
            if error:
                raise KeyError(f"{repo_id}@{revision}: {error}")
            return dict(self._repos[repo_id]["commits"][commit])

    def commit_message(self, repo_id, commit):
        """The summary line of a commit made through the upload API."""
        return self._repos[repo_id].get("messages", {}).get(commit)

    def is_private(self, repo_id):
        return bool(self._repos[repo_id].get("private"))

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

    def do_POST(self):
        parsed = urllib.parse.urlsplit(self.path)
        with self.hub._lock:
            self.hub.requests.append((self.command, parsed.path))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = [urllib.parse.unquote(p) for p in parsed.path.split("/") if p]
        if parts == ["api", "repos", "create"]:
            return self._create_repo(json.loads(body))
        if parts == ["api", "validate-yaml"]:
            return self._validate_yaml(json.loads(body)["content"])
        if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] in ("branch", "preupload", "commit"):
            repo_id, revision = f"{parts[2]}/{parts[3]}", parts[5]
            if repo_id not in self.hub._repos:
                return self._error(404, "RepoNotFound", f"{repo_id}: RepoNotFound")
            handler = {"branch": self._create_branch, "preupload": self._preupload, "commit": self._commit}[parts[4]]
            return handler(repo_id, revision, body)
        return self._error(404, "EntryNotFound", f"no route POST {parsed.path}")

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

    # --- uploads ---------------------------------------------------------------

    def _create_repo(self, request):
        repo_id = f"{request['organization']}/{request['name']}" if request.get("organization") else request["name"]
        url = f"{self.hub.url}/{repo_id}"
        if repo_id in self.hub._repos:
            return self._reply(409, json.dumps({"error": "You already created this model repo", "url": url}).encode(),
                               {"Content-Type": "application/json"})
        self.hub.add_repo(repo_id, {}, commit=hashlib.sha1(b"initial commit " + repo_id.encode()).hexdigest())
        self.hub._repos[repo_id]["private"] = request.get("visibility") == "private" or bool(request.get("private"))
        self._json({"url": url, "name": repo_id})

    def _validate_yaml(self, content):
        """A model card's YAML front matter must parse into a mapping (the Hub
        also checks its keys against its schemas; this server does not)."""
        import yaml

        errors = []
        if content.startswith("---"):
            front = content.split("\n---", 1)[0][3:]
            try:
                if not isinstance(yaml.safe_load(front) or {}, dict):
                    errors.append("the metadata is not a mapping")
            except yaml.YAMLError as error:
                errors.append(f"invalid YAML: {error}")
        if errors:
            return self._reply(400, json.dumps({"errors": [{"message": m} for m in errors]}).encode(),
                               {"Content-Type": "application/json", "X-Error-Code": "BadRequest"})
        self._json({"warnings": []})

    def _create_branch(self, repo_id, branch, body):
        request = json.loads(body) if body else {}
        refs = self.hub._repos[repo_id]["refs"]
        if branch in refs:
            return self._reply(409, json.dumps({"error": f"Reference {branch} already exists"}).encode(),
                               {"Content-Type": "application/json"})
        commit, error = self.hub._resolve(repo_id, request.get("startingPoint") or "main")
        if error:
            return self._error(404, error, f"{repo_id}: {error}")
        with self.hub._lock:
            refs[branch] = commit
        self._json({})

    def _preupload(self, repo_id, revision, body):
        commit, error = self.hub._resolve(repo_id, revision)
        if error:
            return self._error(404, error, f"{repo_id}@{revision}: {error}")
        files = self.hub._repos[repo_id]["commits"][commit]
        answers = []
        for item in json.loads(body)["files"]:
            existing = files.get(item["path"])
            answers.append({"path": item["path"], "uploadMode": "regular", "shouldIgnore": False,
                            "oid": None if existing is None else git_blob_sha1(existing)})
        self._json({"files": answers, "commitOid": commit})

    def _commit(self, repo_id, revision, body):
        repo = self.hub._repos[repo_id]
        if revision not in repo["refs"]:
            return self._error(404, "RevisionNotFound", f"{repo_id}@{revision}: not a branch")
        head = repo["refs"][revision]
        files = dict(repo["commits"][head])
        header = {}
        for line in body.splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding") != "base64":
                    return self._error(400, "BadRequest", f"unsupported encoding {value.get('encoding')!r}")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: d for p, d in files.items() if not p.startswith(prefix)}
            else:  # lfsFile: this server never asks for LFS uploads
                return self._error(400, "BadRequest", f"unsupported commit operation {key!r}")
        if header.get("parentCommit") not in (None, head):
            return self._error(412, "PreconditionFailed", f"parent commit {header['parentCommit']} is not the head {head}")
        digest = hashlib.sha1(head.encode() + json.dumps(header, sort_keys=True).encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\x00" + files[path])
        commit = digest.hexdigest()
        with self.hub._lock:
            repo["commits"][commit] = files
            repo["refs"][revision] = commit
            repo.setdefault("messages", {})[commit] = header.get("summary", "")
        self._json({"commitUrl": f"{self.hub.url}/{repo_id}/commit/{commit}", "commitOid": commit,
                    "pullRequestUrl": None})

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
