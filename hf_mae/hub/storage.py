"""On-disk storage of the local Hub: repositories, commits, branches and tags, file contents.

Layout under ``root``::

    objects/blobs/ab/<git blob oid>      contents of regular (inlined) files, named by their git blob oid
    objects/lfs/ab/cd/<sha256>           large files, named by their sha256 (checked on upload)
    repos/<type>s/<namespace>/<name>/
        repo.json                        id, type, private, creation date
        commits/<commit oid>.json        parents, message, date and the full file map {path: entry}
        refs.json                        {"heads": {branch: oid}, "tags": {tag: oid}, "pulls": {num: oid}}
        lfs/<sha256>                     empty: this repository uploaded or references that LFS object (no
                                         other repository can read or commit it by oid)
    auth/                                tokens (hashed), organisations, link-signing key (see auth.py)
    tmp/                                 uploads in progress and commits being checked (emptied at start)

A commit becomes visible in one step: its contents and its commit file are written first, then
``refs.json`` is replaced atomically (``os.replace``) under a per-repository lock. A server killed at any
moment leaves either the old or the new ref, never a commit that points to missing data. Every file is
written to ``tmp/`` and renamed into place, so no reader ever sees half a file. Inline file contents stay in
``tmp/`` until their commit is accepted; a refused commit leaves nothing behind, and what a crash leaves
(temporary files, a commit file whose ref never moved) is removed when the server starts.

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
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from . import validation as validate
from .errors import HubError, bad_request, entry_not_found, repo_not_found, revision_not_found
from .validation import REPO_TYPES

DEFAULT_BRANCH = "main"
# A file at least this large is stored as LFS whatever its type (the Hub uses the same 10 MB threshold).
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
# Files whose names match these patterns are LFS (written to .gitattributes when a repository is created).
LFS_PATTERNS = (
    "*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle", "*.joblib", "*.npy", "*.npz",
    "*.h5", "*.onnx", "*.msgpack", "*.arrow", "*.parquet", "*.zip", "*.gz", "*.tar", "*.tgz", "*.xz",
    "*.zst", "*.7z", "*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff", "*.mat", "*tfevents*",
)
_OID = re.compile(r"^[0-9a-f]{40}$")


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


@dataclass
class StagedFile:
    """The content of an inline (``file``) commit operation, already on disk in ``tmp/``: moved into the
    store only when the commit is accepted, deleted otherwise."""

    temp: Path
    oid: str
    size: int


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
        self.collect_garbage()

    # -- files written atomically ------------------------------------------------------------------
    def temp_path(self) -> Path:
        return self.tmp / f"{uuid.uuid4().hex}.part"

    def _write_atomic(self, target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = self.temp_path()
        try:
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)

    def _write_json(self, target: Path, value: Any) -> None:
        self._write_atomic(target, json.dumps(value, indent=1, sort_keys=True).encode())

    @contextlib.contextmanager
    def _locked(self, repo_dir: Path, *, create: bool = False) -> Iterator[None]:
        """One writer per repository at a time (threads and processes alike). A repository deleted while we
        waited for the lock is not found (404) instead of being written into half-removed."""
        while True:
            if create:
                try:
                    repo_dir.mkdir(parents=True, exist_ok=True)
                except FileExistsError:
                    continue  # it existed, then a delete moved it away before mkdir could check: again
            try:
                lock = open(repo_dir / ".lock", "a")
            except (FileNotFoundError, NotADirectoryError):
                if create:
                    continue  # deleted between mkdir and open: make it again
                raise HubError(404, "Repository not found (deleted meanwhile)", "RepoNotFound") from None
            with lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    current = os.stat(repo_dir / ".lock")
                except FileNotFoundError:
                    current = None
                if current is None or current.st_ino != os.fstat(lock.fileno()).st_ino:
                    fcntl.flock(lock, fcntl.LOCK_UN)  # the folder was moved away (deleted) while we waited
                    if create:
                        continue
                    raise HubError(404, "Repository not found (deleted meanwhile)", "RepoNotFound")
                try:
                    yield
                    return
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    # -- contents --------------------------------------------------------------------------------
    def blob_path(self, oid: str) -> Path:
        validate.commit_oid(oid, "blob oid")  # same shape: 40 hex digits
        return self.root / "objects" / "blobs" / oid[:2] / oid

    def lfs_path(self, sha256: str) -> Path:
        validate.lfs_oid(sha256)
        return self.root / "objects" / "lfs" / sha256[:2] / sha256[2:4] / sha256

    def put_blob(self, data: bytes) -> str:
        oid = git_blob_oid(data)
        if not self.blob_path(oid).exists():
            self._write_atomic(self.blob_path(oid), data)
        return oid

    def lfs_size(self, sha256: str) -> int | None:
        """Size of a stored LFS object, None if it is not stored."""
        try:
            return self.lfs_path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def has_lfs(self, sha256: str, size: int | None = None) -> bool:
        stored = self.lfs_size(sha256)
        return stored is not None and (size is None or stored == size)

    def receive_lfs(self, sha256: str, size: int, chunks: Iterable[bytes]) -> None:
        """Store an uploaded large file if, and only if, it has exactly ``size`` bytes hashing to ``sha256``;
        the size and hash are checked as the bytes arrive (one byte too many stops the upload)."""
        validate.lfs_oid(sha256)
        temp = self.temp_path()
        digest, received = hashlib.sha256(), 0
        try:
            with open(temp, "wb") as handle:
                for chunk in chunks:
                    received += len(chunk)
                    if received > size:
                        raise HubError(400, f"LFS upload of {sha256} is longer than the {size} bytes announced.")
                    digest.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            self.finish_lfs(temp, sha256, size, digest.hexdigest(), received)
        finally:
            temp.unlink(missing_ok=True)

    def finish_lfs(self, temp: Path, sha256: str, size: int, got_sha256: str, received: int) -> None:
        """Move a fully received upload into the store after its size and sha256 were checked."""
        if received != size:
            raise HubError(400, f"LFS upload of {sha256} has {received} bytes, expected {size}.")
        if got_sha256 != sha256:
            raise HubError(400, f"LFS upload rejected: content sha256 is {got_sha256}, expected {sha256}.")
        self.lfs_path(sha256).parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, self.lfs_path(sha256))

    def file_path(self, entry: FileEntry) -> Path:
        """Where the content of a committed file lives."""
        return self.lfs_path(entry.lfs_sha256) if entry.lfs_sha256 else self.blob_path(entry.oid)

    # -- LFS objects belong to the repositories that uploaded or reference them ---------------------------
    def _lfs_marker(self, repo_dir: Path, sha256: str) -> Path:
        return repo_dir / "lfs" / validate.lfs_oid(sha256)

    def grant_lfs(self, repo_type: str, repo_id: str, sha256: str) -> None:
        """Record that ``repo_id`` holds (uploaded or references) LFS object ``sha256``."""
        marker = self._lfs_marker(self._existing(repo_type, repo_id), sha256)
        try:
            marker.parent.mkdir(exist_ok=True)
            marker.touch()
        except (FileNotFoundError, FileExistsError):
            raise repo_not_found(repo_id) from None  # deleted meanwhile

    def repo_has_lfs(self, repo_type: str, repo_id: str, sha256: str, size: int | None = None) -> bool:
        """True if the object is stored and ``repo_id`` may use it: no reading other repositories' objects
        by oid, no committing an object one never uploaded."""
        return self._lfs_marker(self._existing(repo_type, repo_id), sha256).is_file() and self.has_lfs(sha256, size)

    # -- repositories -------------------------------------------------------------------------------
    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        validate.repo_type(repo_type)
        validate.repo_id(repo_id)
        return self.root / "repos" / f"{repo_type}s" / repo_id

    def _existing(self, repo_type: str, repo_id: str) -> Path:
        path = self.repo_dir(repo_type, repo_id)
        if not (path / "repo.json").is_file():
            raise repo_not_found(repo_id)
        return path

    def repo_meta(self, repo_type: str, repo_id: str) -> dict[str, Any]:
        try:
            return json.loads((self._existing(repo_type, repo_id) / "repo.json").read_text())
        except FileNotFoundError:
            raise repo_not_found(repo_id) from None  # deleted between the check and the read

    def list_repos(self, repo_type: str) -> list[str]:
        base = self.root / "repos" / f"{validate.repo_type(repo_type)}s"
        return sorted(f"{p.parent.parent.name}/{p.parent.name}" for p in base.glob("*/*/repo.json"))

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False) -> bool:
        """Create a repository whose ``main`` holds a .gitattributes; False if it already exists."""
        path = self.repo_dir(repo_type, repo_id)
        with self._locked(path, create=True):
            if (path / "repo.json").is_file():
                return False
            initial = self._new_commit([], "initial commit", "", {})
            attributes = gitattributes_text().encode()
            initial.files[".gitattributes"] = FileEntry(self.put_blob(attributes), len(attributes))
            initial.oid = self._commit_oid(initial)
            self._save_commit(path, initial)
            self._write_json(path / "refs.json", {"heads": {DEFAULT_BRANCH: initial.oid}, "tags": {}, "pulls": {}})
            (path / "lfs").mkdir(exist_ok=True)
            # repo.json last: until it exists the repository does not exist for readers
            self._write_json(path / "repo.json", {"id": repo_id, "type": repo_type, "private": bool(private),
                                                  "createdAt": initial.date})
        return True

    def set_private(self, repo_type: str, repo_id: str, private: bool) -> None:
        path = self._existing(repo_type, repo_id)
        with self._locked(path):
            meta = self.repo_meta(repo_type, repo_id)
            meta["private"] = bool(private)
            self._write_json(path / "repo.json", meta)

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        """Remove a repository: it vanishes in one step (moved out under its lock), then is erased."""
        path = self._existing(repo_type, repo_id)
        trash = self.tmp / f"deleted-{uuid.uuid4().hex}"
        with self._locked(path):
            if not (path / "repo.json").is_file():
                raise repo_not_found(repo_id)
            os.rename(path, trash)
        remove_tree(trash)

    # -- refs and commits -----------------------------------------------------------------------------
    def refs(self, repo_type: str, repo_id: str) -> dict[str, dict[str, str]]:
        try:
            return json.loads((self._existing(repo_type, repo_id) / "refs.json").read_text())
        except FileNotFoundError:
            raise repo_not_found(repo_id) from None

    def resolve(self, repo_type: str, repo_id: str, revision: str) -> str:
        """Commit oid of a branch, tag, ``refs/heads/..``, ``refs/tags/..``, ``refs/pr/N`` or full commit oid."""
        validate.revision(revision)
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
        return self.repo_dir(repo_type, repo_id) / "commits" / f"{validate.commit_oid(oid)}.json"

    def commit(self, repo_type: str, repo_id: str, oid: str) -> Commit:
        try:
            data = json.loads(self._commit_file(repo_type, repo_id, oid).read_text())
        except FileNotFoundError:
            raise revision_not_found(repo_id, oid) from None  # the repository was deleted meanwhile
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
        validate.ref_name(name, "branch" if kind == "heads" else "tag")
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
        validate.ref_name(name, "branch" if kind == "heads" else "tag")
        if kind == "heads" and name == DEFAULT_BRANCH:
            raise HubError(403, f"Cannot delete the default branch {DEFAULT_BRANCH!r}.")
        with self._locked(path):
            refs = self.refs(repo_type, repo_id)
            if name not in refs[kind]:
                raise revision_not_found(repo_id, name)
            del refs[kind][name]
            self._write_json(path / "refs.json", refs)

    def apply_commit(self, repo_type: str, repo_id: str, revision: str, header: dict[str, Any],
                     operations: list[tuple[str, dict[str, Any]]], *, create_pr: bool = False,
                     staged: dict[int, StagedFile] | None = None) -> tuple[str, int | None]:
        """Apply NDJSON commit operations on top of ``revision``; returns (commit oid, pull request number).

        ``operations`` are (key, value) pairs: ``file`` (its content in ``staged[index]``, written to ``tmp/``
        by the caller), ``lfsFile`` (``oid`` = sha256, ``size``; without a size, as ``CommitOperationCopy``
        sends it, the stored object's), ``deletedFile``, ``deletedFolder``. Everything is checked before
        anything is written: an error leaves the repository and the store exactly as they were.
        """
        path = self._existing(repo_type, repo_id)
        staged = staged or {}
        if not isinstance(header, dict):
            raise bad_request("commit header", header, "a JSON object {summary, description, parentCommit?}")
        validate.revision(revision)
        with self._locked(path):
            refs = self.refs(repo_type, repo_id)
            parent = self.resolve(repo_type, repo_id, revision)
            expected = header.get("parentCommit")
            if expected and expected != parent:
                raise HubError(412, f"A commit has happened since {expected}: {revision} is now at {parent}. "
                                    "Pull the latest changes and try again.")
            if not create_pr and not revision.startswith("refs/pr/"):
                branch = revision[len("refs/heads/"):] if revision.startswith("refs/heads/") else revision
                if branch not in refs["heads"]:
                    raise HubError(400, f"Can only commit to a branch or a pull request, and {revision!r} is not a "
                                        f"branch of {repo_id}.")
            elif revision.startswith("refs/pr/") and revision[len("refs/pr/"):] not in refs["pulls"]:
                raise revision_not_found(repo_id, revision)
            files = dict(self.commit(repo_type, repo_id, parent).files)
            lfs_used: list[str] = []
            for index, (key, value) in enumerate(operations):
                if not isinstance(value, dict):
                    raise bad_request(f"commit operation {key!r}", value, "a JSON object with a `path`")
                target = validate.file_path(value.get("path"), f"path of commit operation {key!r}")
                if key == "file":
                    if index not in staged:
                        raise HubError(400, f"File {target!r}: content missing.")
                    files[target] = FileEntry(staged[index].oid, staged[index].size)
                elif key == "lfsFile":
                    sha256 = validate.lfs_oid(value.get("oid"), f"LFS oid of {target!r}")
                    if value.get("algo", "sha256") != "sha256":
                        raise bad_request(f"algo of {target!r}", value.get("algo"), "'sha256'")
                    size = value.get("size")
                    if size is not None:
                        validate.size(size, f"size of {target!r}")
                    if not self.repo_has_lfs(repo_type, repo_id, sha256, size):
                        raise HubError(422, f"Your push was rejected: LFS file {target!r} (sha256 {sha256}, "
                                            f"{size if size is not None else 'unknown'} bytes) was never uploaded "
                                            "to this repository, or its upload was incomplete.")
                    size = self.lfs_size(sha256) if size is None else size  # a copy: the stored object's size
                    pointer = lfs_pointer(sha256, size)
                    files[target] = FileEntry(git_blob_oid(pointer), size, sha256, len(pointer))
                    lfs_used.append(sha256)
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
                    raise bad_request("commit operation", key, "file, lfsFile, deletedFile or deletedFolder")
            commit = self._new_commit([parent], str(header.get("summary") or "").strip(),
                                      str(header.get("description") or ""), files)
            if not commit.title:
                raise HubError(400, "The commit summary (message) must not be empty.")
            commit.oid = self._commit_oid(commit)
            # accepted: from here on only writes, contents first, the ref last
            for item in staged.values():
                if self.blob_path(item.oid).exists():
                    item.temp.unlink(missing_ok=True)
                else:
                    self.blob_path(item.oid).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(item.temp, self.blob_path(item.oid))
            self._save_commit(path, commit)
            pr_number = None
            if create_pr:
                pr_number = max((int(n) for n in refs["pulls"]), default=0) + 1
                refs["pulls"][str(pr_number)] = commit.oid
            elif revision.startswith("refs/pr/"):
                refs["pulls"][revision[len("refs/pr/"):]] = commit.oid
            else:
                branch = revision[len("refs/heads/"):] if revision.startswith("refs/heads/") else revision
                refs["heads"][branch] = commit.oid
            self._write_json(path / "refs.json", refs)  # the one step that makes the commit visible
        return commit.oid, pr_number

    def verify(self) -> list[str]:
        """Check the whole store: every ref reaches commits whose files' contents are stored with the
        recorded size. Returns the problems found (an empty list for a sound store).

        Example:
            >>> import tempfile
            >>> store = HubStorage(tempfile.mkdtemp())
            >>> _ = store.create_repo("model", "lab/tiny")
            >>> store.verify()
            []
        """
        problems = []
        for repo_type in REPO_TYPES:
            for repo_id in self.list_repos(repo_type):
                pending = [oid for kind in self.refs(repo_type, repo_id).values() for oid in kind.values()]
                seen: set[str] = set()
                while pending:
                    oid = pending.pop()
                    if oid in seen:
                        continue
                    seen.add(oid)
                    try:
                        commit = self.commit(repo_type, repo_id, oid)
                    except HubError:
                        problems.append(f"{repo_type} {repo_id}: commit {oid} is missing")
                        continue
                    pending.extend(commit.parents)
                    for path, entry in commit.files.items():
                        content = self.file_path(entry)
                        if not content.is_file() or content.stat().st_size != entry.size:
                            problems.append(f"{repo_type} {repo_id}@{oid}: {path} is missing or has the wrong size")
        return problems

    # -- start-up: what a crash or a refused request left behind --------------------------------------
    def collect_garbage(self) -> dict[str, int]:
        """Remove leftovers: temporary files, deleted repositories not yet erased, commit files no ref reaches
        (a commit cut off before its ref moved), and blobs no commit references. Returns counts per kind.
        Run at start, before any request: it must not race a commit in progress."""
        removed = {"temporary": 0, "commits": 0, "blobs": 0}
        for leftover in self.tmp.iterdir():
            if leftover.is_dir():
                remove_tree(leftover)
            else:
                leftover.unlink(missing_ok=True)
            removed["temporary"] += 1
        used_blobs: set[str] = set()
        for repo_type in REPO_TYPES:
            for repo_id in self.list_repos(repo_type):
                path = self.repo_dir(repo_type, repo_id)
                refs = self.refs(repo_type, repo_id)
                pending = [oid for kind in refs.values() for oid in kind.values()]
                reachable: set[str] = set()
                while pending:
                    oid = pending.pop()
                    if oid in reachable:
                        continue
                    reachable.add(oid)
                    commit = self.commit(repo_type, repo_id, oid)
                    pending.extend(commit.parents)
                    used_blobs.update(e.oid for e in commit.files.values() if not e.lfs_sha256)
                    for entry in commit.files.values():  # stores written before per-repository LFS grants
                        if entry.lfs_sha256:
                            (path / "lfs").mkdir(exist_ok=True)
                            self._lfs_marker(path, entry.lfs_sha256).touch()
                for commit_file in (path / "commits").glob("*.json"):
                    if commit_file.stem not in reachable:
                        commit_file.unlink(missing_ok=True)
                        removed["commits"] += 1
        for blob in (self.root / "objects" / "blobs").glob("*/*"):
            if blob.name not in used_blobs:
                blob.unlink(missing_ok=True)
                removed["blobs"] += 1
        return removed


def remove_tree(folder: Path) -> None:
    """Delete a folder and everything in it, by absolute paths (what a security audit can follow), bottom up;
    what is already gone is skipped."""
    for current, folders, files in os.walk(folder, topdown=False):
        for name in files:
            Path(current, name).unlink(missing_ok=True)
        for name in folders:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                os.rmdir(os.path.join(current, name))
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(folder)


def stage_file(store: HubStorage, chunks: Iterable[bytes]) -> StagedFile:
    """Write a file's content to ``tmp/`` and compute its git blob oid (a second pass: git hashes the size
    first, and the size is only known at the end)."""
    temp, size = store.temp_path(), 0
    try:
        with open(temp, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                size += len(chunk)
        digest = hashlib.sha1(b"blob %d\x00" % size)
        with open(temp, "rb") as handle:
            while data := handle.read(1 << 20):
                digest.update(data)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return StagedFile(temp, digest.hexdigest(), size)


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
