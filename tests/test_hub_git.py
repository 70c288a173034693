"""The local Hub's store is git: ``git clone`` over HTTP with ``git lfs`` fetching the weights, commit ids that
are git's, a store ``git fsck`` accepts, and old (JSON) stores migrated at start.

Needs the ``git`` and ``git-lfs`` command-line tools (scripts/setup.sh installs git-lfs).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path


from hf_mae.hub.server import start_server
from hf_mae.hub.storage import HubStorage, lfs_pointer
from test_hub_security import _file_op, hub  # noqa: F401 - the server fixture (its own per module)


def _git(*args: str, cwd: Path | None = None, home: Path) -> subprocess.CompletedProcess:
    """git with a private global config that enables the git-lfs filters (what `git lfs install` writes)."""
    config = home / "gitconfig"
    if not config.exists():
        config.write_text('[filter "lfs"]\n\tclean = git-lfs clean -- %f\n\tsmudge = git-lfs smudge -- %f\n'
                          "\tprocess = git-lfs filter-process\n\trequired = true\n")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": str(config), "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(home),
           "GIT_TERMINAL_PROMPT": "0", "GIT_LFS_SKIP_PUSH": "1"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_git_clone_with_git_lfs_gets_every_file_and_the_same_commit(hub, tmp_path):
    assert hub.create("lab/cloned") == 200
    weights = os.urandom(300_000)
    oid = hub.upload_lfs("lab/cloned", weights)
    status, answer = hub.commit("lab/cloned", [
        _file_op("config.json", b'{"a": 1}'), _file_op("sub/notes.txt", b"hello"),
        {"key": "lfsFile", "value": {"path": "model.safetensors", "algo": "sha256", "oid": oid, "size": len(weights)}}])
    assert status == 200
    url = f"http://127.0.0.1:{hub.port}/lab/cloned"
    result = _git("clone", url, str(tmp_path / "checkout"), home=tmp_path)
    assert result.returncode == 0, result.stderr
    checkout = tmp_path / "checkout"
    assert (checkout / "model.safetensors").read_bytes() == weights  # smudged by git lfs from the batch API
    assert (checkout / "config.json").read_bytes() == b'{"a": 1}'
    assert (checkout / "sub" / "notes.txt").read_bytes() == b"hello"
    head = _git("rev-parse", "HEAD", cwd=checkout, home=tmp_path).stdout.strip()
    assert head == answer["commitOid"] == hub.head("lab/cloned")  # commit ids are git's
    pointer = _git("show", "HEAD:model.safetensors", cwd=checkout, home=tmp_path).stdout.encode()
    assert pointer == lfs_pointer(hashlib.sha256(weights).hexdigest(), len(weights))
    bare = hub.root / "repos" / "models" / "lab" / "cloned.git"
    fsck = _git("--git-dir", str(bare), "fsck", "--strict", home=tmp_path)
    assert fsck.returncode == 0, fsck.stderr
    assert (bare / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).read_bytes() == weights  # where git-lfs looks
    # pushing goes through the Hub API only
    push = _git("push", url, "HEAD:main", cwd=checkout, home=tmp_path)
    assert push.returncode != 0 and "403" in push.stderr


def test_private_repositories_need_credentials_to_clone(hub, tmp_path):
    weights = os.urandom(50_000)
    hub.lfs_repo("lab/hidden", weights, private=True)
    anonymous = _git("clone", f"http://127.0.0.1:{hub.port}/lab/hidden", str(tmp_path / "a"), home=tmp_path)
    assert anonymous.returncode != 0 and not (tmp_path / "a" / "w.bin").exists()
    outsider = _git("clone", f"http://bob:{hub.tokens['bob']}@127.0.0.1:{hub.port}/lab/hidden", str(tmp_path / "b"),
                    home=tmp_path)
    assert outsider.returncode != 0 and not (tmp_path / "b" / "w.bin").exists()
    member = _git("clone", f"http://carol:{hub.tokens['carol']}@127.0.0.1:{hub.port}/lab/hidden", str(tmp_path / "c"),
                  home=tmp_path)
    assert member.returncode == 0, member.stderr
    assert (tmp_path / "c" / "w.bin").read_bytes() == weights


def test_malformed_git_requests_answer_4xx(hub):
    assert hub.create("lab/gitbad") == 200
    for body, headers in ((b"garbage", {"Content-Type": "application/x-git-upload-pack-request"}),
                          (b"0032want " + b"f" * 40 + b"\n0000", {"Content-Type": "application/x-git-upload-pack-request"}),
                          (b"x", {"Content-Type": "text/plain"}),
                          (b"\x1f\x8b not gzip", {"Content-Type": "application/x-git-upload-pack-request",
                                                  "Content-Encoding": "gzip"})):
        status, _, _ = hub.call("POST", "/lab/gitbad/git-upload-pack", body, headers=headers)
        assert 400 <= status < 500, (body, status)
    assert hub.call("GET", "/lab/gitbad/info/refs?service=git-receive-pack")[0] == 403
    assert hub.call("GET", "/lab/gitbad/info/refs?service=git-upload-pack")[0] == 200


def _write_json_store(root: Path) -> dict:
    """A store in the layout hf-mae used before git: JSON commits, blobs by git oid, LFS by sha256."""
    def blob(content: bytes) -> str:
        oid = hashlib.sha1(b"blob %d\x00" % len(content) + content).hexdigest()
        (root / "objects" / "blobs" / oid[:2]).mkdir(parents=True, exist_ok=True)
        (root / "objects" / "blobs" / oid[:2] / oid).write_bytes(content)
        return oid

    weights = os.urandom(20_000)
    sha256 = hashlib.sha256(weights).hexdigest()
    (root / "objects" / "lfs" / sha256[:2] / sha256[2:4]).mkdir(parents=True)
    (root / "objects" / "lfs" / sha256[:2] / sha256[2:4] / sha256).write_bytes(weights)
    repo = root / "repos" / "models" / "lab" / "old"
    (repo / "commits").mkdir(parents=True)
    first = {"oid": "1" * 40, "parents": [], "title": "initial commit", "message": "", "date": "2025-01-02T03:04:05.000Z",
             "author": "local", "files": {"config.json": {"oid": blob(b'{"v": 1}'), "size": 8}}}
    second = {"oid": "2" * 40, "parents": ["1" * 40], "title": "weights", "message": "and more",
              "date": "2025-01-03T03:04:05.000Z", "author": "local",
              "files": {"config.json": {"oid": blob(b'{"v": 2}'), "size": 8},
                        "w.bin": {"oid": "0" * 40, "size": len(weights), "lfs_sha256": sha256, "pointer_size": 130}}}
    for commit in (first, second):
        (repo / "commits" / f"{commit['oid']}.json").write_text(json.dumps(commit))
    (repo / "refs.json").write_text(json.dumps({"heads": {"main": "2" * 40}, "tags": {"v1": "1" * 40}, "pulls": {}}))
    (repo / "repo.json").write_text(json.dumps({"id": "lab/old", "type": "model", "private": True,
                                                "createdAt": "2025-01-02T03:04:05.000Z"}))
    return {"weights": weights}


def test_an_old_json_store_is_migrated_to_git_at_start(tmp_path):
    root = tmp_path / "root"
    expected = _write_json_store(root)
    server = start_server(str(root))
    try:
        store = server.app.storage
        assert store.list_repos("model") == ["lab/old"] and store.repo_meta("model", "lab/old")["private"]
        assert [c.title for c in store.history("model", "lab/old", "main")] == ["weights", "initial commit"]
        assert store.history("model", "lab/old", "main")[0].message == "and more\n"
        main = store.commit("model", "lab/old", store.resolve("model", "lab/old", "main"))
        assert store.file_path(main.files["w.bin"]).read_bytes() == expected["weights"]
        assert store.file_path(main.files["config.json"], "model", "lab/old").read_bytes() == b'{"v": 2}'
        tagged = store.commit("model", "lab/old", store.resolve("model", "lab/old", "v1"))
        assert store.file_path(tagged.files["config.json"], "model", "lab/old").read_bytes() == b'{"v": 1}'
        assert store.verify() == []
        assert (root / "migrated-json-store" / "repos" / "models" / "lab" / "old" / "refs.json").is_file()
    finally:
        server.shutdown()
        server.server_close()
    again = HubStorage(root)  # a second start finds nothing left to migrate
    assert again.list_repos("model") == ["lab/old"]
