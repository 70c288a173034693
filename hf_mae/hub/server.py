"""A local Hub: the HTTP calls ``huggingface_hub`` and ``transformers`` make, served from a folder on disk.

    hf-mae hub serve --port 8080 --root /srv/hub        # then, on the clients:
    export HF_ENDPOINT=http://HOST:8080 HF_HUB_DISABLE_XET=1

For a lab without internet: push with ``model.push_to_hub("lab/model")``, ``Trainer(push_to_hub=True)`` or
``hf-mae push``, load with ``AutoModel.from_pretrained("lab/model")``. Repositories, branches, tags and files
persist in ``--root`` across restarts (see ``storage.py`` for the layout and why a push cut off midway is
never visible).

Access (see ``auth.py``): with no token created the server is open to anyone who reaches it, and so only
listens on loopback unless ``--allow-open-network`` is given. ``hf-mae hub token create USER --role write``
makes a token (clients set ``HF_TOKEN``); from then on anonymous clients only read public repositories,
private repositories answer 404 to non-members everywhere, and writes need a write token for the namespace.

Large files travel as in git LFS: the client asks ``preupload`` which files are large, posts their sha256
to the LFS ``batch`` endpoint, PUTs the bytes to the signed link it gets back (the server checks size and
sha256 as they arrive), then posts the NDJSON commit. The Xet protocol is not spoken: clients with
``hf_xet`` installed (huggingface_hub installs it) must set ``HF_HUB_DISABLE_XET=1``, or the server can be
started with ``--inline-uploads`` so that every file is sent inside the commit (streamed to disk as well).
Otherwise their pushes of large files fail with "501 Not Implemented ... xet-write-token" (hf_xet does not
show the server's message; the server's log does).

Repositories are bare git repositories (``storage.py``): ``git clone http://HOST:PORT/namespace/name`` works
through git's smart HTTP protocol (``git_http.py``), ``git lfs`` fetching large files from the LFS routes.

The HTTP stack is uvicorn with the limits of ``transport.Limits``; this module holds the Hub's routes.

Example (in Python):
    >>> server = start_server("/tmp/hub-root", port=0)   # doctest: +SKIP
    >>> server.url                                        # doctest: +SKIP
    'http://127.0.0.1:40123'
    >>> server.shutdown()                                 # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import re
import json
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import anyio
import anyio.to_thread
import yaml
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

from . import git_http
from . import validation as validate
from .auth import Auth, Identity
from .commit_stream import CommitReader, SpooledContent, read_commit
from .errors import HubError, entry_not_found, repo_not_found
from .metadata import split_front_matter, validate_card
from .storage import (
    DEFAULT_BRANCH,
    LFS_SIZE_THRESHOLD,
    HubStorage,
    StagedFile,
    decode_base64_file,
    is_binary,
    lfs_patterns_of,
    matches,
    stage_file,
    tree_oid,
)
from .transport import BodyReader, ClientGone, HubServer, Limits

_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_PLURAL = {f"{t}s": t for t in validate.REPO_TYPES}
_LFS_JSON = "application/vnd.git-lfs+json"
_DRAIN_BYTES = 1 << 20  # an error answer waits for at most this much of the body before closing
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")
_XET_MESSAGE = ("This Hub does not speak the Xet protocol: set HF_HUB_DISABLE_XET=1 on the client, or start the "
                "server with --inline-uploads (every file then travels inside the commit).")


def _split_repo(segments: list[str]) -> tuple[str, str, list[str]]:
    """``[datasets,] ns, name, rest...`` of a non-API URL -> (repo type, repo id, rest)."""
    repo_type = "model"
    if segments and segments[0] in ("datasets", "spaces") and len(segments) > 2:
        repo_type, segments = _PLURAL[segments[0]], segments[1:]
    if len(segments) < 2:
        raise HubError(404, "Not found")
    return repo_type, f"{segments[0]}/{segments[1]}", segments[2:]


def _json(status: int, value: Any, headers: dict[str, str] | None = None,
          media_type: str = "application/json") -> Response:
    return Response(json.dumps(value).encode(), status, headers=headers, media_type=media_type)


def _flag(query: dict[str, str], name: str) -> bool:
    return query.get(name, "").lower() in ("1", "true")


class HubApp:
    """The ASGI application: each request is handled by a ``Call`` in a worker thread (the store is plain
    file I/O); bodies stream in through ``BodyReader``."""

    def __init__(self, root: str, *, user: str = "user", inline_uploads: bool = False,
                 limits: Limits | None = None, verbose: bool = False):
        self.storage = HubStorage(root)
        self.auth = Auth(self.storage.root, user)
        self.user, self.inline_uploads, self.verbose = validate.namespace(user, "--user"), inline_uploads, verbose
        self.limits = limits or Limits()
        self._threads: anyio.CapacityLimiter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if self._threads is None:
            self._threads = anyio.CapacityLimiter(self.limits.max_connections)
        request = Request(scope, receive)
        call = Call(self, request)
        response = await anyio.to_thread.run_sync(call.handle, limiter=self._threads)
        await response(scope, receive, send)


class Call:
    """One request: route it, check who may do it, answer (errors become JSON with ``X-Error-Code``)."""

    def __init__(self, app: HubApp, request: Request):
        self.app, self.store, self.request = app, app.storage, request
        self.method = request.method
        self.who = Identity(None, None)
        self.body: BodyReader | None = None

    # -- plumbing ----------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host = self.request.headers.get("host", "")
        if not _HOST.fullmatch(host):  # links built from it go back to the client: nothing but a host:port
            server = self.request.scope.get("server") or ("127.0.0.1", 0)
            host = f"{server[0]}:{server[1]}"
        return f"http://{host}"

    def handle(self) -> Response:
        try:
            header_bytes = sum(len(key) + len(value) + 4 for key, value in self.request.scope["headers"])
            if header_bytes > self.app.limits.max_header_bytes:
                raise HubError(431, f"Request headers of {header_bytes} bytes are over the limit of "
                                    f"{self.app.limits.max_header_bytes}.")
            if "transfer-encoding" in self.request.headers and "content-length" in self.request.headers:
                raise HubError(400, "A request may not have both Transfer-Encoding and Content-Length.")
            self.body = BodyReader(self.request.receive, self.request.headers.get("content-length"),
                                   self.app.limits.max_body_bytes, self.app.limits.idle_timeout)
            self.who = self.app.auth.identify(self.request.headers.get("authorization"))
            raw_path = self.request.scope.get("raw_path") or self.request.scope["path"].encode()
            try:
                segments = [unquote(s, errors="strict") for s in raw_path.decode("ascii").split("?")[0].split("/")[1:]]
                query = {k: v[-1] for k, v in parse_qs(self.request.scope.get("query_string", b"").decode("ascii"),
                                                       errors="strict").items()}
            except UnicodeError:
                raise HubError(400, "The URL is not valid percent-encoded UTF-8.") from None
            return self._route(segments, query)
        except HubError as error:
            return self._error(error)
        except ClientGone:
            return Response(b"", 400, headers={"Connection": "close"})
        except Exception as error:  # an unexpected bug must still answer, and say what happened
            if self.app.verbose:
                import traceback

                traceback.print_exc()
            return self._error(HubError(500, f"Internal error: {type(error).__name__}: {error}"))

    def _error(self, error: HubError) -> Response:
        headers = {key: validate.header_value(value) for key, value in error.headers.items()}
        headers["X-Error-Message"] = validate.header_value(error.message)
        if error.code:
            headers["X-Error-Code"] = error.code
        if error.status == 401:
            headers.setdefault("WWW-Authenticate", 'Bearer realm="hf-mae hub"')
        if not self._drain():
            headers["Connection"] = "close"  # the rest of the body is not read: never taken as a next request
        return _json(error.status, {"error": error.message}, headers)

    def _drain(self) -> bool:
        """After an error, read what is left of a small body (so the client sees the answer, not a reset);
        False when the connection must close instead."""
        if self.body is None or self.body.broken:
            return False
        if self.body.complete:
            return True
        try:
            for _ in self.body.chunks():
                if self.body.received > _DRAIN_BYTES:
                    return False
        except Exception:
            return False
        return self.body.complete

    def _json_body(self) -> dict[str, Any]:
        """The body as a JSON object (or a form), 400 for anything else."""
        assert self.body is not None
        declared = self.request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.app.limits.max_json_bytes:
            raise HubError(413, f"JSON body of {declared} bytes is over the limit of {self.app.limits.max_json_bytes}.")
        body = self.body.read(self.app.limits.max_json_bytes)
        if not body:
            return {}
        content_type = self.request.headers.get("content-type", "")
        try:
            if "application/x-www-form-urlencoded" in content_type:
                return {key: values if len(values) > 1 or key == "paths" else values[0]
                        for key, values in parse_qs(body.decode("utf-8"), errors="strict").items()}
            value = json.loads(body)
        except ValueError as err:  # JSON errors and non-UTF-8 alike
            raise HubError(400, f"Request body is not valid JSON: {err}") from None
        if not isinstance(value, dict):
            raise validate.bad_request("request body", value, "a JSON object")
        return value

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.base_url}/{_URL_PREFIX[repo_type]}{repo_id}"

    # -- who may do what ----------------------------------------------------------------------------
    def _readable(self, repo_type: str, repo_id: str) -> dict[str, Any]:
        """The repository's metadata if the caller may read it; 404 otherwise (private repositories of other
        namespaces do not exist for the caller, as on the Hub)."""
        validate.repo_type(repo_type)
        validate.repo_id(repo_id)
        meta = self.store.repo_meta(repo_type, repo_id)
        if not self.who.can_read(repo_id.split("/")[0], meta["private"]):
            raise repo_not_found(repo_id)
        return meta

    def _need_write(self, owner: str) -> None:
        if not self.who.can_write(owner):
            if self.who.user is None:
                raise HubError(401, f"Writing to {owner!r} needs a write token (Authorization: Bearer; HF_TOKEN).")
            raise HubError(403, f"Token of {self.who.user!r} ({self.who.role}) may not write to namespace {owner!r}.")

    def _writable(self, repo_type: str, repo_id: str) -> dict[str, Any]:
        meta = self._readable(repo_type, repo_id)
        self._need_write(repo_id.split("/")[0])
        return meta

    # -- routing -------------------------------------------------------------------------------------
    def _route(self, segments: list[str], query: dict[str, str]) -> Response:
        method = self.method
        if segments[:1] == ["api"]:
            rest = segments[1:]
            if rest == ["repos", "create"] and method == "POST":
                return self._create_repo()
            if rest == ["repos", "delete"] and method == "DELETE":
                return self._delete_repo()
            if rest == ["validate-yaml"] and method == "POST":
                return self._validate_yaml()
            if rest == ["whoami-v2"] and method == "GET":
                return self._whoami()
            if len(rest) == 1 and rest[0] in _PLURAL and method == "GET":
                return self._list_repos(_PLURAL[rest[0]], query)
            if len(rest) >= 3 and rest[0] in _PLURAL:
                repo_type, repo_id, action = _PLURAL[rest[0]], f"{rest[1]}/{rest[2]}", rest[3:]
                validate.repo_id(repo_id)
                return self._repo_api(repo_type, repo_id, action, query)
            raise HubError(404, "Unknown API route")
        repo_type, repo_id, rest = _split_repo(segments)
        if rest in (["info", "refs"], ["git-upload-pack"], ["git-receive-pack"]):
            return self._git(repo_type, validate.repo_id(repo_id.removesuffix(".git")), rest[-1], query)
        if repo_id.endswith(".git") and rest[:3] == ["info", "lfs", "objects"]:
            repo_id = validate.repo_id(repo_id[: -len(".git")])
            return self._lfs(repo_type, repo_id, rest[3:], query)
        if rest[:1] == ["resolve"] and len(rest) >= 3 and method in ("GET", "HEAD"):
            validate.repo_id(repo_id)
            return self._resolve(repo_type, repo_id, validate.revision(rest[1]), validate.file_path("/".join(rest[2:])))
        raise HubError(404, "Not found")

    def _repo_api(self, repo_type: str, repo_id: str, action: list[str], query: dict[str, str]) -> Response:
        method = self.method
        name = action[0] if action else ""
        revision = validate.revision(action[1]) if len(action) > 1 and name not in ("branch", "tag") else DEFAULT_BRANCH
        if not action and method == "GET":
            return _json(200, self._repo_info(repo_type, repo_id, DEFAULT_BRANCH, query))
        if name == "revision" and method == "GET" and len(action) == 2:
            return _json(200, self._repo_info(repo_type, repo_id, revision, query))
        if name == "tree" and method == "GET" and len(action) >= 2:
            return self._tree(repo_type, repo_id, revision, validate.folder_path("/".join(action[2:])), query)
        if name == "paths-info" and method == "POST" and len(action) == 2:
            return self._paths_info(repo_type, repo_id, revision)
        if name == "refs" and method == "GET" and len(action) == 1:
            return self._refs(repo_type, repo_id, query)
        if name == "commits" and method == "GET" and len(action) == 2:
            return self._commits(repo_type, repo_id, revision)
        if name == "preupload" and method == "POST" and len(action) == 2:
            return self._preupload(repo_type, repo_id, revision)
        if name == "commit" and method == "POST" and len(action) == 2:
            return self._commit(repo_type, repo_id, revision, query)
        if name == "settings" and method == "PUT" and len(action) == 1:
            return self._settings(repo_type, repo_id)
        if name == "branch" and len(action) == 2 and method in ("POST", "DELETE"):
            branch = validate.ref_name(action[1], "branch")
            self._writable(repo_type, repo_id)
            if method == "DELETE":
                self.store.delete_ref(repo_type, repo_id, "heads", branch)
            else:
                body = self._json_body()
                start = body.get("startingPoint") or DEFAULT_BRANCH
                self.store.create_ref(repo_type, repo_id, "heads", branch, validate.revision(start),
                                      empty=bool(body.get("emptyBranch")))
            return _json(200, {})
        if name == "tag" and len(action) == 2 and method in ("POST", "DELETE"):
            self._writable(repo_type, repo_id)
            if method == "DELETE":
                self.store.delete_ref(repo_type, repo_id, "tags", validate.ref_name(action[1], "tag"))
            else:
                body = self._json_body()
                tag = validate.ref_name(body.get("tag"), "tag")
                self.store.create_ref(repo_type, repo_id, "tags", tag, validate.revision(action[1]))
            return _json(200, {})
        if name in ("xet-write-token", "xet-read-token"):
            self._readable(repo_type, repo_id)
            # hf_xet asks for this token itself and shows the client only "501 Not Implemented ... xet-write-token",
            # not this message: say it in the server's log too, where whoever runs the Hub will look
            sys.stderr.write(f"hf-mae hub: a client with hf_xet asked for a Xet token ({repo_id}). {_XET_MESSAGE}\n")
            raise HubError(501, _XET_MESSAGE)
        raise HubError(404, "Unknown repository API route")

    # -- accounts and repositories -------------------------------------------------------------------
    def _whoami(self) -> Response:
        if self.who.user is None:
            raise HubError(401, "Anonymous: send a token (Authorization: Bearer; HF_TOKEN) to know who you are.")
        orgs = sorted(self.app.auth.orgs_of(self.who.user))
        return _json(200, {"type": "user", "name": self.who.user, "fullname": self.who.user,
                           "orgs": [{"type": "org", "name": org} for org in orgs],
                           "auth": {"type": "access_token", "accessToken": {"role": self.who.role}}})

    def _create_repo(self) -> Response:
        body = self._json_body()
        repo_type = validate.repo_type(body.get("type") or "model")
        name = validate.namespace(body.get("name"), "repository name")
        owner = body.get("organization") or self.who.user
        if owner is None:
            raise HubError(401, "Creating a repository needs a write token (Authorization: Bearer; HF_TOKEN).")
        repo_id = validate.repo_id(f"{validate.namespace(owner, 'organization')}/{name}")
        private = body.get("private")
        if private is not None and not isinstance(private, bool):
            raise validate.bad_request("private", private, "true or false")
        self._need_write(owner)
        created = self.store.create_repo(repo_type, repo_id, private=bool(private) or body.get("visibility") == "private")
        url = self._repo_url(repo_type, repo_id)
        if not created:
            # the client's create_repo(exist_ok=True) reads the url from this 409
            return _json(409, {"error": f"You already created this {repo_type} repo", "url": url})
        return _json(200, {"url": url, "name": repo_id})

    def _delete_repo(self) -> Response:
        body = self._json_body()
        repo_type = validate.repo_type(body.get("type") or "model")
        owner = body.get("organization") or self.who.user or self.app.user
        repo_id = validate.repo_id(f"{validate.namespace(owner, 'organization')}/"
                                   f"{validate.namespace(body.get('name'), 'repository name')}")
        self._writable(repo_type, repo_id)
        self.store.delete_repo(repo_type, repo_id)
        return _json(200, {})

    def _settings(self, repo_type: str, repo_id: str) -> Response:
        self._writable(repo_type, repo_id)
        body = self._json_body()
        private = body.get("private")
        if private is not None:
            if not isinstance(private, bool):
                raise validate.bad_request("private", private, "true or false")
            self.store.set_private(repo_type, repo_id, private)
        return _json(200, {})

    def _list_repos(self, repo_type: str, query: dict[str, str]) -> Response:
        author, search = query.get("author"), query.get("search")
        answer = []
        for repo_id in self.store.list_repos(repo_type):
            if (author and repo_id.split("/")[0] != author) or (search and search not in repo_id):
                continue
            try:
                meta = self._readable(repo_type, repo_id)
            except HubError:
                continue  # private, or deleted meanwhile
            answer.append({"id": repo_id, "_id": repo_id, "private": meta["private"]})
        return _json(200, answer)

    def _repo_info(self, repo_type: str, repo_id: str, revision: str, query: dict[str, str]) -> dict[str, Any]:
        meta = self._readable(repo_type, repo_id)
        commit = self.store.commit(repo_type, repo_id, self.store.resolve(repo_type, repo_id, revision))
        blobs = _flag(query, "blobs")
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
        card = self._read_text(repo_type, repo_id, commit.files, "README.md")
        if card is not None:
            try:
                card_data = yaml.safe_load(split_front_matter(card) or "") or {}
            except yaml.YAMLError:
                card_data = {}
            if isinstance(card_data, dict):
                info["cardData"] = card_data
                info["tags"] = [str(t) for t in card_data.get("tags") or []] if isinstance(card_data.get("tags"), list) else []
                for key in ("library_name", "pipeline_tag"):
                    if isinstance(card_data.get(key), str):
                        info[key] = card_data[key]
        config = self._read_text(repo_type, repo_id, commit.files, "config.json")
        if repo_type == "model" and config is not None:
            try:
                config_data = json.loads(config)
                info["config"] = {k: config_data[k] for k in ("architectures", "model_type", "auto_map")
                                  if k in config_data}
                if "auto_map" in config_data:
                    info["tags"].append("custom_code")
            except (ValueError, TypeError):
                pass
        return info

    def _read_text(self, repo_type: str, repo_id: str, files: dict, path: str) -> str | None:
        entry = files.get(path)
        if entry is None or entry.size > 1 << 20:
            return None
        return self.store.file_path(entry, repo_type, repo_id).read_bytes().decode("utf-8", "replace")

    def _tree(self, repo_type: str, repo_id: str, revision: str, folder: str, query: dict[str, str]) -> Response:
        self._readable(repo_type, repo_id)
        commit = self.store.commit(repo_type, repo_id, self.store.resolve(repo_type, repo_id, revision))
        recursive = _flag(query, "recursive")
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
        return _json(200, list(entries.values()))

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> Response:
        self._readable(repo_type, repo_id)
        body = self._json_body()
        paths = body.get("paths") or []
        paths = [paths] if isinstance(paths, str) else paths
        if not isinstance(paths, list) or len(paths) > 10_000:
            raise validate.bad_request("paths", paths, "a list of at most 10000 paths")
        commit = self.store.commit(repo_type, repo_id, self.store.resolve(repo_type, repo_id, revision))
        answer = []
        for path in paths:
            path = validate.folder_path(path, "paths[]")
            if path in commit.files:
                answer.append(commit.files[path].api_json(path))
            elif any(p.startswith(path + "/") for p in commit.files):
                answer.append({"type": "directory", "oid": tree_oid(commit.files, path), "size": 0, "path": path})
        return _json(200, answer)

    def _refs(self, repo_type: str, repo_id: str, query: dict[str, str]) -> Response:
        self._readable(repo_type, repo_id)
        refs = self.store.refs(repo_type, repo_id)

        def listing(kind: str, prefix: str) -> list[dict[str, str]]:
            return [{"name": name, "ref": f"{prefix}{name}", "targetCommit": oid} for name, oid in sorted(refs[kind].items())]

        answer = {"branches": listing("heads", "refs/heads/"), "tags": listing("tags", "refs/tags/"), "converts": []}
        if _flag(query, "include_prs"):
            answer["pullRequests"] = listing("pulls", "refs/pr/")
        return _json(200, answer)

    def _commits(self, repo_type: str, repo_id: str, revision: str) -> Response:
        self._readable(repo_type, repo_id)
        history = self.store.history(repo_type, repo_id, revision)
        return _json(200, [{"id": c.oid, "title": c.title, "message": c.message, "date": c.date,
                            "authors": [{"user": c.author}]} for c in history])

    # -- uploads ----------------------------------------------------------------------------------------
    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> Response:
        self._writable(repo_type, repo_id)
        body = self._json_body()
        files = body.get("files")
        if not isinstance(files, list) or not all(isinstance(item, dict) for item in files):
            raise validate.bad_request("files", files, "a list of {path, sample, size}")
        commit = self.store.commit(repo_type, repo_id, self.store.resolve(repo_type, repo_id, revision))
        lfs_patterns = lfs_patterns_of(self._read_text(repo_type, repo_id, commit.files, ".gitattributes") or "")
        gitignore = body.get("gitIgnore")
        if not isinstance(gitignore, str):
            gitignore = self._read_text(repo_type, repo_id, commit.files, ".gitignore") or ""
        ignore_patterns = [line.strip() for line in gitignore.splitlines()
                           if line.strip() and not line.strip().startswith("#")]
        answer = []
        for item in files:
            path = validate.file_path(item.get("path"), "files[].path")
            size = validate.size(item.get("size", 0), "files[].size")
            try:
                sample = base64.b64decode(item.get("sample") or "", validate=True)
            except (ValueError, TypeError):
                raise validate.bad_request("files[].sample", item.get("sample"), "base64 text") from None
            large = size >= LFS_SIZE_THRESHOLD or is_binary(sample) or any(matches(path, p) for p in lfs_patterns)
            mode = "lfs" if large and size > 0 and not self.app.inline_uploads else "regular"
            existing = commit.files.get(path)
            oid = (existing.lfs_sha256 or existing.oid) if existing is not None else None
            answer.append({"path": path, "uploadMode": mode, "oid": oid,
                           "shouldIgnore": any(matches(path, p) for p in ignore_patterns)})
        return _json(200, {"files": answer, "commitOid": commit.oid})

    def _lfs(self, repo_type: str, repo_id: str, action: list[str], query: dict[str, str]) -> Response:
        auth = self.app.auth
        lfs_url = f"{self._repo_url(repo_type, repo_id)}.git/info/lfs/objects"
        signature = query.get("sig", "")
        if action == ["batch"] and self.method == "POST":
            body = self._json_body()
            operation = body.get("operation")
            if operation not in ("upload", "download"):
                raise validate.bad_request("LFS batch operation", operation, "'upload' or 'download'")
            self._writable(repo_type, repo_id) if operation == "upload" else self._readable(repo_type, repo_id)
            items = body.get("objects") or []
            if not isinstance(items, list) or len(items) > 10_000:
                raise validate.bad_request("LFS batch objects", items, "a list of at most 10000 {oid, size}")
            objects = [self._lfs_batch_item(repo_type, repo_id, operation, item, lfs_url) for item in items]
            return _json(200, {"transfer": "basic", "objects": objects}, media_type=_LFS_JSON)
        if action == ["verify"] and self.method == "POST":
            if not auth.check_signature(signature, "verify", repo_type, repo_id):
                self._writable(repo_type, repo_id)
            body = self._json_body()
            oid = validate.lfs_oid(body.get("oid"))
            if not self.store.repo_has_lfs(repo_type, repo_id, oid, validate.size(body.get("size"))):
                raise HubError(404, f"LFS object {oid} ({body.get('size')} bytes) is not stored.")
            return _json(200, {}, media_type=_LFS_JSON)
        if len(action) == 1 and self.method == "PUT":
            oid = validate.lfs_oid(action[0])
            size = validate.size(query.get("size"), "size", self.app.limits.max_file_bytes)
            if not auth.check_signature(signature, "upload", repo_type, repo_id, oid, str(size)):
                self._writable(repo_type, repo_id)
            else:
                self.store.repo_meta(repo_type, repo_id)
            assert self.body is not None
            self.store.receive_lfs(oid, size, self.body.chunks())
            self.store.grant_lfs(repo_type, repo_id, oid)
            return _json(200, {}, media_type=_LFS_JSON)
        if len(action) == 1 and self.method in ("GET", "HEAD"):
            oid = validate.lfs_oid(action[0])
            if not auth.check_signature(signature, "download", repo_type, repo_id, oid):
                self._readable(repo_type, repo_id)
            if not self.store.repo_has_lfs(repo_type, repo_id, oid):
                raise HubError(404, "Object does not exist")
            return FileResponse(self.store.lfs_path(oid), headers={"ETag": f'"{oid}"'},
                                media_type="application/octet-stream")
        raise HubError(404, "Unknown LFS route")

    def _lfs_batch_item(self, repo_type: str, repo_id: str, operation: str, item: Any, lfs_url: str) -> dict[str, Any]:
        if not isinstance(item, dict):
            return {"error": {"code": 422, "message": "expected {oid, size}"}}
        oid, size = item.get("oid"), item.get("size")
        answer: dict[str, Any] = {"oid": oid if isinstance(oid, str) else None, "size": size, "authenticated": True}
        try:
            validate.lfs_oid(oid)
            validate.size(size, "size", self.app.limits.max_file_bytes)
        except HubError as error:
            answer["error"] = {"code": 422 if error.status == 400 else error.status, "message": error.message}
            return answer
        auth = self.app.auth
        if operation == "download":
            if self.store.repo_has_lfs(repo_type, repo_id, oid, size):
                href = f"{lfs_url}/{oid}?sig={auth.sign('download', repo_type, repo_id, oid)}"
                answer["actions"] = {"download": {"href": href, "header": {}}}
            else:
                answer["error"] = {"code": 404, "message": "Object does not exist"}
        elif not self.store.repo_has_lfs(repo_type, repo_id, oid, size):
            # stored objects of this repository get no actions: nothing to send. An object another repository
            # holds must still be uploaded here: owning the bytes is the only way to reach them.
            upload_sig = auth.sign("upload", repo_type, repo_id, oid, str(size))
            answer["actions"] = {
                "upload": {"href": f"{lfs_url}/{oid}?size={size}&sig={upload_sig}", "header": {}},
                "verify": {"href": f"{lfs_url}/verify?sig={auth.sign('verify', repo_type, repo_id)}", "header": {}},
            }
        return answer

    def _commit(self, repo_type: str, repo_id: str, revision: str, query: dict[str, str]) -> Response:
        self._writable(repo_type, repo_id)
        limits = self.app.limits
        reader = CommitReader(self.store.tmp, max_line_bytes=limits.max_json_bytes, max_file_bytes=limits.max_file_bytes)
        staged: dict[int, StagedFile] = {}
        header: dict[str, Any] | None = None
        operations: list[tuple[str, dict[str, Any]]] = []
        assert self.body is not None
        try:
            for item in read_commit(self.body.chunks(), reader):
                key, value = item["key"], item["value"]
                if key == "header":
                    header = value
                    continue
                if key == "file":
                    staged[len(operations)] = self._stage_inline(value)
                operations.append((key, value))
            if header is None:
                raise HubError(400, "Commit body must start with a `header` line (summary, description).")
            oid, pr_number = self.store.apply_commit(repo_type, repo_id, revision, header, operations,
                                                     create_pr=_flag(query, "create_pr"), staged=staged,
                                                     author=self.who.user or self.app.user)
        finally:
            reader.cleanup()
            for item in staged.values():
                item.temp.unlink(missing_ok=True)
        repo_url = self._repo_url(repo_type, repo_id)
        return _json(200, {"success": True, "commitOid": oid, "commitUrl": f"{repo_url}/commit/{oid}",
                           "pullRequestUrl": f"{repo_url}/discussions/{pr_number}" if pr_number else None,
                           "hookOutput": ""})

    def _stage_inline(self, value: Any) -> StagedFile:
        """The content of a ``file`` line, in ``tmp/`` until the commit is accepted."""
        if not isinstance(value, dict):
            raise validate.bad_request("file operation", value, "a JSON object {path, content, encoding}")
        validate.file_path(value.get("path"), "path of a file operation")
        content = value.get("content")
        if isinstance(content, SpooledContent):
            if value.get("encoding", "base64") != "base64":
                raise validate.bad_request("encoding", value.get("encoding"), "'base64'")
            with open(content.path, "rb") as handle:
                staged = stage_file(self.store, iter(lambda: handle.read(1 << 20), b""))
            content.path.unlink(missing_ok=True)
            return staged
        if not isinstance(content, str):
            raise validate.bad_request("content of a file operation", content, "base64 text")
        return stage_file(self.store, [decode_base64_file(value)])

    def _validate_yaml(self) -> Response:
        body = self._json_body()
        content = body.get("content")
        if not isinstance(content, str):
            raise HubError(400, "validate-yaml needs a JSON body {\"content\": README text, \"repoType\": ...}.")
        repo_type = body.get("repoType") or "model"
        errors, warnings = validate_card(content, validate.repo_type(repo_type))
        answer = {"errors": [{"message": m} for m in errors], "warnings": [{"message": m} for m in warnings]}
        return _json(400 if errors else 200, answer)

    # -- git smart HTTP: clone and fetch (pushes go through the Hub API) ---------------------------------------
    def _git(self, repo_type: str, repo_id: str, route: str, query: dict[str, str]) -> Response:
        service = query.get("service") if route == "refs" else route
        if service != "git-upload-pack":
            raise HubError(403, "This server serves git clone and fetch only; push with huggingface_hub.")
        try:
            self._readable(repo_type, repo_id)
        except HubError as error:
            if error.status == 404 and self.who.user is None and self.app.auth.enabled:
                # git only sends credentials after a 401 asking for them (user name, token as password)
                raise HubError(401, "Repository not found, or it needs credentials (user name and token).",
                               headers={"WWW-Authenticate": 'Basic realm="hf-mae hub"'}) from None
            raise
        if route == "refs" and self.method == "GET":
            return Response(git_http.advertise_refs(self.store.repo_dir(repo_type, repo_id)),
                            media_type="application/x-git-upload-pack-advertisement",
                            headers={"Cache-Control": "no-cache"})
        if route == "git-upload-pack" and self.method == "POST":
            if self.request.headers.get("content-type") != "application/x-git-upload-pack-request":
                raise validate.bad_request("Content-Type", self.request.headers.get("content-type"),
                                           "application/x-git-upload-pack-request")
            assert self.body is not None
            body = git_http.decoded_body(self.body.read(self.app.limits.max_json_bytes),
                                         self.request.headers.get("content-encoding"), self.app.limits.max_json_bytes)
            pack = git_http.upload_pack(self.store.repo_dir(repo_type, repo_id), body, self.store.temp_path())
            return FileResponse(pack, media_type="application/x-git-upload-pack-result",
                                headers={"Cache-Control": "no-cache"}, background=BackgroundTask(pack.unlink, True))
        raise HubError(404, "Unknown git route")

    # -- downloads ---------------------------------------------------------------------------------------
    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> Response:
        self._readable(repo_type, repo_id)
        oid = self.store.resolve(repo_type, repo_id, revision)
        entry = self.store.commit(repo_type, repo_id, oid).files.get(path)
        if entry is None:
            raise entry_not_found(path, revision, oid)
        headers = {"X-Repo-Commit": oid, "ETag": f'"{entry.oid}"',
                   "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1], safe='')}"}
        if entry.lfs_sha256:
            headers.update({"X-Linked-Etag": f'"{entry.lfs_sha256}"', "X-Linked-Size": str(entry.size)})
        return FileResponse(self.store.file_path(entry, repo_type, repo_id), headers=headers, media_type="application/octet-stream")


# -- serving -------------------------------------------------------------------------------------------------
def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def start_server(root: str, host: str = "127.0.0.1", port: int = 0, *, user: str = "user",
                 inline_uploads: bool = False, verbose: bool = False, limits: Limits | None = None,
                 allow_open_network: bool = False) -> HubServer:
    """Start a server in a background thread (``port=0`` picks a free port); stop it with ``.shutdown()``."""
    return make_server(root, host, port, user=user, inline_uploads=inline_uploads, verbose=verbose,
                       limits=limits, allow_open_network=allow_open_network).start()


def make_server(root: str, host: str = "127.0.0.1", port: int = 0, *, user: str = "user",
                inline_uploads: bool = False, verbose: bool = False, limits: Limits | None = None,
                allow_open_network: bool = False) -> HubServer:
    """The server, not started yet. Refuses (``ValueError``) to listen beyond loopback with no token
    configured, unless ``allow_open_network``."""
    limits = limits or Limits()
    app = HubApp(root, user=user, inline_uploads=inline_uploads, limits=limits, verbose=verbose)
    if not _is_loopback(host) and not app.auth.enabled and not allow_open_network:
        raise ValueError(f"Refusing to serve {host} with no token configured: anyone reaching it could write and "
                         f"delete every repository. Create one with `hf-mae hub token create USER --role write "
                         f"--root {app.storage.root}`, or pass --allow-open-network to serve it open anyway.")
    return HubServer(app, host, port, limits, verbose=verbose)


def _serve(args: argparse.Namespace) -> int:
    limits = Limits(max_body_bytes=args.max_body_mb << 20, max_file_bytes=args.max_file_mb << 20,
                    header_timeout=args.header_timeout, idle_timeout=args.idle_timeout,
                    max_connections=args.max_connections)
    server = make_server(args.root, args.host, args.port, user=args.user, inline_uploads=args.inline_uploads,
                         verbose=args.verbose, limits=limits, allow_open_network=args.allow_open_network)
    access = "tokens required for writes" if server.app.auth.enabled else "open: no token configured"
    print(f"hf-mae hub: serving {server.app.storage.root} at {server.url} ({access}; clients: export "
          f"HF_ENDPOINT={server.url} HF_HUB_DISABLE_XET=1)", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _token(args: argparse.Namespace) -> int:
    auth = Auth(HubStorage(args.root).root)
    if args.token_command == "create":
        token = auth.create_token(args.user, args.role)
        print(token)
        print(f"(a {args.role} token for {args.user}; shown once, stored hashed in {auth.folder}/tokens.json; "
              "clients: export HF_TOKEN=...)", file=sys.stderr)
    elif args.token_command == "list":
        for info in auth.list_tokens():
            print(f"{info['id']}  {info['user']:20} {info['role']:5}  {info['created']}")
    elif not auth.revoke_token(args.id):
        print(f"hf-mae hub token revoke: no token whose id starts with {args.id!r} (see `hf-mae hub token list`)",
              file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``hf-mae hub serve --port P --root DIR`` and ``hf-mae hub token create USER --role read|write``."""
    parser = argparse.ArgumentParser(prog="hf-mae hub", description="A local Hub-compatible server.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve repositories stored in --root over HTTP")
    serve.add_argument("--root", required=True, help="folder holding the repositories (created if missing)")
    serve.add_argument("--port", type=int, default=8080, help="TCP port (0 = any free port)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (0.0.0.0 for the whole network: needs a token, see `token`)")
    serve.add_argument("--user", default="user", help="namespace of repositories created without one, no token set")
    serve.add_argument("--inline-uploads", action="store_true",
                       help="have clients send every file inside the commit (works with hf_xet clients too)")
    serve.add_argument("--allow-open-network", action="store_true",
                       help="serve a non-loopback address with no token configured (anyone may write)")
    defaults = Limits()
    serve.add_argument("--max-body-mb", type=int, default=defaults.max_body_bytes >> 20, help="largest request body")
    serve.add_argument("--max-file-mb", type=int, default=defaults.max_file_bytes >> 20, help="largest file uploaded")
    serve.add_argument("--header-timeout", type=float, default=defaults.header_timeout,
                       help="seconds a client has to send a request's headers")
    serve.add_argument("--idle-timeout", type=float, default=defaults.idle_timeout,
                       help="seconds an idle connection, or a stalled request body, is kept")
    serve.add_argument("--max-connections", type=int, default=defaults.max_connections,
                       help="connections served at once (beyond: 503)")
    serve.add_argument("--verbose", action="store_true", help="log every request")
    token = commands.add_parser("token", help="create, list or revoke access tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="create a token for USER and print it (once)")
    create.add_argument("user")
    create.add_argument("--role", choices=("read", "write"), required=True)
    create.add_argument("--root", required=True)
    listing = token_commands.add_parser("list", help="the tokens' ids, users and roles")
    listing.add_argument("--root", required=True)
    revoke = token_commands.add_parser("revoke", help="revoke a token by the id `list` shows")
    revoke.add_argument("id")
    revoke.add_argument("--root", required=True)
    args = parser.parse_args(argv)
    try:
        return _serve(args) if args.command == "serve" else _token(args)
    except (ValueError, OSError, HubError) as error:  # user errors: one line, no traceback
        print(f"hf-mae hub {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
