"""On-disk storage of the local Hub: each repository a bare git repository, large files in git LFS.

Layout under ``root``::

    repos/<type>s/<namespace>/<name>.git/   a bare git repository (git clone, git lfs and mirrors read it)
        hf-mae.json                      id, type, private, creation date (written last: the repo exists)
        lfs/objects/ab/cd/<sha256>       the LFS objects this repository uploaded or references, where
                                         git-lfs keeps them (hard links into objects/lfs: stored once)
    objects/lfs/ab/cd/<sha256>           every LFS object, named by its sha256 (checked on upload)
    objects/cache/ab/<blob oid>          git blobs written out for downloads (rebuilt as needed)
    auth/                                tokens (hashed), organisations, link-signing key (see auth.py)
    tmp/                                 uploads in progress and commits being checked (emptied at start)

Commits, trees and blobs are git's own objects (through dulwich), so commit ids are git's; a large, binary or
.gitattributes-matched file is committed as a git LFS pointer file. A commit becomes visible in one step: its
objects are written first, then its ref moves (compare-and-swap) under a per-repository lock; a server killed
at any moment leaves the old or the new ref, never a commit missing data. Inline file contents stay in
``tmp/`` until their commit is accepted; what a crash leaves (temporary files, git objects no ref reaches) is
removed when the server starts. Stores of the older JSON layout are converted at start (see migrate.py).

The module runs past 700 lines because ``HubStorage`` is one invariant: the lock, the compare-and-swap of
refs, the LFS links and the garbage collection all reason about the same on-disk layout, and reading them side
by side is how that layout is checked. The git-file helpers (gitfiles.py) and the conversion of old stores
(migrate.py) live apart.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dulwich.errors import NotGitRepository
from dulwich.gc import prune_unreachable_objects
from dulwich.index import commit_tree
from dulwich.object_store import iter_tree_contents
from dulwich.objects import Blob
from dulwich.objects import Commit as GitCommit
from dulwich.repo import Repo

from . import validation as validate
from .errors import HubError, bad_request, repo_not_found, revision_not_found
from .gitfiles import (LFS_PATTERNS, LFS_SIZE_THRESHOLD, META_FILE, gitattributes_text, lfs_pointer,
                       parse_lfs_pointer, remove_tree)
from .validation import REPO_TYPES

DEFAULT_BRANCH = "main"
_REF_KINDS = {"heads": b"refs/heads", "tags": b"refs/tags", "pulls": b"refs/pr"}
_OID = re.compile(r"^[0-9a-f]{40}$")


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def _hub_date(timestamp: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(timestamp))


def _wants_lfs(path: str, item: StagedFile, patterns: list[str]) -> bool:
    """What git-lfs (and the Hub) would store as LFS: large, binary, or matched by .gitattributes."""
    if item.size >= LFS_SIZE_THRESHOLD or any(matches(path, p) for p in patterns):
        return item.size > 0
    with open(item.temp, "rb") as handle:
        return is_binary(handle.read(512))


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
    store only when the commit is accepted, deleted otherwise. ``sha256`` was computed as it was written;
    the git blob ``oid`` is computed when first asked for (an LFS file never needs it)."""

    temp: Path
    size: int
    sha256: str
    _oid: str | None = None

    @property
    def oid(self) -> str:
        """The git blob oid: ``sha1("blob <size>\\0" + content)``, a second pass over the file."""
        if self._oid is None:
            digest = hashlib.sha1(b"blob %d\x00" % self.size)
            with open(self.temp, "rb") as handle:
                while data := handle.read(1 << 20):
                    digest.update(data)
            self._oid = digest.hexdigest()
        return self._oid


class HubStorage:
    """Repositories stored under ``root`` as bare git repositories; safe to use from several threads and
    processes (one writer per repository at a time, through a lock file).

    Example:
        >>> import tempfile
        >>> store = HubStorage(tempfile.mkdtemp())
        >>> store.create_repo("model", "lab/tiny")
        True
        >>> store.resolve("model", "lab/tiny", "main") == store.refs("model", "lab/tiny")["heads"]["main"]
        True
        >>> sorted(store.commit("model", "lab/tiny", store.resolve("model", "lab/tiny", "main")).files)
        ['.gitattributes']
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.tmp = self.root / "tmp"
        for folder in (self.tmp, self.root / "objects" / "lfs", self.root / "objects" / "cache", self.root / "repos"):
            folder.mkdir(parents=True, exist_ok=True)
        self._files_cache: dict[tuple[str, str], dict[str, FileEntry]] = {}
        self._cache_lock = threading.Lock()
        from .migrate import migrate_json_store  # old stores (JSON commit files) become git repositories

        migrate_json_store(self)
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

    @contextlib.contextmanager
    def _locked(self, repo_dir: Path, *, create: bool = False) -> Iterator[None]:
        """One writer per repository at a time (threads and processes alike). A repository deleted while we
        waited for the lock is not found (404) instead of being written into half-removed."""
        lock_path = repo_dir / "hf-mae.lock"
        while True:
            if create:
                try:
                    repo_dir.mkdir(parents=True, exist_ok=True)
                except FileExistsError:
                    continue  # it existed, then a delete moved it away before mkdir could check: again
            try:
                lock = open(lock_path, "a")
            except (FileNotFoundError, NotADirectoryError):
                if create:
                    continue  # deleted between mkdir and open: make it again
                raise HubError(404, "Repository not found (deleted meanwhile)", "RepoNotFound") from None
            with lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    current = os.stat(lock_path)
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

    # -- LFS objects ------------------------------------------------------------------------------------
    def lfs_path(self, sha256: str) -> Path:
        validate.lfs_oid(sha256)
        return self.root / "objects" / "lfs" / sha256[:2] / sha256[2:4] / sha256

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
            self._finish_lfs(temp, sha256, size, digest.hexdigest(), received)
        finally:
            temp.unlink(missing_ok=True)

    def _finish_lfs(self, temp: Path, sha256: str, size: int, got_sha256: str, received: int) -> None:
        if received != size:
            raise HubError(400, f"LFS upload of {sha256} has {received} bytes, expected {size}.")
        if got_sha256 != sha256:
            raise HubError(400, f"LFS upload rejected: content sha256 is {got_sha256}, expected {sha256}.")
        self.lfs_path(sha256).parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, self.lfs_path(sha256))

    def _lfs_link(self, repo_dir: Path, sha256: str) -> Path:
        """Where git-lfs keeps an object inside a git directory: ``lfs/objects/ab/cd/<sha256>``."""
        validate.lfs_oid(sha256)
        return repo_dir / "lfs" / "objects" / sha256[:2] / sha256[2:4] / sha256

    def grant_lfs(self, repo_type: str, repo_id: str, sha256: str) -> None:
        """Give ``repo_id`` LFS object ``sha256`` (a hard link in its git directory, where git-lfs looks)."""
        try:
            self.grant_lfs_dir(self._existing(repo_type, repo_id), sha256)
        except FileNotFoundError:
            raise repo_not_found(repo_id) from None  # deleted meanwhile

    def grant_lfs_dir(self, repo_dir: Path, sha256: str) -> None:
        link = self._lfs_link(repo_dir, sha256)
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(self.lfs_path(sha256), link)
        except FileExistsError:
            pass  # granted before

    def repo_has_lfs(self, repo_type: str, repo_id: str, sha256: str, size: int | None = None) -> bool:
        """True if ``repo_id`` holds the object (uploaded it, or references it): no reading other
        repositories' objects by oid, no committing an object one never uploaded."""
        link = self._lfs_link(self._existing(repo_type, repo_id), sha256)
        try:
            stored = link.stat().st_size
        except FileNotFoundError:
            return False
        return size is None or stored == size

    def file_path(self, entry: FileEntry, repo_type: str = "", repo_id: str = "") -> Path:
        """A file on disk holding a committed file's content: the LFS object, or the git blob written out
        once to ``objects/cache`` (so downloads are plain files, with ranges)."""
        if entry.lfs_sha256:
            return self.lfs_path(entry.lfs_sha256)
        validate.commit_oid(entry.oid, "blob oid")
        cached = self.root / "objects" / "cache" / entry.oid[:2] / entry.oid
        if not cached.is_file():
            self._write_atomic(cached, self.read_blob(repo_type, repo_id, entry.oid))
        return cached

    def read_blob(self, repo_type: str, repo_id: str, oid: str) -> bytes:
        repo = self._repo(repo_type, repo_id)
        try:
            blob = repo.object_store[oid.encode()]
        except KeyError:
            raise HubError(404, f"Blob {oid} is not stored in {repo_id}.", "EntryNotFound") from None
        return blob.as_raw_string()

    # -- repositories -------------------------------------------------------------------------------
    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        """The bare git repository: ``repos/<type>s/<namespace>/<name>.git``."""
        validate.repo_type(repo_type)
        validate.repo_id(repo_id)
        return self.root / "repos" / f"{repo_type}s" / f"{repo_id}.git"

    def repo_exists(self, repo_type: str, repo_id: str) -> bool:
        return (self.repo_dir(repo_type, repo_id) / META_FILE).is_file()

    def _existing(self, repo_type: str, repo_id: str) -> Path:
        path = self.repo_dir(repo_type, repo_id)
        if not (path / META_FILE).is_file():
            raise repo_not_found(repo_id)
        return path

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        try:
            return Repo(str(self._existing(repo_type, repo_id)))
        except (NotGitRepository, FileNotFoundError):
            raise repo_not_found(repo_id) from None

    def repo_meta(self, repo_type: str, repo_id: str) -> dict[str, Any]:
        try:
            return json.loads((self._existing(repo_type, repo_id) / META_FILE).read_text())
        except FileNotFoundError:
            raise repo_not_found(repo_id) from None  # deleted between the check and the read

    def list_repos(self, repo_type: str) -> list[str]:
        base = self.root / "repos" / f"{validate.repo_type(repo_type)}s"
        return sorted(f"{p.parent.parent.name}/{p.parent.name[:-len('.git')]}" for p in base.glob(f"*/*.git/{META_FILE}"))

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False) -> bool:
        """Create a repository whose ``main`` holds a .gitattributes; False if it already exists."""
        path = self.repo_dir(repo_type, repo_id)
        with self._locked(path, create=True):
            if (path / META_FILE).is_file():
                return False
            for leftover in path.iterdir():  # a creation cut off by a crash: start again
                if leftover.name != "hf-mae.lock":
                    remove_tree(leftover) if leftover.is_dir() else leftover.unlink()
            repo = Repo.init_bare(str(path), default_branch=DEFAULT_BRANCH.encode())
            attributes = Blob.from_string(gitattributes_text().encode())
            repo.object_store.add_object(attributes)
            tree = commit_tree(repo.object_store, [(b".gitattributes", attributes.id, 0o100644)])
            commit = self._git_commit(repo, tree, [], "initial commit", "", "hf-mae")
            repo.refs[f"refs/heads/{DEFAULT_BRANCH}".encode()] = commit
            repo.refs.set_symbolic_ref(b"HEAD", f"refs/heads/{DEFAULT_BRANCH}".encode())
            # hf-mae.json last: until it exists the repository does not exist for readers
            self._write_atomic(path / META_FILE, json.dumps({"id": repo_id, "type": repo_type, "private": bool(private),
                                                             "createdAt": utc_now()}).encode())
        return True

    def set_private(self, repo_type: str, repo_id: str, private: bool) -> None:
        path = self._existing(repo_type, repo_id)
        with self._locked(path):
            meta = self.repo_meta(repo_type, repo_id)
            meta["private"] = bool(private)
            self._write_atomic(path / META_FILE, json.dumps(meta).encode())

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        """Remove a repository: it vanishes in one step (moved out under its lock), then is erased."""
        path = self._existing(repo_type, repo_id)
        trash = self.tmp / f"deleted-{uuid.uuid4().hex}"
        with self._locked(path):
            if not (path / META_FILE).is_file():
                raise repo_not_found(repo_id)
            os.rename(path, trash)
        remove_tree(trash)

    # -- refs and commits -----------------------------------------------------------------------------
    def refs(self, repo_type: str, repo_id: str) -> dict[str, dict[str, str]]:
        """``{"heads": {branch: oid}, "tags": {tag: oid}, "pulls": {number: oid}}``."""
        repo = self._repo(repo_type, repo_id)
        answer: dict[str, dict[str, str]] = {}
        for kind, prefix in _REF_KINDS.items():
            answer[kind] = {name.decode(): oid.decode() for name, oid in repo.refs.as_dict(prefix).items()}
        return answer

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
        if _OID.match(revision):
            repo = self._repo(repo_type, repo_id)
            if revision.encode() in repo.object_store and isinstance(repo.object_store[revision.encode()], GitCommit):
                return revision
        raise revision_not_found(repo_id, revision)

    def commit(self, repo_type: str, repo_id: str, oid: str) -> Commit:
        validate.commit_oid(oid)
        repo = self._repo(repo_type, repo_id)
        try:
            git_commit = repo.object_store[oid.encode()]
        except KeyError:
            raise revision_not_found(repo_id, oid) from None
        if not isinstance(git_commit, GitCommit):
            raise revision_not_found(repo_id, oid)
        title, _, message = git_commit.message.decode("utf-8", "replace").partition("\n\n")
        author = git_commit.author.decode("utf-8", "replace").split(" <")[0]
        return Commit(oid, [p.decode() for p in git_commit.parents], title.strip(), message, _hub_date(git_commit.commit_time),
                      author, self._files(repo, oid, git_commit.tree))

    def _files(self, repo: Repo, oid: str, tree: bytes) -> dict[str, FileEntry]:
        """The file map of a commit: git blob oid and size per path, LFS pointers read (cached per commit)."""
        key = (repo.path, oid)
        with self._cache_lock:
            if key in self._files_cache:
                return dict(self._files_cache[key])
        files = {}
        for entry in iter_tree_contents(repo.object_store, tree):
            raw = repo.object_store[entry.sha].as_raw_string()
            pointer = parse_lfs_pointer(raw)
            path = entry.path.decode("utf-8", "surrogateescape")
            if pointer:
                files[path] = FileEntry(entry.sha.decode(), pointer[1], pointer[0], len(raw))
            else:
                files[path] = FileEntry(entry.sha.decode(), len(raw))
        with self._cache_lock:
            if len(self._files_cache) > 512:
                self._files_cache.clear()
            self._files_cache[key] = files
        return dict(files)

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
    def _git_commit(repo: Repo, tree: bytes, parents: list[bytes], title: str, description: str, author: str) -> bytes:
        commit = GitCommit()
        commit.tree, commit.parents = tree, parents
        identity = f"{author} <{author}@hf-mae-hub>".encode()
        commit.author = commit.committer = identity
        commit.author_time = commit.commit_time = int(time.time())
        commit.author_timezone = commit.commit_timezone = 0
        commit.encoding = b"UTF-8"
        commit.message = (title + ("\n\n" + description if description else "") + "\n").encode()
        repo.object_store.add_object(commit)
        return commit.id

    def create_ref(self, repo_type: str, repo_id: str, kind: str, name: str, start: str, *,
                   empty: bool = False) -> str:
        """Create a branch (``kind="heads"``) or a tag (``"tags"``) at revision ``start``; 409 if it exists."""
        path = self._existing(repo_type, repo_id)
        validate.ref_name(name, "branch" if kind == "heads" else "tag")
        with self._locked(path):
            repo = self._repo(repo_type, repo_id)
            if name in self.refs(repo_type, repo_id)[kind]:
                label = "Branch" if kind == "heads" else "Tag"
                raise HubError(409, f"{label} {name!r} already exists in {repo_id} (Reference already exists).")
            if empty:
                tree = commit_tree(repo.object_store, [])
                oid = self._git_commit(repo, tree, [], f"Create empty branch {name}", "", "hf-mae").decode()
            else:
                oid = self.resolve(repo_type, repo_id, start)
            if not repo.refs.add_if_new(_REF_KINDS[kind] + b"/" + name.encode(), oid.encode()):
                raise HubError(409, f"{name!r} already exists in {repo_id} (Reference already exists).")
        return oid

    def delete_ref(self, repo_type: str, repo_id: str, kind: str, name: str) -> None:
        path = self._existing(repo_type, repo_id)
        validate.ref_name(name, "branch" if kind == "heads" else "tag")
        if kind == "heads" and name == DEFAULT_BRANCH:
            raise HubError(403, f"Cannot delete the default branch {DEFAULT_BRANCH!r}.")
        with self._locked(path):
            if name not in self.refs(repo_type, repo_id)[kind]:
                raise revision_not_found(repo_id, name)
            del self._repo(repo_type, repo_id).refs[_REF_KINDS[kind] + b"/" + name.encode()]

    def apply_commit(self, repo_type: str, repo_id: str, revision: str, header: dict[str, Any],
                     operations: list[tuple[str, dict[str, Any]]], *, create_pr: bool = False,
                     staged: dict[int, StagedFile] | None = None, author: str = "hf-mae") -> tuple[str, int | None]:
        """Apply NDJSON commit operations on top of ``revision``; returns (commit oid, pull request number).

        ``operations`` are (key, value) pairs: ``file`` (its content in ``staged[index]``, written to ``tmp/``
        by the caller; large or binary files, or those .gitattributes marks for LFS, become LFS objects and
        pointers, as git-lfs would commit them), ``lfsFile`` (``oid`` = sha256, ``size``; without a size, as
        ``CommitOperationCopy`` sends it, the stored object's), ``deletedFile``, ``deletedFolder``. Everything
        is checked before anything is written: an error leaves the repository and the store as they were.
        """
        path = self._existing(repo_type, repo_id)
        staged = staged or {}
        if not isinstance(header, dict):
            raise bad_request("commit header", header, "a JSON object {summary, description, parentCommit?}")
        validate.revision(revision)
        with self._locked(path):
            repo = self._repo(repo_type, repo_id)
            refs = self.refs(repo_type, repo_id)
            parent = self.resolve(repo_type, repo_id, revision)
            expected = header.get("parentCommit")
            if expected and expected != parent:
                raise HubError(412, f"A commit has happened since {expected}: {revision} is now at {parent}. "
                                    "Pull the latest changes and try again.")
            if create_pr:  # (kind, name) of the ref the commit moves
                moved = ("pulls", str(max((int(n) for n in refs["pulls"]), default=0) + 1))
            elif revision.startswith("refs/pr/"):
                moved = ("pulls", revision[len("refs/pr/"):])
                if moved[1] not in refs["pulls"]:
                    raise revision_not_found(repo_id, revision)
            else:
                moved = ("heads", revision.removeprefix("refs/heads/"))
                if moved[1] not in refs["heads"]:
                    raise HubError(400, f"Can only commit to a branch or a pull request, and {revision!r} is not a "
                                        f"branch of {repo_id}.")
            files = self.commit(repo_type, repo_id, parent).files
            lfs_patterns = lfs_patterns_of(self._text(repo, files.get(".gitattributes")))
            new_blobs: dict[str, Path] = {}
            new_lfs: list[tuple[StagedFile, str]] = []
            for index, (key, value) in enumerate(operations):
                if not isinstance(value, dict):
                    raise bad_request(f"commit operation {key!r}", value, "a JSON object with a `path`")
                target = validate.file_path(value.get("path"), f"path of commit operation {key!r}")
                if key == "file":
                    if index not in staged:
                        raise HubError(400, f"File {target!r}: content missing.")
                    item = staged[index]
                    if _wants_lfs(target, item, lfs_patterns):
                        sha256 = item.sha256
                        pointer = lfs_pointer(sha256, item.size)
                        files[target] = FileEntry(git_blob_oid(pointer), item.size, sha256, len(pointer))
                        new_lfs.append((item, sha256))
                    else:
                        files[target] = FileEntry(item.oid, item.size)
                        new_blobs[item.oid] = item.temp
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
            title = str(header.get("summary") or "").strip()
            if not title:
                raise HubError(400, "The commit summary (message) must not be empty.")
            # accepted: from here on only writes, contents first, the ref last
            for item, sha256 in new_lfs:
                if not self.has_lfs(sha256):
                    self.lfs_path(sha256).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(item.temp, self.lfs_path(sha256))
                self.grant_lfs(repo_type, repo_id, sha256)
            for oid, temp in new_blobs.items():
                if oid.encode() not in repo.object_store:
                    repo.object_store.add_object(Blob.from_string(temp.read_bytes()))
            for entry in files.values():
                if entry.lfs_sha256 and entry.oid.encode() not in repo.object_store:
                    repo.object_store.add_object(Blob.from_string(lfs_pointer(entry.lfs_sha256, entry.size)))
            tree = commit_tree(repo.object_store, [(p.encode("utf-8", "surrogateescape"), e.oid.encode(), 0o100644)
                                                   for p, e in files.items()])
            oid = self._git_commit(repo, tree, [parent.encode()], title, str(header.get("description") or ""), author)
            kind, name = moved
            old = refs[kind].get(name)
            ref = _REF_KINDS[kind] + b"/" + name.encode()
            if not repo.refs.set_if_equals(ref, old.encode() if old else None, oid):  # the one visible step
                raise HubError(409, f"{ref.decode()} moved during the commit; try again.")
        return oid.decode(), int(name) if create_pr else None

    def _text(self, repo: Repo, entry: FileEntry | None) -> str:
        if entry is None or entry.lfs_sha256 or entry.size > 1 << 20:
            return ""
        return repo.object_store[entry.oid.encode()].as_raw_string().decode("utf-8", "replace")

    def verify(self) -> list[str]:
        """Check the whole store: every ref reaches commits whose files' contents are stored (git objects,
        and LFS objects of the recorded size, held by the repository). Returns the problems found.

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
                    except (HubError, KeyError):
                        problems.append(f"{repo_type} {repo_id}: commit {oid} or one of its objects is missing")
                        continue
                    pending.extend(commit.parents)
                    for path, entry in commit.files.items():
                        if entry.lfs_sha256 and not self.repo_has_lfs(repo_type, repo_id, entry.lfs_sha256, entry.size):
                            problems.append(f"{repo_type} {repo_id}@{oid}: LFS object of {path} is missing")
        return problems

    # -- start-up: what a crash or a refused request left behind --------------------------------------
    def collect_garbage(self) -> dict[str, int]:
        """Remove leftovers: temporary files, deleted repositories not yet erased, repositories whose creation
        was cut off, git objects no ref reaches (a commit cut off before its ref moved), LFS objects no
        repository holds any more (deleted repositories), and the blob cache.
        Returns counts per kind. Run at start, before any request: it must not race a commit in progress."""
        removed = {"temporary": 0, "objects": 0, "unfinished repositories": 0, "lfs objects": 0}
        for leftover in self.tmp.iterdir():
            remove_tree(leftover) if leftover.is_dir() else leftover.unlink(missing_ok=True)
            removed["temporary"] += 1
        remove_tree(self.root / "objects" / "cache")
        (self.root / "objects" / "cache").mkdir()
        for lfs_object in (self.root / "objects" / "lfs").glob("*/*/*"):
            if lfs_object.stat().st_nlink == 1:  # no repository holds a link to it any more
                lfs_object.unlink()
                removed["lfs objects"] += 1
        for repo_type in REPO_TYPES:
            for git_dir in (self.root / "repos" / f"{repo_type}s").glob("*/*.git"):
                if not (git_dir / META_FILE).is_file():
                    remove_tree(git_dir)
                    removed["unfinished repositories"] += 1
                    continue
                repo = Repo(str(git_dir))
                pruned, _ = prune_unreachable_objects(repo.object_store, repo.refs, grace_period=0)
                removed["objects"] += len(pruned)
        return removed


def stage_file(store: HubStorage, chunks: Iterable[bytes]) -> StagedFile:
    """Write a file's content to ``tmp/``, its sha256 computed on the way."""
    temp, size, digest = store.temp_path(), 0, hashlib.sha256()
    try:
        with open(temp, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                digest.update(chunk)
                size += len(chunk)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return StagedFile(temp, size, digest.hexdigest())


def decode_base64_file(value: dict[str, Any]) -> bytes:
    """Content of an NDJSON ``file`` operation."""
    if value.get("encoding", "base64") != "base64":
        raise HubError(400, f"Unsupported file encoding {value.get('encoding')!r}: expected base64.")
    try:
        return base64.b64decode(value.get("content", ""), validate=True)
    except ValueError as err:
        raise HubError(400, f"File {value.get('path')!r}: invalid base64 content ({err}).") from None
