"""A local Hub: the HTTP calls ``huggingface_hub`` and ``transformers`` make, served from a folder on disk.

    hf-mae hub serve --port 8080 --root /srv/hub        # then, on the clients:
    export HF_ENDPOINT=http://HOST:8080 HF_HUB_DISABLE_XET=1

For a lab without internet: push with ``model.push_to_hub("lab/model")``, ``Trainer(push_to_hub=True)`` or
``hf-mae push``, load with ``AutoModel.from_pretrained("lab/model")``. Repositories, branches, tags and files
persist in ``--root`` across restarts (see ``storage.py`` for the layout and why a push cut off midway is
never visible). There is no authentication: serve it only on a trusted network.

Large files travel as in git LFS: the client asks ``preupload`` which files are large, posts their sha256
to the LFS ``batch`` endpoint, PUTs the bytes (the server checks size and sha256), then posts the NDJSON
commit. The Xet protocol is not spoken: clients with ``hf_xet`` installed (huggingface_hub installs it) must set
``HF_HUB_DISABLE_XET=1``, or the server can be started with ``--inline-uploads`` so that every file is sent inside
the commit. Otherwise their pushes of large files fail with "501 Not Implemented ... xet-write-token" (hf_xet
does not show the server's message; the server's log does).

Example (in Python):
    >>> server = start_server("/tmp/hub-root", port=0)   # doctest: +SKIP
    >>> server.url                                        # doctest: +SKIP
    'http://127.0.0.1:40123'
    >>> server.shutdown()                                 # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

from .metadata import split_front_matter, validate_card
from .storage import (
    DEFAULT_BRANCH,
    LFS_SIZE_THRESHOLD,
    REPO_TYPES,
    HubError,
    HubStorage,
    check_path,
    decode_base64_file,
    entry_not_found,
    is_binary,
    lfs_patterns_of,
    matches,
    read_in_chunks,
    tree_oid,
)

_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_PLURAL = {f"{t}s": t for t in REPO_TYPES}


def _split_repo(segments: list[str]) -> tuple[str, str, list[str]]:
    """``[datasets,] ns, name, rest...`` of a non-API URL -> (repo type, repo id, rest)."""
    repo_type = "model"
    if segments and segments[0] in ("datasets", "spaces") and len(segments) > 2:
        repo_type, segments = _PLURAL[segments[0]], segments[1:]
    if len(segments) < 2:
        raise HubError(404, "Not found")
    return repo_type, f"{segments[0]}/{segments[1]}", segments[2:]


class HubRequestHandler(BaseHTTPRequestHandler):
    """Routes one request to ``self.server.storage``; errors become JSON with ``X-Error-Code``."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: don't wait for an ACK in between
    server: HubServer

    # -- plumbing ----------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        if self.server.verbose:
            super().log_message(format, *args)

    @property
    def base_url(self) -> str:
        return f"http://{self.headers.get('Host') or '%s:%d' % self.server.server_address[:2]}"

    def _body_chunks(self) -> Iterator[bytes]:
        """The request body, streamed (Content-Length or chunked transfer encoding); read once."""
        if self._body_read:
            return
        self._body_read = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size_line = self.rfile.readline(65537)
                if not size_line:
                    raise HubError(400, "Request body ended inside a chunk.")
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                remaining = size
                for data in read_in_chunks(self.rfile, size):
                    remaining -= len(data)
                    yield data
                if remaining:
                    raise HubError(400, "Request body ended inside a chunk.")
                self.rfile.readline(3)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            received = 0
            for data in read_in_chunks(self.rfile, length):
                received += len(data)
                yield data
            if received != length:
                raise HubError(400, f"Request body ended after {received} of {length} bytes.")

    def _body(self) -> bytes:
        return b"".join(self._body_chunks())

    def _json_body(self) -> Any:
        body = self._body()
        if not body:
            return {}
        content_type = self.headers.get("Content-Type", "")
        if "application/x-www-form-urlencoded" in content_type:
            return {key: values if len(values) > 1 or key == "paths" else values[0]
                    for key, values in parse_qs(body.decode()).items()}
        try:
            return json.loads(body)
        except json.JSONDecodeError as err:
            raise HubError(400, f"Request body is not valid JSON: {err}") from None

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(value).encode(), headers=headers)

    def _send_error(self, error: HubError) -> None:
        extra = {"X-Error-Message": error.message.encode("ascii", "replace").decode(), **error.headers}
        if error.code:
            extra["X-Error-Code"] = error.code
        self._send_json(error.status, {"error": error.message}, extra)

    def _handle(self) -> None:
        self._body_read = False
        try:
            url = urlsplit(self.path)
            segments = [unquote(s) for s in url.path.split("/")[1:]]
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            self._route(segments, query)
        except HubError as error:
            self._answer_error(error)
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away
        except Exception as error:  # an unexpected bug must still answer, and say what happened
            self._answer_error(HubError(500, f"Internal error: {type(error).__name__}: {error}"))
            if self.server.verbose:
                raise

    def _answer_error(self, error: HubError) -> None:
        try:
            self._drain()
            self._send_error(error)
        except OSError:
            self.close_connection = True  # the connection is gone: nobody to answer

    def _drain(self) -> None:
        """After an error, skip what is left of the request body so the connection can be reused."""
        try:
            for _ in self._body_chunks():
                pass
        except Exception:
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle

    # -- routing -------------------------------------------------------------------------------------
    def _route(self, segments: list[str], query: dict[str, str]) -> None:
        method, store = self.command, self.server.storage
        if segments[:1] == ["api"]:
            rest = segments[1:]
            if rest == ["repos", "create"] and method == "POST":
                return self._create_repo()
            if rest == ["repos", "delete"] and method == "DELETE":
                body = self._json_body()
                repo_id = f"{body.get('organization') or self.server.user}/{body.get('name')}"
                store.delete_repo(body.get("type") or "model", repo_id)
                return self._send_json(200, {})
            if rest == ["validate-yaml"] and method == "POST":
                return self._validate_yaml()
            if rest == ["whoami-v2"] and method == "GET":
                return self._send_json(200, {"type": "user", "name": self.server.user, "fullname": self.server.user,
                                             "orgs": [], "auth": {"type": "access_token",
                                                                  "accessToken": {"role": "write"}}})
            if len(rest) == 1 and rest[0] in _PLURAL and method == "GET":
                return self._list_repos(_PLURAL[rest[0]], query)
            if len(rest) >= 3 and rest[0] in _PLURAL:
                repo_type, repo_id, action = _PLURAL[rest[0]], f"{rest[1]}/{rest[2]}", rest[3:]
                return self._repo_api(repo_type, repo_id, action, query)
            raise HubError(404, f"Unknown API route /{'/'.join(segments)}")
        repo_type, repo_id, rest = _split_repo(segments)
        if repo_id.endswith(".git") and rest[:3] == ["info", "lfs", "objects"]:
            return self._lfs(repo_type, repo_id[: -len(".git")], rest[3:], query)
        if rest[:1] == ["resolve"] and len(rest) >= 3 and method in ("GET", "HEAD"):
            return self._resolve(repo_type, repo_id, rest[1], "/".join(rest[2:]))
        raise HubError(404, f"Not found: /{'/'.join(segments)}")

    def _repo_api(self, repo_type: str, repo_id: str, action: list[str], query: dict[str, str]) -> None:
        method, store = self.command, self.server.storage
        name = action[0] if action else ""
        revision = action[1] if len(action) > 1 else DEFAULT_BRANCH
        if not action and method == "GET":
            return self._send_json(200, self._repo_info(repo_type, repo_id, DEFAULT_BRANCH, query))
        if name == "revision" and method == "GET" and len(action) == 2:
            return self._send_json(200, self._repo_info(repo_type, repo_id, revision, query))
        if name == "tree" and method == "GET" and len(action) >= 2:
            return self._tree(repo_type, repo_id, revision, "/".join(action[2:]), query)
        if name == "paths-info" and method == "POST" and len(action) == 2:
            return self._paths_info(repo_type, repo_id, revision)
        if name == "refs" and method == "GET":
            return self._refs(repo_type, repo_id, query)
        if name == "commits" and method == "GET" and len(action) == 2:
            return self._commits(repo_type, repo_id, revision)
        if name == "preupload" and method == "POST" and len(action) == 2:
            return self._preupload(repo_type, repo_id, revision, query)
        if name == "commit" and method == "POST" and len(action) == 2:
            return self._commit(repo_type, repo_id, revision, query)
        if name == "branch" and len(action) == 2 and method in ("POST", "DELETE"):
            if method == "DELETE":
                store.delete_ref(repo_type, repo_id, "heads", action[1])
            else:
                body = self._json_body()
                store.create_ref(repo_type, repo_id, "heads", action[1], body.get("startingPoint") or DEFAULT_BRANCH,
                                 empty=bool(body.get("emptyBranch")))
            return self._send_json(200, {})
        if name == "tag" and len(action) == 2 and method in ("POST", "DELETE"):
            if method == "DELETE":
                store.delete_ref(repo_type, repo_id, "tags", action[1])
            else:
                body = self._json_body()
                if not isinstance(body.get("tag"), str):
                    raise HubError(400, "Creating a tag needs a JSON body {\"tag\": name}.")
                store.create_ref(repo_type, repo_id, "tags", body["tag"], action[1])
            return self._send_json(200, {})
        if name in ("xet-write-token", "xet-read-token"):
            store.repo_meta(repo_type, repo_id)
            # hf_xet asks for this token itself and shows the client only "501 Not Implemented ... xet-write-token",
            # not this message: say it in the server's log too, where whoever runs the Hub will look
            message = ("This Hub does not speak the Xet protocol: set HF_HUB_DISABLE_XET=1 on the client, or "
                       "start the server with --inline-uploads (every file then travels inside the commit).")
            sys.stderr.write(f"hf-mae hub: a client with hf_xet asked for a Xet token ({repo_id}). {message}\n")
            raise HubError(501, message)
        raise HubError(404, f"Unknown route /api/{repo_type}s/{repo_id}/{'/'.join(action)}")

    # -- repositories -------------------------------------------------------------------------------------
    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.base_url}/{_URL_PREFIX[repo_type]}{repo_id}"

    def _create_repo(self) -> None:
        body = self._json_body()
        repo_type = body.get("type") or "model"
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise HubError(400, "Creating a repository needs a JSON body with a non-empty `name`.")
        repo_id = f"{body.get('organization') or self.server.user}/{name}"
        created = self.server.storage.create_repo(repo_type, repo_id, private=bool(body.get("private")
                                                                                   or body.get("visibility") == "private"))
        url = self._repo_url(repo_type, repo_id)
        if not created:
            # the client's create_repo(exist_ok=True) reads the url from this 409
            return self._send_json(409, {"error": f"You already created this {repo_type} repo", "url": url})
        self._send_json(200, {"url": url, "name": repo_id})

    def _list_repos(self, repo_type: str, query: dict[str, str]) -> None:
        ids = self.server.storage.list_repos(repo_type)
        author, search = query.get("author"), query.get("search")
        ids = [i for i in ids if (not author or i.split("/")[0] == author) and (not search or search in i)]
        store = self.server.storage
        self._send_json(200, [{"id": i, "_id": i, "private": store.repo_meta(repo_type, i)["private"]} for i in ids])

    def _repo_info(self, repo_type: str, repo_id: str, revision: str, query: dict[str, str]) -> dict[str, Any]:
        store = self.server.storage
        meta = store.repo_meta(repo_type, repo_id)
        commit = store.commit(repo_type, repo_id, store.resolve(repo_type, repo_id, revision))
        blobs = query.get("blobs", "").lower() in ("1", "true")
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.oid)
                if entry.lfs_sha256:
                    sibling["lfs"] = {"sha256": entry.lfs_sha256, "size": entry.size,
                                      "pointerSize": entry.pointer_size}
            siblings.append(sibling)
        info: dict[str, Any] = {
            "_id": repo_id, "id": repo_id, "author": repo_id.split("/")[0], "sha": commit.oid,
            "lastModified": commit.date, "createdAt": meta["createdAt"], "private": meta["private"],
            "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings,
            "usedStorage": sum(entry.size for entry in commit.files.values()),
        }
        card = self._read_text(commit.files, "README.md")
        if card is not None:
            try:
                card_data = yaml.safe_load(split_front_matter(card) or "") or {}
            except yaml.YAMLError:
                card_data = {}
            if isinstance(card_data, dict):
                info["cardData"] = card_data
                info["tags"] = list(card_data.get("tags") or [])
                for key in ("library_name", "pipeline_tag"):
                    if isinstance(card_data.get(key), str):
                        info[key] = card_data[key]
        config = self._read_text(commit.files, "config.json")
        if repo_type == "model" and config is not None:
            try:
                config_data = json.loads(config)
                info["config"] = {k: config_data[k] for k in ("architectures", "model_type", "auto_map")
                                  if k in config_data}
                if "auto_map" in config_data:
                    info["tags"].append("custom_code")
            except (json.JSONDecodeError, TypeError):
                pass
        return info

    def _read_text(self, files: dict, path: str) -> str | None:
        entry = files.get(path)
        if entry is None or entry.size > 1 << 20:
            return None
        return self.server.storage.file_path(entry).read_bytes().decode("utf-8", "replace")

    def _tree(self, repo_type: str, repo_id: str, revision: str, folder: str, query: dict[str, str]) -> None:
        store = self.server.storage
        commit = store.commit(repo_type, repo_id, store.resolve(repo_type, repo_id, revision))
        recursive = query.get("recursive", "").lower() in ("1", "true")
        folder = folder.strip("/")
        prefix = f"{folder}/" if folder else ""
        if folder and not any(path.startswith(prefix) for path in commit.files):
            raise entry_not_found(folder, revision)
        entries: dict[str, dict[str, Any]] = {}
        for path, entry in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            for depth in range(1, len(parts)):  # the folders on the way
                if not recursive and depth > 1:
                    break
                sub = prefix + "/".join(parts[:depth])
                entries.setdefault(sub, {"type": "directory", "oid": tree_oid(commit.files, sub), "size": 0,
                                         "path": sub})
            if recursive or len(parts) == 1:
                entries[path] = entry.api_json(path)
        self._send_json(200, list(entries.values()))

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        store = self.server.storage
        body = self._json_body()
        paths = body.get("paths") or []
        paths = [paths] if isinstance(paths, str) else paths
        commit = store.commit(repo_type, repo_id, store.resolve(repo_type, repo_id, revision))
        answer = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                answer.append(commit.files[path].api_json(path))
            elif any(p.startswith(path + "/") for p in commit.files):
                answer.append({"type": "directory", "oid": tree_oid(commit.files, path), "size": 0, "path": path})
        self._send_json(200, answer)

    def _refs(self, repo_type: str, repo_id: str, query: dict[str, str]) -> None:
        refs = self.server.storage.refs(repo_type, repo_id)

        def listing(kind: str, prefix: str) -> list[dict[str, str]]:
            return [{"name": name, "ref": f"{prefix}{name}", "targetCommit": oid} for name, oid in sorted(refs[kind].items())]

        answer = {"branches": listing("heads", "refs/heads/"), "tags": listing("tags", "refs/tags/"), "converts": []}
        if query.get("include_prs", "").lower() in ("1", "true"):
            answer["pullRequests"] = listing("pulls", "refs/pr/")
        self._send_json(200, answer)

    def _commits(self, repo_type: str, repo_id: str, revision: str) -> None:
        history = self.server.storage.history(repo_type, repo_id, revision)
        self._send_json(200, [{"id": c.oid, "title": c.title, "message": c.message, "date": c.date,
                               "authors": [{"user": c.author}]} for c in history])

    # -- uploads ----------------------------------------------------------------------------------------
    def _preupload(self, repo_type: str, repo_id: str, revision: str, query: dict[str, str]) -> None:
        import base64

        store = self.server.storage
        body = self._json_body()
        files = body.get("files")
        if not isinstance(files, list):
            raise HubError(400, "preupload needs a JSON body {\"files\": [{path, sample, size}]}.")
        commit = store.commit(repo_type, repo_id, store.resolve(repo_type, repo_id, revision))
        attributes = self._read_text(commit.files, ".gitattributes") or ""
        lfs_patterns = lfs_patterns_of(attributes)
        gitignore = body.get("gitIgnore")
        if gitignore is None:
            gitignore = self._read_text(commit.files, ".gitignore") or ""
        ignore_patterns = [line.strip() for line in gitignore.splitlines()
                           if line.strip() and not line.strip().startswith("#")]
        answer = []
        for item in files:
            path = check_path(str(item.get("path", "")))
            size = int(item.get("size", 0))
            sample = base64.b64decode(item.get("sample", "") or "")
            large = size >= LFS_SIZE_THRESHOLD or is_binary(sample) or any(matches(path, p) for p in lfs_patterns)
            mode = "lfs" if large and size > 0 and not self.server.inline_uploads else "regular"
            existing = commit.files.get(path)
            oid = None
            if existing is not None:
                oid = existing.lfs_sha256 or existing.oid
            answer.append({"path": path, "uploadMode": mode, "oid": oid,
                           "shouldIgnore": any(matches(path, p) for p in ignore_patterns)})
        self._send_json(200, {"files": answer, "commitOid": commit.oid})

    def _lfs(self, repo_type: str, repo_id: str, action: list[str], query: dict[str, str]) -> None:
        store = self.server.storage
        store.repo_meta(repo_type, repo_id)  # 404 for an unknown repository
        lfs_url = f"{self._repo_url(repo_type, repo_id)}.git/info/lfs/objects"
        lfs_json = "application/vnd.git-lfs+json"
        if action == ["batch"] and self.command == "POST":
            body = self._json_body()
            if body.get("operation") not in ("upload", "download"):
                raise HubError(400, "LFS batch: `operation` must be 'upload' or 'download'.")
            objects = []
            for item in body.get("objects") or []:
                oid, size = str(item.get("oid", "")), item.get("size")
                answer: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
                if not isinstance(size, int) or size < 0 or len(oid) != 64:
                    answer["error"] = {"code": 422, "message": "expected a sha256 `oid` and an integer `size`"}
                elif body["operation"] == "download":
                    if store.has_lfs(oid, size):
                        answer["actions"] = {"download": {"href": f"{lfs_url}/{oid}"}}
                    else:
                        answer["error"] = {"code": 404, "message": "Object does not exist"}
                elif not store.has_lfs(oid, size):  # already stored objects get no actions: nothing to send
                    answer["actions"] = {
                        "upload": {"href": f"{lfs_url}/{oid}?size={size}", "header": {}},
                        "verify": {"href": f"{lfs_url}/verify", "header": {}},
                    }
                objects.append(answer)
            body_bytes = json.dumps({"transfer": "basic", "objects": objects}).encode()
            return self._send(200, body_bytes, lfs_json)
        if action == ["verify"] and self.command == "POST":
            body = self._json_body()
            if not store.has_lfs(str(body.get("oid", "")), body.get("size")):
                raise HubError(404, f"LFS object {body.get('oid')} ({body.get('size')} bytes) is not stored.")
            return self._send(200, b"{}", lfs_json)
        if len(action) == 1 and self.command == "PUT":
            if "size" not in query:
                raise HubError(400, "LFS upload URL lacks ?size=")
            store.receive_lfs(action[0], int(query["size"]), self._body_chunks())
            return self._send(200, b"{}", lfs_json)
        if len(action) == 1 and self.command in ("GET", "HEAD"):
            path = store.lfs_path(action[0])
            if len(action[0]) != 64 or not path.is_file():
                raise HubError(404, "Object does not exist")
            return self._send_file(path, {"ETag": f'"{action[0]}"'})
        raise HubError(404, "Unknown LFS route")

    def _commit(self, repo_type: str, repo_id: str, revision: str, query: dict[str, str]) -> None:
        store = self.server.storage
        store.repo_meta(repo_type, repo_id)
        header: dict[str, Any] | None = None
        operations: list[tuple[str, dict[str, Any]]] = []
        for line in _lines(self._body_chunks()):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                key, value = item["key"], item["value"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise HubError(400, "Commit body must be NDJSON lines {\"key\": ..., \"value\": ...}.") from None
            if key == "header":
                header = value
            elif key == "file":
                # Contents are stored at once (by oid, invisible until the ref moves) so memory stays small.
                content = decode_base64_file(value)
                operations.append((key, {"path": value.get("path"), "oid": store.put_blob(content),
                                         "size": len(content)}))
            else:
                operations.append((key, value))
        if header is None:
            raise HubError(400, "Commit body must start with a `header` line (summary, description).")
        create_pr = query.get("create_pr", "").lower() in ("1", "true")
        oid, pr_number = store.apply_commit(repo_type, repo_id, revision, header, operations, create_pr=create_pr)
        repo_url = self._repo_url(repo_type, repo_id)
        self._send_json(200, {"success": True, "commitOid": oid, "commitUrl": f"{repo_url}/commit/{oid}",
                              "pullRequestUrl": f"{repo_url}/discussions/{pr_number}" if pr_number else None,
                              "hookOutput": ""})

    def _validate_yaml(self) -> None:
        body = self._json_body()
        content = body.get("content")
        if not isinstance(content, str):
            raise HubError(400, "validate-yaml needs a JSON body {\"content\": README text, \"repoType\": ...}.")
        errors, warnings = validate_card(content, body.get("repoType") or "model")
        answer = {"errors": [{"message": m} for m in errors], "warnings": [{"message": m} for m in warnings]}
        self._send_json(400 if errors else 200, answer)

    # -- downloads ---------------------------------------------------------------------------------------
    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        store = self.server.storage
        store.repo_meta(repo_type, repo_id)
        oid = store.resolve(repo_type, repo_id, revision)
        entry = store.commit(repo_type, repo_id, oid).files.get(path)
        if entry is None:
            raise entry_not_found(path, revision, oid)
        headers = {"X-Repo-Commit": oid, "ETag": f'"{entry.oid}"',
                   "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}"}
        if entry.lfs_sha256:
            headers.update({"X-Linked-Etag": f'"{entry.lfs_sha256}"', "X-Linked-Size": str(entry.size)})
        self._send_file(store.file_path(entry), headers)

    def _send_file(self, path, headers: dict[str, str]) -> None:
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        requested = self.headers.get("Range", "")
        if requested.startswith("bytes=") and "," not in requested:  # one range; several -> the whole file
            first, _, last = requested[len("bytes="):].strip().partition("-")
            try:
                if first:
                    start, end = int(first), min(int(last), size - 1) if last else size - 1
                else:
                    start, end = max(size - int(last), 0), size - 1
            except ValueError:
                raise HubError(400, f"Malformed Range header {requested!r}") from None
            if start >= size or start > end:
                self._send(416, b"", "application/octet-stream", {**headers, "Content-Range": f"bytes */{size}"})
                return
            status = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{end}/{size}"}
        length = end - start + 1 if size else 0
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD" or not length:
            return
        with open(path, "rb") as handle:
            handle.seek(start)
            for data in read_in_chunks(handle, length):
                self.wfile.write(data)


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending


class HubServer(ThreadingHTTPServer):
    """The HTTP server; ``storage`` holds the repositories. ``url`` is where clients point HF_ENDPOINT."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, root: str, host: str = "127.0.0.1", port: int = 0, *, user: str = "user",
                 inline_uploads: bool = False, verbose: bool = False):
        self.storage = HubStorage(root)
        self.user, self.inline_uploads, self.verbose = user, inline_uploads, verbose
        super().__init__((host, port), HubRequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def start_server(root: str, host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> HubServer:
    """Start a server in a background thread (``port=0`` picks a free port); stop it with ``.shutdown()``."""
    server = HubServer(root, host, port, **kwargs)
    thread = threading.Thread(target=server.serve_forever, name="hf-mae-hub", daemon=True)
    thread.start()
    return server


def main(argv: Sequence[str] | None = None) -> int:
    """``hf-mae hub serve --port P --root DIR``."""
    parser = argparse.ArgumentParser(prog="hf-mae hub", description="A local Hub-compatible server.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve repositories stored in --root over HTTP")
    serve.add_argument("--root", required=True, help="folder holding the repositories (created if missing)")
    serve.add_argument("--port", type=int, default=8080, help="TCP port (0 = any free port)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for the whole network)")
    serve.add_argument("--user", default="user", help="namespace of repositories created without one")
    serve.add_argument("--inline-uploads", action="store_true",
                       help="have clients send every file inside the commit (works with hf_xet clients too)")
    serve.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    server = HubServer(args.root, args.host, args.port, user=args.user, inline_uploads=args.inline_uploads,
                       verbose=args.verbose)
    print(f"hf-mae hub: serving {server.storage.root} at {server.url} (clients: export HF_ENDPOINT={server.url} "
          "HF_HUB_DISABLE_XET=1)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
