"""The routes of the local Hub: one ``Call`` per request, run in a worker thread. It reads the request,
checks who may do what (``auth.py``: private repositories are 404 to non-members, writes need a write token
for the namespace), validates every identifier at the boundary (``validation.py``) and answers JSON, files,
or git's smart HTTP; errors become JSON with ``X-Error-Code``. Uploads are in ``uploads.py``.
"""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote

import yaml
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from . import git_http
from . import validation as validate
from .auth import Identity
from dulwich.errors import NotGitRepository

from .errors import HubError, entry_not_found, repo_not_found
from .metadata import split_front_matter, validate_card
from .storage import DEFAULT_BRANCH, tree_oid
from .transport import BodyReader, ClientGone
from .uploads import UploadRoutes, flag, json_response

if TYPE_CHECKING:
    from .server import HubApp

_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_PLURAL = {f"{t}s": t for t in validate.REPO_TYPES}
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


class Call(UploadRoutes):
    """One request: route it, check who may do it, answer (errors become JSON with ``X-Error-Code``)."""

    def __init__(self, app: HubApp, request: Request):
        self.app, self.store, self.request = app, app.storage, request
        self.method = request.method
        self.who = Identity(None, None)
        self.body: BodyReader | None = None
        self.target: tuple[str, str] | None = None   # (repo_type, repo_id) the request names, once routed

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
        except (KeyError, OSError, NotGitRepository) as error:
            if self.target is not None and not self.app.storage.repo_exists(*self.target):
                # the repository was deleted while this request read it: objects, trees or refs vanished midway
                return self._error(repo_not_found(self.target[1]))
            return self._internal(error)
        except Exception as error:
            return self._internal(error)

    def _internal(self, error: Exception) -> Response:
        """An unexpected bug must still answer, and say what happened."""
        if self.app.verbose:
            import traceback

            traceback.print_exception(error)
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
        return json_response(error.status, {"error": error.message}, headers)

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
                self.target = (repo_type, validate.repo_id(repo_id))
                return self._repo_api(repo_type, repo_id, action, query)
            raise HubError(404, "Unknown API route")
        repo_type, repo_id, rest = _split_repo(segments)
        if rest in (["info", "refs"], ["git-upload-pack"], ["git-receive-pack"]):
            self.target = (repo_type, validate.repo_id(repo_id.removesuffix(".git")))
            return self._git(*self.target, rest[-1], query)
        if repo_id.endswith(".git") and rest[:3] == ["info", "lfs", "objects"]:
            self.target = (repo_type, validate.repo_id(repo_id[: -len(".git")]))
            return self._lfs(*self.target, rest[3:], query)
        if rest[:1] == ["resolve"] and len(rest) >= 3 and method in ("GET", "HEAD"):
            self.target = (repo_type, validate.repo_id(repo_id))
            return self._resolve(repo_type, repo_id, validate.revision(rest[1]), validate.file_path("/".join(rest[2:])))
        raise HubError(404, "Not found")

    def _repo_api(self, repo_type: str, repo_id: str, action: list[str], query: dict[str, str]) -> Response:
        method = self.method
        name = action[0] if action else ""
        revision = validate.revision(action[1]) if len(action) > 1 and name not in ("branch", "tag") else DEFAULT_BRANCH
        if not action and method == "GET":
            return json_response(200, self._repo_info(repo_type, repo_id, DEFAULT_BRANCH, query))
        if name == "revision" and method == "GET" and len(action) == 2:
            return json_response(200, self._repo_info(repo_type, repo_id, revision, query))
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
            return json_response(200, {})
        if name == "tag" and len(action) == 2 and method in ("POST", "DELETE"):
            self._writable(repo_type, repo_id)
            if method == "DELETE":
                self.store.delete_ref(repo_type, repo_id, "tags", validate.ref_name(action[1], "tag"))
            else:
                body = self._json_body()
                tag = validate.ref_name(body.get("tag"), "tag")
                self.store.create_ref(repo_type, repo_id, "tags", tag, validate.revision(action[1]))
            return json_response(200, {})
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
        return json_response(200, {"type": "user", "name": self.who.user, "fullname": self.who.user,
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
            return json_response(409, {"error": f"You already created this {repo_type} repo", "url": url})
        return json_response(200, {"url": url, "name": repo_id})

    def _delete_repo(self) -> Response:
        body = self._json_body()
        repo_type = validate.repo_type(body.get("type") or "model")
        owner = body.get("organization") or self.who.user or self.app.user
        repo_id = validate.repo_id(f"{validate.namespace(owner, 'organization')}/"
                                   f"{validate.namespace(body.get('name'), 'repository name')}")
        self._writable(repo_type, repo_id)
        self.store.delete_repo(repo_type, repo_id)
        return json_response(200, {})

    def _settings(self, repo_type: str, repo_id: str) -> Response:
        self._writable(repo_type, repo_id)
        body = self._json_body()
        private = body.get("private")
        if private is not None:
            if not isinstance(private, bool):
                raise validate.bad_request("private", private, "true or false")
            self.store.set_private(repo_type, repo_id, private)
        return json_response(200, {})

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
        return json_response(200, answer)

    def _repo_info(self, repo_type: str, repo_id: str, revision: str, query: dict[str, str]) -> dict[str, Any]:
        meta = self._readable(repo_type, repo_id)
        commit = self.store.commit(repo_type, repo_id, self.store.resolve(repo_type, repo_id, revision))
        blobs = flag(query, "blobs")
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
        recursive = flag(query, "recursive")
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
        return json_response(200, list(entries.values()))

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
        return json_response(200, answer)

    def _refs(self, repo_type: str, repo_id: str, query: dict[str, str]) -> Response:
        self._readable(repo_type, repo_id)
        refs = self.store.refs(repo_type, repo_id)

        def listing(kind: str, prefix: str) -> list[dict[str, str]]:
            return [{"name": name, "ref": f"{prefix}{name}", "targetCommit": oid} for name, oid in sorted(refs[kind].items())]

        answer = {"branches": listing("heads", "refs/heads/"), "tags": listing("tags", "refs/tags/"), "converts": []}
        if flag(query, "include_prs"):
            answer["pullRequests"] = listing("pulls", "refs/pr/")
        return json_response(200, answer)

    def _commits(self, repo_type: str, repo_id: str, revision: str) -> Response:
        self._readable(repo_type, repo_id)
        history = self.store.history(repo_type, repo_id, revision)
        return json_response(200, [{"id": c.oid, "title": c.title, "message": c.message, "date": c.date,
                            "authors": [{"user": c.author}]} for c in history])

    def _validate_yaml(self) -> Response:
        body = self._json_body()
        content = body.get("content")
        if not isinstance(content, str):
            raise HubError(400, "validate-yaml needs a JSON body {\"content\": README text, \"repoType\": ...}.")
        repo_type = body.get("repoType") or "model"
        errors, warnings = validate_card(content, validate.repo_type(repo_type))
        answer = {"errors": [{"message": m} for m in errors], "warnings": [{"message": m} for m in warnings]}
        return json_response(400 if errors else 200, answer)

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
