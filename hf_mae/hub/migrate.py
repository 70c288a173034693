"""Stores written by hf-mae before repositories were git repositories, converted when the server starts.

The old layout kept each repository as JSON (``repos/<type>s/<ns>/<name>/{repo.json, refs.json,
commits/<oid>.json}``) and inline file contents in ``objects/blobs``. Each repository is replayed into a bare
git repository, commit by commit (parents first, same messages, dates and files; LFS files become pointer
files, as git-lfs commits them), its branches, tags and pull requests pointing at the new commits. Commit
ids change (they are git's now); the old files move to ``<root>/migrated-json-store/`` and can be deleted
once the migration looks right.

Example:
    >>> import tempfile
    >>> from hf_mae.hub.storage import HubStorage
    >>> store = HubStorage(tempfile.mkdtemp())      # a new or already migrated store: nothing to do
    >>> migrate_json_store(store)
    0
"""

from __future__ import annotations

import calendar
import json
import os
import sys
import time
from typing import TYPE_CHECKING

from dulwich.index import commit_tree
from dulwich.objects import Blob
from dulwich.objects import Commit as GitCommit
from dulwich.repo import Repo

from .gitfiles import META_FILE, gitattributes_text, lfs_pointer, remove_tree
from .validation import REPO_TYPES

if TYPE_CHECKING:
    from .storage import HubStorage


def _timestamp(hub_date: str) -> int:
    """``2024-01-31T12:00:00.000Z`` -> seconds since the epoch (UTC)."""
    try:
        return calendar.timegm(time.strptime(hub_date[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return int(time.time())


def migrate_json_store(store: HubStorage) -> int:
    """Convert every repository of the old JSON layout under ``store.root``; returns how many."""

    old_repos = [p.parent for t in REPO_TYPES for p in (store.root / "repos" / f"{t}s").glob("*/*/refs.json")
                 if not p.parent.name.endswith(".git")]
    if not old_repos:
        return 0
    backup = store.root / "migrated-json-store"
    for old in old_repos:
        repo_type = old.parent.parent.name[:-1]
        repo_id = f"{old.parent.name}/{old.name}"
        meta = json.loads((old / "repo.json").read_text()) if (old / "repo.json").is_file() else {}
        refs = json.loads((old / "refs.json").read_text())
        git_dir = store.repo_dir(repo_type, repo_id)
        if git_dir.exists():

            remove_tree(git_dir)  # a migration cut off before: start this repository again
        git_dir.mkdir(parents=True)
        repo = Repo.init_bare(str(git_dir), default_branch=b"main")
        new_oids: dict[str, bytes] = {}

        def replay(oid: str) -> bytes:
            if oid in new_oids:
                return new_oids[oid]
            data = json.loads((old / "commits" / f"{oid}.json").read_text())
            parents = [replay(parent) for parent in data["parents"]]
            entries = []
            for path, entry in sorted(data["files"].items()):
                if entry.get("lfs_sha256"):
                    content = lfs_pointer(entry["lfs_sha256"], entry["size"])
                    if store.has_lfs(entry["lfs_sha256"]):
                        store.grant_lfs_dir(git_dir, entry["lfs_sha256"])
                else:
                    blob_file = store.root / "objects" / "blobs" / entry["oid"][:2] / entry["oid"]
                    content = blob_file.read_bytes() if blob_file.is_file() else (
                        gitattributes_text().encode() if path == ".gitattributes" else b"")
                blob = Blob.from_string(content)
                repo.object_store.add_object(blob)
                entries.append((path.encode(), blob.id, 0o100644))
            commit = GitCommit()
            commit.tree = commit_tree(repo.object_store, entries)
            commit.parents = parents
            author = str(data.get("author") or "hf-mae")
            commit.author = commit.committer = f"{author} <{author}@hf-mae-hub>".encode()
            commit.author_time = commit.commit_time = _timestamp(data.get("date", ""))
            commit.author_timezone = commit.commit_timezone = 0
            commit.encoding = b"UTF-8"
            message = data.get("message") or ""
            commit.message = (data["title"] + ("\n\n" + message if message else "") + "\n").encode()
            repo.object_store.add_object(commit)
            new_oids[oid] = commit.id
            return commit.id

        for kind, prefix in (("heads", b"refs/heads/"), ("tags", b"refs/tags/"), ("pulls", b"refs/pr/")):
            for name, oid in refs.get(kind, {}).items():
                repo.refs[prefix + name.encode()] = replay(oid)
        repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
        (git_dir / META_FILE).write_text(json.dumps({"id": repo_id, "type": repo_type,
                                                     "private": bool(meta.get("private")),
                                                     "createdAt": meta.get("createdAt", "")}))
        target = backup / "repos" / f"{repo_type}s" / repo_id
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(old, target)
    blobs = store.root / "objects" / "blobs"
    if blobs.is_dir():
        os.replace(blobs, backup / "blobs")
    print(f"hf-mae hub: migrated {len(old_repos)} repositories to git (commit ids changed); the old files are "
          f"in {backup} and can be deleted once everything looks right.", file=sys.stderr, flush=True)
    return len(old_repos)
