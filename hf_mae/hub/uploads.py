"""The upload routes of the local Hub: ``preupload``, the LFS batch/upload/verify/download routes, and the
NDJSON commit, as ``huggingface_hub`` and ``git lfs`` call them. A mixin of ``routes.Call``: it relies on the
request plumbing and the permission checks defined there.

Large files travel as in git LFS: the client asks ``preupload`` which files are large, posts their sha256 to
the LFS ``batch`` route, PUTs the bytes to the signed link it gets back (size and sha256 checked as they
arrive), then posts the commit. Inline files (``--inline-uploads``) arrive inside the commit and are decoded
to disk as they come (``commit_stream.py``).
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from . import validation as validate
from .commit_stream import CommitReader, SpooledContent, read_commit
from .errors import HubError
from .storage import (LFS_SIZE_THRESHOLD, HubStorage, StagedFile, decode_base64_file, is_binary, lfs_patterns_of,
                      matches, stage_file)
from .transport import BodyReader

if TYPE_CHECKING:
    from .server import HubApp

LFS_JSON = "application/vnd.git-lfs+json"


def json_response(status: int, value: Any, headers: dict[str, str] | None = None,
                  media_type: str = "application/json") -> Response:
    return Response(json.dumps(value).encode(), status, headers=headers, media_type=media_type)


def flag(query: dict[str, str], name: str) -> bool:
    """A boolean query parameter (``1`` or ``true``)."""
    return query.get(name, "").lower() in ("1", "true")


class UploadRoutes:
    """Preupload, LFS and commit routes, mixed into ``routes.Call``, whose ``_json_body``, ``_readable``,
    ``_writable``, ``_repo_url`` and ``_read_text`` they use."""

    app: HubApp
    store: HubStorage
    request: Request
    method: str
    body: BodyReader | None

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
        return json_response(200, {"files": answer, "commitOid": commit.oid})

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
            return json_response(200, {"transfer": "basic", "objects": objects}, media_type=LFS_JSON)
        if action == ["verify"] and self.method == "POST":
            if not auth.check_signature(signature, "verify", repo_type, repo_id):
                self._writable(repo_type, repo_id)
            body = self._json_body()
            oid = validate.lfs_oid(body.get("oid"))
            if not self.store.repo_has_lfs(repo_type, repo_id, oid, validate.size(body.get("size"))):
                raise HubError(404, f"LFS object {oid} ({body.get('size')} bytes) is not stored.")
            return json_response(200, {}, media_type=LFS_JSON)
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
            return json_response(200, {}, media_type=LFS_JSON)
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
                                                     create_pr=flag(query, "create_pr"), staged=staged,
                                                     author=self.who.user or self.app.user)
        finally:
            reader.cleanup()
            for item in staged.values():
                item.temp.unlink(missing_ok=True)
        repo_url = self._repo_url(repo_type, repo_id)
        return json_response(200, {"success": True, "commitOid": oid, "commitUrl": f"{repo_url}/commit/{oid}",
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
            return StagedFile(content.path, content.size, content.sha256)  # already in tmp/: no copy
        if not isinstance(content, str):
            raise validate.bad_request("content of a file operation", content, "base64 text")
        return stage_file(self.store, [decode_base64_file(value)])
