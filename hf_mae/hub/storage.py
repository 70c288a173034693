"""On-disk storage of the local Hub: repositories, commits, branches and tags, file contents.

Layout under ``root``::

    objects/blobs/ab/<git blob oid>      contents of regular (inlined) files, named by their git blob oid
    objects/lfs/ab/cd/<sha256>           large files, named by their sha256 (checked on upload)
    repos/<type>s/<namespace>/<name>/
        repo.json                        id, type, private, creation date
        commits/<commit oid>.json        parents, message, date and the full file map {path: entry}
        refs.json                        {"heads": {branch: oid}, "tags": {tag: oid}, "pulls": {num: oid}}
    tmp/                                 uploads in progress (emptied at start)

A commit becomes visible in one step: its contents and its commit file are written first, then
``refs.json`` is replaced atomically (``os.replace``) under a per-repository lock. A server killed at any
moment leaves either the old or the new ref, never a commit that points to missing data. Every file is
written to ``tmp/`` and renamed into place, so no reader ever sees half a file.

Object ids follow git: a regular file's oid is ``sha1("blob <size>\\0" + content)``; a large file is an
LFS pointer (its oid is the blob oid of the pointer text) with the content's sha256; folders and commits get
git tree and commit hashes. The client compares these oids to skip unchanged files.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

REPO_TYPES = ("model", "dataset", "space")
DEFAULT_BRANCH = "main"
# A file at least this large is stored as LFS whatever its type (the Hub uses the same 10 MB threshold).
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
# Files whose names match these patterns are LFS (written to .gitattributes when a repository is created).
LFS_PATTERNS = (
    "*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle", "*.joblib", "*.npy", "*.npz",
    "*.h5", "*.onnx", "*.msgpack", "*.arrow", "*.parquet", "*.zip", "*.gz", "*.tar", "*.tgz", "*.xz",
    "*.zst", "*.7z", "*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff", "*.mat", "*tfevents*",
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_OID = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class HubError(Exception):
    """An error answered to the client: HTTP status, the ``X-Error-Code`` the client dispatches on, a message."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def repo_not_found(repo_id: str) -> HubError:
    return HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")


def revision_not_found(repo_id: str, revision: str) -> HubError:
    return HubError(404, f"Invalid rev id: {revision} (no branch, tag or commit of that name in {repo_id})",
                    "RevisionNotFound")


def entry_not_found(path: str, revision: str, commit: str | None = None) -> HubError:
    # X-Repo-Commit lets the client remember that the file does not exist at this commit
    return HubError(404, f"Entry not found: {path!r} does not exist at revision {revision}", "EntryNotFound",
                    {"X-Repo-Commit": commit} if commit else None)


def check_repo_id(repo_id: str) -> None:
    """``namespace/name`` with each part 1-96 characters of letters, digits, ``-``, ``_``, ``.``."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_NAME.match(p) and ".." not in p and "--" not in p and not p.endswith((".", "-"))
                                  for p in parts):
        raise HubError(400, f"Invalid repository id {repo_id!r}: expected 'namespace/name', each part 1-96 "
                            "characters among letters, digits, '-', '_' and '.', not starting with '-' or '.', "
                            "without '--' or '..'.")


def check_path(path: str) -> str:
    """A file path inside a repository: relative, no empty, '.' or '..' parts, no .git folder."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or parts[0] == ".git" \
            or "\x00" in path:
        raise HubError(400, f"Invalid path in repository: {path!r}")
    return path


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def gitattributes_text() -> str:
    return "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS)


def lfs_patterns_of(gitattributes: str) -> list[str]:
    """The patterns marked ``filter=lfs`` in a .gitattributes text."""
    patterns = []
    for line in gitattributes.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#") and "filter=lfs" in fields[1:]:
            patterns.append(fields[0])
    return patterns


def matches(path: str, pattern: str) -> bool:
    """gitattributes/gitignore matching, simplified: a pattern without '/' matches the file name anywhere,
    a pattern with '/' matches the whole path; a trailing '/' matches everything below a folder."""
    from fnmatch import fnmatchcase

    if pattern.endswith("/"):
        folder = pattern.strip("/")
        return any(fnmatchcase(part, folder) for part in path.split("/")[:-1])
    if "/" in pattern.strip("/"):
        return fnmatchcase(path, pattern.lstrip("/")) or fnmatchcase(path, pattern.lstrip("/") + "/*")
    return fnmatchcase(path.rsplit("/", 1)[-1], pattern)


def is_binary(sample: bytes) -> bool:
    """Binary if the sample holds a NUL byte or is not UTF-8 (a cut multi-byte character at the end is fine)."""
    if b"\x00" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start < len(sample) - 3
    return False


def utc_now() -> str:
    """The Hub's date format: ``2024-01-31T12:00:00.000Z``."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


@dataclass
class FileEntry:
    """One file of a commit: git oid, size, and for LFS files the content's sha256 and the pointer size."""

    oid: str
    size: int
    lfs_sha256: str | None = None
    pointer_size: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"oid": self.oid, "size": self.size, "lfs_sha256": self.lfs_sha256, "pointer_size": self.pointer_size}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileEntry:
        return cls(data["oid"], data["size"], data.get("lfs_sha256"), data.get("pointer_size"))

    def api_json(self, path: str) -> dict[str, Any]:
        """The tree/paths-info answer for this file."""
        data: dict[str, Any] = {"type": "file", "oid": self.oid, "size": self.size, "path": path}
        if self.lfs_sha256 is not None:
            data["lfs"] = {"oid": self.lfs_sha256, "size": self.size, "pointerSize": self.pointer_size}
        return data


@dataclass
class Commit:
    oid: str
    parents: list[str]
    title: str
    message: str
    date: str
    author: str
    files: dict[str, FileEntry]


def tree_oid(files: dict[str, FileEntry], prefix: str = "") -> str:
    """The git tree hash of the folder ``prefix`` (``""`` = root) of a file map."""
    entries: dict[str, tuple[bytes, str]] = {}
    for path in files:
        if prefix and not path.startswith(prefix + "/"):
            continue
        rest = path[len(prefix) + 1:] if prefix else path
        head, _, tail = rest.partition("/")
        if tail:
            if head not in entries:
                entries[head] = (b"40000", tree_oid(files, f"{prefix}/{head}" if prefix else head))
        else:
            entries[head] = (b"100644", files[path].oid)
    # git orders entries by name, folders as if their name ended in '/'
    ordered = sorted(entries.items(), key=lambda item: item[0] + ("/" if item[1][0] == b"40000" else ""))
    body = b"".join(mode + b" " + name.encode() + b"\x00" + bytes.fromhex(oid) for name, (mode, oid) in ordered)
    return hashlib.sha1(b"tree %d\x00" % len(body) + body).hexdigest()


class HubStorage:
    """Repositories stored under ``root``; every method is safe to call from several threads and processes.

    Example:
        >>> import tempfile
        >>> store = HubStorage(tempfile.mkdtemp())
        >>> store.create_repo("model", "lab/tiny")
        True
        >>> store.resolve("model", "lab/tiny", "main") == store.refs("model", "lab/tiny")["heads"]["main"]
        True
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.tmp = self.root / "tmp"
        for folder in (self.tmp, self.root / "objects" / "blobs", self.root / "objects" / "lfs", self.root / "repos"):
            folder.mkdir(parents=True, exist_ok=True)
        # Uploads cut off by a crash or a stop are never renamed into place: drop them.
        for leftover in self.tmp.iterdir():
            if leftover.is_file():
                leftover.unlink(missing_ok=True)

    # -- files written atomically ------------------------------------------------------------------
    def temp_path(self) -> Path:
        return self.tmp / f"{uuid.uuid4().hex}.part"

    def _write_atomic(self, target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = self.temp_path()
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)

    def _write_json(self, target: Path, value: Any) -> None:
        self._write_atomic(target, json.dumps(value, indent=1, sort_keys=True).encode())

    @contextlib.contextmanager
    def _locked(self, repo_dir: Path) -> Iterator[None]:
        """One writer per repository at a time (threads and processes alike)."""
        with open(repo_dir / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- contents --------------------------------------------------------------------------------
    def blob_path(self, oid: str) -> Path:
        return self.root / "objects" / "blobs" / oid[:2] / oid

    def lfs_path(self, sha256: str) -> Path:
        return self.root / "objects" / "lfs" / sha256[:2] / sha256[2:4] / sha256

    def put_blob(self, data: bytes) -> str:
        oid = git_blob_oid(data)
        if not self.blob_path(oid).exists():
            self._write_atomic(self.blob_path(oid), data)
        return oid

    def has_lfs(self, sha256: str, size: int | None = None) -> bool:
        path = self.lfs_path(sha256)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def receive_lfs(self, sha256: str, size: int, chunks: Iterable[bytes]) -> None:
        """Store an uploaded large file if, and only if, it has exactly ``size`` bytes hashing to ``sha256``."""
        if not _SHA256.match(sha256):
            raise HubError(400, f"Invalid LFS oid {sha256!r}: expected 64 lowercase hex digits (sha256).")
        temp = self.temp_path()
        digest, received = hashlib.sha256(), 0
        try:
            with open(temp, "wb") as handle:
                for chunk in chunks:
                    digest.update(chunk)
                    handle.write(chunk)
                    received += len(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            if received != size:
                raise HubError(400, f"LFS upload of {sha256} has {received} bytes, expected {size}.")
            if digest.hexdigest() != sha256:
                raise HubError(400, f"LFS upload rejected: content sha256 is {digest.hexdigest()}, expected {sha256}.")
            self.lfs_path(sha256).parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, self.lfs_path(sha256))
        finally:
            temp.unlink(missing_ok=True)

    def file_path(self, entry: FileEntry) -> Path:
        """Where the content of a committed file lives."""
        return self.lfs_path(entry.lfs_sha256) if entry.lfs_sha256 else self.blob_path(entry.oid)

    # -- repositories -------------------------------------------------------------------------------
    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type {repo_type!r}: expected one of {REPO_TYPES}.")
        check_repo_id(repo_id)
        return self.root / "repos" / f"{repo_type}s" / repo_id

    def _existing(self, repo_type: str, repo_id: str) -> Path:
        path = self.repo_dir(repo_type, repo_id)
        if not (path / "repo.json").is_file():
            raise repo_not_found(repo_id)
        return path

    def repo_meta(self, repo_type: str, repo_id: str) -> dict[str, Any]:
        return json.loads((self._existing(repo_type, repo_id) / "repo.json").read_text())

    def list_repos(self, repo_type: str) -> list[str]:
        base = self.root / "repos" / f"{repo_type}s"
        return sorted(f"{p.parent.parent.name}/{p.parent.name}" for p in base.glob("*/*/repo.json"))

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False) -> bool:
        """Create a repository whose ``main`` holds a .gitattributes; False if it already exists."""
        path = self.repo_dir(repo_type, repo_id)
        path.mkdir(parents=True, exist_ok=True)
        with self._locked(path):
            if (path / "repo.json").is_file():
                return False
            initial = self._new_commit([], "initial commit", "", {})
            attributes = gitattributes_text().encode()
            initial.files[".gitattributes"] = FileEntry(self.put_blob(attributes), len(attributes))
            initial.oid = self._commit_oid(initial)
            self._save_commit(path, initial)
            self._write_json(path / "refs.json", {"heads": {DEFAULT_BRANCH: initial.oid}, "tags": {}, "pulls": {}})
            # repo.json last: until it exists the repository does not exist for readers
            self._write_json(path / "repo.json", {"id": repo_id, "type": repo_type, "private": bool(private),
                                                  "createdAt": initial.date})
        return True

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        path = self._existing(repo_type, repo_id)
        with self._locked(path):
            (path / "repo.json").unlink()  # invisible from here on
        shutil.rmtree(path, ignore_errors=True)

    # -- refs and commits -----------------------------------------------------------------------------
    def refs(self, repo_type: str, repo_id: str) -> dict[str, dict[str, str]]:
        return json.loads((self._existing(repo_type, repo_id) / "refs.json").read_text())

    def resolve(self, repo_type: str, repo_id: str, revision: str) -> str:
        """Commit oid of a branch, tag, ``refs/heads/..``, ``refs/tags/..``, ``refs/pr/N`` or full commit oid."""
        refs = self.refs(repo_type, repo_id)
        for prefix, kind in (("refs/heads/", "heads"), ("refs/tags/", "tags"), ("refs/pr/", "pulls")):
            if revision.startswith(prefix) and revision[len(prefix):] in refs[kind]:
                return refs[kind][revision[len(prefix):]]
        if revision in refs["heads"]:
            return refs["heads"][revision]
        if revision in refs["tags"]:
            return refs["tags"][revision]
        if _OID.match(revision) and self._commit_file(repo_type, repo_id, revision).is_file():
            return revision
        raise revision_not_found(repo_id, revision)

    def _commit_file(self, repo_type: str, repo_id: str, oid: str) -> Path:
        return self.repo_dir(repo_type, repo_id) / "commits" / f"{oid}.json"

    def commit(self, repo_type: str, repo_id: str, oid: str) -> Commit:
        data = json.loads(self._commit_file(repo_type, repo_id, oid).read_text())
        files = {path: FileEntry.from_json(entry) for path, entry in data.pop("files").items()}
        return Commit(files=files, **data)

    def history(self, repo_type: str, repo_id: str, revision: str) -> list[Commit]:
        """Commits reachable from ``revision``, newest first (first parents only)."""
        oid: str | None = self.resolve(repo_type, repo_id, revision)
        commits = []
        while oid:
            commit = self.commit(repo_type, repo_id, oid)
            commits.append(commit)
            oid = commit.parents[0] if commit.parents else None
        return commits

    @staticmethod
    def _new_commit(parents: list[str], title: str, message: str, files: dict[str, FileEntry]) -> Commit:
        return Commit("", parents, title, message, utc_now(), "local", dict(files))

    @staticmethod
    def _commit_oid(commit: Commit) -> str:
        lines = [f"tree {tree_oid(commit.files)}"] + [f"parent {p}" for p in commit.parents]
        lines += [f"author {commit.author} {commit.date}", "", commit.title, "", commit.message]
        body = "\n".join(lines).encode()
        return hashlib.sha1(b"commit %d\x00" % len(body) + body).hexdigest()

    def _save_commit(self, repo_dir: Path, commit: Commit) -> None:
        data = {"oid": commit.oid, "parents": commit.parents, "title": commit.title, "message": commit.message,
                "date": commit.date, "author": commit.author,
                "files": {path: entry.to_json() for path, entry in sorted(commit.files.items())}}
        self._write_json(repo_dir / "commits" / f"{commit.oid}.json", data)

    def create_ref(self, repo_type: str, repo_id: str, kind: str, name: str, start: str, *,
                   empty: bool = False) -> str:
        """Create a branch (``kind="heads"``) or a tag (``"tags"``) at revision ``start``; 409 if it exists."""
        path = self._existing(repo_type, repo_id)
        if not name or name.startswith(("/", "refs/")) or ".." in name or name.endswith("/") \
                or any(c in name for c in " ~^:?*[\\\x00"):
            raise HubError(400, f"Invalid {'branch' if kind == 'heads' else 'tag'} name {name!r}.")
        with self._locked(path):
            refs = self.refs(repo_type, repo_id)
            if name in refs[kind]:
                label = "Branch" if kind == "heads" else "Tag"
                raise HubError(409, f"{label} {name!r} already exists in {repo_id} (Reference already exists).")
            if empty:
                commit = self._new_commit([], f"Create empty branch {name}", "", {})
                commit.oid = self._commit_oid(commit)
                self._save_commit(path, commit)
                oid = commit.oid
            else:
                oid = self.resolve(repo_type, repo_id, start)
            refs[kind][name] = oid
            self._write_json(path / "refs.json", refs)
        return oid

    def delete_ref(self, repo_type: str, repo_id: str, kind: str, name: str) -> None:
        path = self._existing(repo_type, repo_id)
        if kind == "heads" and name == DEFAULT_BRANCH:
            raise HubError(403, f"Cannot delete the default branch {DEFAULT_BRANCH!r}.")
        with self._locked(path):
            refs = self.refs(repo_type, repo_id)
            if name not in refs[kind]:
                raise revision_not_found(repo_id, name)
            del refs[kind][name]
            self._write_json(path / "refs.json", refs)

    def apply_commit(self, repo_type: str, repo_id: str, revision: str, header: dict[str, Any],
                     operations: list[tuple[str, dict[str, Any]]], *, create_pr: bool = False) -> tuple[str, int | None]:
        """Apply NDJSON commit operations on top of ``revision``; returns (commit oid, pull request number).

        ``operations`` are (key, value) pairs: ``file`` whose content is already stored (value has ``oid`` and
        ``size``), ``lfsFile`` (``oid`` = sha256, ``size``), ``deletedFile``, ``deletedFolder``. Everything is
        checked before the ref moves: an error leaves the repository exactly as it was.
        """
        path = self._existing(repo_type, repo_id)
        with self._locked(path):
            refs = self.refs(repo_type, repo_id)
            parent = self.resolve(repo_type, repo_id, revision)
            expected = header.get("parentCommit")
            if expected and expected != parent:
                raise HubError(412, f"A commit has happened since {expected}: {revision} is now at {parent}. "
                                    "Pull the latest changes and try again.")
            files = dict(self.commit(repo_type, repo_id, parent).files)
            for key, value in operations:
                target = check_path(str(value.get("path", "")))
                if key == "file":
                    files[target] = FileEntry(value["oid"], value["size"])
                elif key == "lfsFile":
                    sha256, size = value.get("oid", ""), value.get("size")
                    if value.get("algo", "sha256") != "sha256" or not _SHA256.match(str(sha256)):
                        raise HubError(400, f"lfsFile {target!r}: expected a sha256 oid, got {sha256!r}.")
                    if not self.has_lfs(sha256, size):
                        raise HubError(422, f"Your push was rejected: LFS file {target!r} (sha256 {sha256}, "
                                            f"{size} bytes) was never uploaded, or its upload was incomplete.")
                    pointer = lfs_pointer(sha256, size)
                    files[target] = FileEntry(git_blob_oid(pointer), size, sha256, len(pointer))
                elif key == "deletedFile":
                    if target not in files:
                        raise HubError(404, f"A file with this name doesn't exist: {target!r}", "EntryNotFound")
                    del files[target]
                elif key == "deletedFolder":
                    folder = target.rstrip("/") + "/"
                    doomed = [p for p in files if p.startswith(folder)]
                    if not doomed:
                        raise HubError(404, f"A folder with this name doesn't exist: {target!r}", "EntryNotFound")
                    for p in doomed:
                        del files[p]
                else:
                    raise HubError(400, f"Unknown commit operation {key!r}.")
            commit = self._new_commit([parent], str(header.get("summary") or "").strip(),
                                      str(header.get("description") or ""), files)
            if not commit.title:
                raise HubError(400, "The commit summary (message) must not be empty.")
            commit.oid = self._commit_oid(commit)
            self._save_commit(path, commit)
            pr_number = None
            if create_pr:
                pr_number = max((int(n) for n in refs["pulls"]), default=0) + 1
                refs["pulls"][str(pr_number)] = commit.oid
            elif revision.startswith("refs/pr/"):
                refs["pulls"][revision[len("refs/pr/"):]] = commit.oid
            else:
                branch = revision[len("refs/heads/"):] if revision.startswith("refs/heads/") else revision
                if branch not in refs["heads"]:
                    raise HubError(400, f"Can only commit to a branch or a pull request, and {revision!r} is not a "
                                        f"branch of {repo_id}.")
                refs["heads"][branch] = commit.oid
            self._write_json(path / "refs.json", refs)  # the one step that makes the commit visible
        return commit.oid, pr_number


def decode_base64_file(value: dict[str, Any]) -> bytes:
    """Content of an NDJSON ``file`` operation."""
    if value.get("encoding", "base64") != "base64":
        raise HubError(400, f"Unsupported file encoding {value.get('encoding')!r}: expected base64.")
    try:
        return base64.b64decode(value.get("content", ""), validate=True)
    except ValueError as err:
        raise HubError(400, f"File {value.get('path')!r}: invalid base64 content ({err}).") from None


def read_in_chunks(stream: BinaryIO, size: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    remaining = size
    while remaining > 0:
        data = stream.read(min(chunk, remaining))
        if not data:
            return
        remaining -= len(data)
        yield data
