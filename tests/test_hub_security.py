"""The local Hub against hostile or broken clients, over loopback, with raw HTTP (http.client and sockets).

Every case asserts the status code, and that the server touched nothing outside its root: a Python audit
hook records every file the process opens, lists, renames or removes while the requests run, and each test
checks that all of them lie under the root (or are Python's own modules, imported lazily). A canary file
next to the root must never show up in a response. Loops are bounded in count and time.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from hf_mae.hub.auth import Auth
from hf_mae.hub.server import main as hub_main
from hf_mae.hub.server import make_server, start_server
from hf_mae.hub.transport import Limits
from test_hub import _free_port, _serve_cli

ROOT = Path(__file__).resolve().parents[1]
LIMITS = Limits(max_body_bytes=8 << 20, max_file_bytes=4 << 20, max_json_bytes=64 << 10, header_timeout=1.0,
                idle_timeout=1.0, max_connections=16)
CANARY = b"hf-mae canary: this must never be served"


# -- watching the file system ----------------------------------------------------------------------------
class FileAudit:
    """Paths the process touches (open, list, rename, remove, mkdir ...) while ``active``."""

    EVENTS = {"open", "os.listdir", "os.scandir", "os.remove", "os.rename", "os.replace", "os.mkdir", "os.rmdir",
              "shutil.rmtree", "os.truncate", "os.chmod", "os.utime", "os.link", "os.symlink", "shutil.copyfile"}
    TWO_PATHS = {"os.rename", "os.replace", "os.link", "os.symlink", "shutil.copyfile"}

    def __init__(self):
        self.active, self.paths = False, []

    def __call__(self, event: str, args: tuple) -> None:
        if self.active and event in self.EVENTS:
            for arg in args[:2] if event in self.TWO_PATHS else args[:1]:
                if isinstance(arg, (str, bytes, os.PathLike)):
                    self.paths.append(os.path.abspath(os.fsdecode(arg)))


AUDIT = FileAudit()
sys.addaudithook(AUDIT)
_PYTHON = tuple({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
                | {str(ROOT / "hf_mae"), str(ROOT / "tests")})  # lazy imports; pytest reading a failed test


def _inside(path: str, folder: Path) -> bool:
    real = os.path.realpath(path)
    return real == str(folder) or real.startswith(str(folder) + os.sep)


@pytest.fixture
def watched(hub):
    """Records file accesses during the test; fails if any lies outside the root."""
    AUDIT.paths.clear()
    AUDIT.active = True
    yield
    AUDIT.active = False
    outside = [p for p in AUDIT.paths if not _inside(p, hub.root)
               and not any(_inside(p, Path(prefix)) for prefix in _PYTHON)]
    assert not outside, f"the server touched files outside its root: {sorted(set(outside))[:10]}"
    assert hub.canary.read_bytes() == CANARY


# -- the server --------------------------------------------------------------------------------------------
class Hub:
    """A server with tokens: alice (write) and carol (read) in organisation lab, bob (write) alone."""

    def __init__(self, base: Path):
        self.root = (base / "root").resolve()
        self.canary = base / "canary.txt"
        self.canary.write_bytes(CANARY)
        auth = Auth(self.root)
        self.tokens = {name: auth.create_token(name, role)
                       for name, role in (("alice", "write"), ("bob", "write"), ("carol", "read"))}
        (self.root / "auth" / "orgs.yaml").write_text("lab: [alice, carol]\n")
        self.server = start_server(str(self.root), limits=LIMITS)
        self.port = self.server.server_address[1]

    def call(self, method: str, path: str, body: bytes | dict | list | None = None, *, user: str | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        sent = dict(headers or {})
        if user:
            sent["Authorization"] = f"Bearer {self.tokens[user]}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            data = response.read()
            assert CANARY not in data and b"root:x:0:0" not in data
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            connection.close()

    def create(self, repo_id: str, user: str = "alice", private: bool = False) -> int:
        owner, name = repo_id.split("/")
        return self.call("POST", "/api/repos/create", {"name": name, "organization": owner, "private": private},
                         user=user)[0]

    def commit(self, repo_id: str, operations: list[dict], user: str = "alice", revision: str = "main",
               summary: str = "test") -> tuple[int, dict]:
        lines = [{"key": "header", "value": {"summary": summary}}] + operations
        body = "\n".join(json.dumps(line) for line in lines).encode()
        status, _, data = self.call("POST", f"/api/models/{repo_id}/commit/{quote(revision, safe='')}", body,
                                    user=user, headers={"Content-Type": "application/x-ndjson"})
        return status, json.loads(data)

    def upload_lfs(self, repo_id: str, content: bytes, user: str = "alice") -> str:
        oid = hashlib.sha256(content).hexdigest()
        status, _, data = self.call("POST", f"/{repo_id}.git/info/lfs/objects/batch",
                                    {"operation": "upload", "objects": [{"oid": oid, "size": len(content)}]}, user=user)
        assert status == 200, data
        actions = json.loads(data)["objects"][0].get("actions")
        if actions:
            href = actions["upload"]["href"].split(str(self.port), 1)[1]
            status, _, data = self.call("PUT", href, content)
            assert status == 200, data
        return oid

    def lfs_repo(self, repo_id: str, content: bytes, *, private: bool = False, path: str = "w.bin") -> str:
        """A new repository of alice's holding ``content`` as an LFS file; returns its sha256."""
        assert self.create(repo_id, private=private) == 200
        oid = self.upload_lfs(repo_id, content)
        status, answer = self.commit(repo_id, [{"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": oid,
                                                                             "size": len(content)}}])
        assert status == 200, answer
        return oid

    def head(self, repo_id: str, user: str = "alice") -> str:
        status, _, data = self.call("GET", f"/api/models/{repo_id}", user=user)
        assert status == 200, data
        return json.loads(data)["sha"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    server = Hub(tmp_path_factory.mktemp("hub-security"))
    yield server
    server.server.shutdown()
    server.server.server_close()


def _file_op(path: str, content: bytes) -> dict:
    return {"key": "file", "value": {"path": path, "content": base64.b64encode(content).decode(), "encoding": "base64"}}


def _raw(port: int, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection; everything the server answers until it closes or ``wait``."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        received = b""
        deadline = time.monotonic() + wait
        try:
            while time.monotonic() < deadline and (chunk := sock.recv(65536)):
                received += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        return received


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


# -- traversal and identifiers -----------------------------------------------------------------------------
def test_traversal_in_every_url_field_is_refused(hub, watched):
    hub.lfs_repo("lab/trav", os.urandom(3000))
    etc = quote("/etc/passwd", safe="")
    canary = quote(str(hub.canary), safe="")
    up = quote("../../../../../../etc/passwd", safe="")
    bad_oids = [etc, canary, up, ("a" * 64).upper(), "g" * 64, "a" * 63, "a" * 65, quote("/" + "a" * 63, safe=""),
                quote("a" * 62 + "/.", safe="")]
    for bad in bad_oids:
        for method in ("GET", "HEAD", "PUT"):
            status, _, _ = hub.call(method, f"/lab/trav.git/info/lfs/objects/{bad}?size=1", b"x" if method == "PUT"
                                    else None, user="alice")
            assert status == 400, (method, bad, status)
    cases = {  # URL -> expected status
        f"/lab/trav/resolve/main/{up}": 400,
        f"/lab/trav/resolve/main/{etc}": 400,
        f"/lab/trav/resolve/main/{canary}": 400,
        "/lab/trav/resolve/main/../../../etc/passwd": 400,
        "/lab/trav/resolve/main/a%5C..%5C..%5Cetc": 400,
        "/lab/trav/resolve/main/a%00b": 400,
        "/lab/trav/resolve/main/.git/config": 400,
        f"/lab/trav/resolve/{up}/w.bin": 400,
        "/lab/trav/resolve/HEAD/w.bin": 400,
        "/lab/trav/resolve/main.lock/w.bin": 400,
        "/lab/trav/resolve/ma%40%7Bin/w.bin": 400,
        f"/api/models/lab/trav/tree/main/{up}": 400,
        f"/api/models/lab/trav/tree/{up}": 400,
        f"/api/models/lab/trav/revision/{up}": 400,
        f"/api/models/lab/trav/commits/{up}": 400,
        "/api/models/../trav": 400,
        "/api/models/lab/..": 400,
        f"/api/models/{quote('lab/../../x', safe='')}/x": 400,
        "/..%2F..%2Fetc/passwd/resolve/main/x": 400,
        f"/{etc}/x/resolve/main/w.bin": 400,
        "/lab/trav/resolve/main/w.bin": 200,
    }
    for url, expected in cases.items():
        status, _, _ = hub.call("GET", url, user="alice")
        assert status == expected, (url, status)
    status, _, data = hub.call("POST", "/api/models/lab/trav/paths-info/main",
                               {"paths": ["../../etc/passwd"]}, user="alice")
    assert status == 400 and b"path" in data


def test_traversal_in_commit_and_ref_bodies_is_refused(hub, watched):
    assert hub.create("lab/body") == 200
    head = hub.head("lab/body")
    for path in ("../escape.txt", "/abs.txt", "a\\b.txt", ".git/config", "a/../../b", "a//b", "", "x\x00y",
                 "a\nb", "x" * 2000):
        status, answer = hub.commit("lab/body", [_file_op(path, b"data")])
        assert status == 400, (path, status, answer)
    for oid in ("../../../../etc/passwd", "A" * 64, 5, None):
        status, _ = hub.commit("lab/body", [{"key": "lfsFile", "value": {"path": "w.bin", "oid": oid, "size": 4}}])
        assert status == 400, (oid, status)
    for name in ("../x", "a..b", "x.lock", "a@{b", "HEAD", "-x", "a b", "a\r\nSet-Cookie: x", "refs/heads/x",
                 "0" * 40, "a" * 64, ".hidden", "a/", "x" * 300):
        status, _, _ = hub.call("POST", f"/api/models/lab/body/branch/{quote(name, safe='')}", {}, user="alice")
        assert status == 400, (name, status)
        status, _, _ = hub.call("POST", "/api/models/lab/body/tag/main", {"tag": name}, user="alice")
        assert status == 400, (name, status)
    assert hub.head("lab/body") == head
    assert hub.call("POST", "/api/models/lab/body/branch/feature%2Fok", {}, user="alice")[0] == 200
    assert hub.server.app.storage.verify() == []


def test_response_headers_never_carry_raw_input(hub, watched):
    assert hub.create("lab/headers") == 200
    assert hub.commit("lab/headers", [_file_op("dir/na me é.txt", b"x")])[0] == 200
    status, headers, _ = hub.call("GET", f"/lab/headers/resolve/main/{quote('dir/na me é.txt')}")
    assert status == 200 and headers["content-disposition"] == "inline; filename*=UTF-8''na%20me%20%C3%A9.txt"
    for url in ("/lab/headers/resolve/main/x%0d%0aSet-Cookie:%20evil=1", "/lab/headers/resolve/x%0d%0aX-Evil:%201/a",
                "/lab/headers/resolve/main/missing%20%E2%9C%93"):
        raw = _raw(hub.port, f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        head = raw.split(b"\r\n\r\n")[0]
        assert _status(raw) in (400, 404), raw[:200]
        names = [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")[1:]]
        assert b"set-cookie" not in names and b"x-evil" not in names, head
        assert all(32 <= byte < 127 for line in head.split(b"\r\n") for byte in line), head
    # a forged Host header does not end up in the links the server hands out
    batch = json.dumps({"operation": "upload", "objects": [{"oid": "c" * 64, "size": 1}]}).encode()
    raw = _raw(hub.port, b"POST /lab/headers.git/info/lfs/objects/batch HTTP/1.1\r\nHost: evil.example/x?\r\n"
                         b"Authorization: Bearer " + hub.tokens["alice"].encode() + b"\r\nContent-Type: application/json"
                         b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(batch) + batch)
    assert _status(raw) == 200 and b"evil.example" not in raw


# -- tokens, roles, private repositories -------------------------------------------------------------------------
def test_tokens_roles_and_whoami(hub, watched):
    assert hub.call("GET", "/api/whoami-v2")[0] == 401
    for header in ("Bearer hf_mae_forged", "Bearer ", "Basic YWxpY2U6eA==", "Bearer " + hub.tokens["alice"] + "x"):
        status, headers, _ = hub.call("GET", "/api/models", headers={"Authorization": header})
        assert status == 401 and "bearer" in headers["www-authenticate"].lower(), header
    status, _, data = hub.call("GET", "/api/whoami-v2", user="alice")
    me = json.loads(data)
    assert status == 200 and me["name"] == "alice" and me["auth"]["accessToken"]["role"] == "write"
    assert [org["name"] for org in me["orgs"]] == ["lab"]
    status, _, data = hub.call("GET", "/api/whoami-v2", user="carol")
    assert status == 200 and json.loads(data)["auth"]["accessToken"]["role"] == "read"
    tokens = json.loads((hub.root / "auth" / "tokens.json").read_text())
    assert len(tokens) == 3 and not any(token in json.dumps(tokens) for token in hub.tokens.values())


def test_writes_need_a_write_token_for_the_namespace(hub, watched):
    assert hub.create("lab/guarded") == 200
    head = hub.head("lab/guarded")
    assert hub.create("lab/other", user=None) == 401
    assert hub.create("lab/other", user="carol") == 403  # read token
    assert hub.create("lab/other", user="bob") == 403  # not a member of lab
    assert hub.create("bob/own", user="bob") == 200
    for user, expected in ((None, 401), ("carol", 403), ("bob", 403)):
        assert hub.commit("lab/guarded", [_file_op("x.txt", b"x")], user=user)[0] == expected
        assert hub.call("POST", "/api/models/lab/guarded/branch/dev", {}, user=user)[0] == expected
        assert hub.call("POST", "/api/models/lab/guarded/tag/main", {"tag": "v9"}, user=user)[0] == expected
        assert hub.call("DELETE", "/api/models/lab/guarded/branch/main", user=user)[0] == expected
        assert hub.call("PUT", "/api/models/lab/guarded/settings", {"private": True}, user=user)[0] == expected
        assert hub.call("POST", "/api/models/lab/guarded/preupload/main", {"files": []}, user=user)[0] == expected
        assert hub.call("DELETE", "/api/repos/delete", {"name": "guarded", "organization": "lab"},
                        user=user)[0] == expected
        batch = {"operation": "upload", "objects": [{"oid": "d" * 64, "size": 1}]}
        assert hub.call("POST", "/lab/guarded.git/info/lfs/objects/batch", batch, user=user)[0] == expected
    # an LFS PUT needs the link's signature (or a write token): forged or replayed for another object, 401
    content = b"z" * 100
    oid = hashlib.sha256(content).hexdigest()
    assert hub.call("PUT", f"/lab/guarded.git/info/lfs/objects/{oid}?size=100", content)[0] == 401
    assert hub.call("PUT", f"/lab/guarded.git/info/lfs/objects/{oid}?size=100&sig=9999999999.00", content)[0] == 401
    status, _, data = hub.call("POST", "/bob/own.git/info/lfs/objects/batch",
                               {"operation": "upload", "objects": [{"oid": oid, "size": 100}]}, user="bob")
    signature = json.loads(data)["objects"][0]["actions"]["upload"]["href"].rsplit("sig=", 1)[1]
    assert hub.call("PUT", f"/lab/guarded.git/info/lfs/objects/{oid}?size=100&sig={signature}", content)[0] == 401
    assert hub.head("lab/guarded") == head and hub.head("lab/guarded", user="bob") == head
    assert not (hub.root / "repos" / "models" / "lab" / "other").exists()


def test_private_repositories_are_invisible_to_non_members_on_every_route(hub, watched):
    assert hub.create("lab/secret", private=True) == 200
    content = os.urandom(5000)
    oid = hub.upload_lfs("lab/secret", content)
    assert hub.commit("lab/secret", [_file_op("notes.txt", b"private"), {"key": "lfsFile", "value": {
        "path": "w.bin", "algo": "sha256", "oid": oid, "size": len(content)}}])[0] == 200
    sha = hub.head("lab/secret")
    reads = [("GET", "/api/models/lab/secret", None), ("GET", "/api/models/lab/secret/revision/main", None),
             ("GET", f"/api/models/lab/secret/revision/{sha}", None), ("GET", "/api/models/lab/secret/tree/main", None),
             ("POST", "/api/models/lab/secret/paths-info/main", {"paths": ["notes.txt"]}),
             ("GET", "/api/models/lab/secret/refs", None), ("GET", "/api/models/lab/secret/commits/main", None),
             ("GET", "/lab/secret/resolve/main/notes.txt", None), ("HEAD", "/lab/secret/resolve/main/w.bin", None),
             ("GET", f"/lab/secret.git/info/lfs/objects/{oid}", None),
             ("POST", "/lab/secret.git/info/lfs/objects/batch",
              {"operation": "download", "objects": [{"oid": oid, "size": len(content)}]})]
    for user in (None, "bob"):
        for method, url, body in reads:
            status, headers, data = hub.call(method, url, body, user=user)
            assert status == 404 and headers.get("x-error-code") == "RepoNotFound", (user, url, status)
            assert content not in data and b"private" not in data
        for method, url, body in (("POST", "/api/models/lab/secret/commit/main", None),
                                  ("POST", "/api/models/lab/secret/branch/x", {}),
                                  ("DELETE", "/api/repos/delete", {"name": "secret", "organization": "lab"})):
            assert hub.call(method, url, body, user=user)[0] == 404, (user, url)
        status, _, data = hub.call("GET", "/api/models?author=lab", user=user)
        assert status == 200 and "lab/secret" not in [r["id"] for r in json.loads(data)]
    for method, url, body in reads:  # carol: a read member of lab
        assert hub.call(method, url, body, user="carol")[0] == 200, url
    assert hub.call("GET", "/lab/secret/resolve/main/w.bin", user="carol")[2] == content
    assert hub.commit("lab/secret", [_file_op("x.txt", b"x")], user="carol")[0] == 403


def test_lfs_objects_are_reachable_only_through_a_repository_that_holds_them(hub, watched):
    content = os.urandom(4000)
    oid = hub.lfs_repo("lab/holder", content, private=True)
    assert hub.create("bob/thief", user="bob") == 200
    assert hub.call("GET", f"/bob/thief.git/info/lfs/objects/{oid}", user="bob")[0] == 404
    status, _, data = hub.call("POST", "/bob/thief.git/info/lfs/objects/batch",
                               {"operation": "download", "objects": [{"oid": oid, "size": len(content)}]}, user="bob")
    assert status == 200 and json.loads(data)["objects"][0]["error"]["code"] == 404
    # knowing oid and size is not enough to commit the object: it must be uploaded to this repository
    status, answer = hub.commit("bob/thief", [{"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256",
                                                                          "oid": oid, "size": len(content)}}], user="bob")
    assert status == 422, answer
    status, _, data = hub.call("POST", "/bob/thief.git/info/lfs/objects/batch",
                               {"operation": "upload", "objects": [{"oid": oid, "size": len(content)}]}, user="bob")
    assert "upload" in json.loads(data)["objects"][0]["actions"]  # asked for the bytes, not told "already there"
    assert hub.call("GET", "/bob/thief/resolve/main/w.bin", user="bob")[0] == 404


def test_a_copy_without_size_is_completed_from_the_stored_object(hub, watched):
    assert hub.create("lab/copy") == 200
    content = os.urandom(2500)
    oid = hub.upload_lfs("lab/copy", content)
    status, _ = hub.commit("lab/copy", [{"key": "lfsFile", "value": {"path": "a.bin", "algo": "sha256", "oid": oid}}])
    assert status == 200
    status, _, data = hub.call("GET", "/api/models/lab/copy?blobs=true")
    assert status == 200
    sizes = {s["rfilename"]: s["size"] for s in json.loads(data)["siblings"]}
    assert sizes["a.bin"] == 2500
    assert hub.call("GET", "/lab/copy/resolve/main/a.bin")[2] == content
    status, _ = hub.commit("lab/copy", [{"key": "lfsFile", "value": {"path": "b.bin", "algo": "sha256",
                                                                      "oid": "e" * 64}}])
    assert status == 422
    assert hub.call("GET", "/api/models/lab/copy")[0] == 200


# -- malformed requests ------------------------------------------------------------------------------------------
def test_malformed_bodies_answer_400_with_json(hub, watched):
    assert hub.create("lab/malformed") == 200
    head = hub.head("lab/malformed")
    json_routes = [("POST", "/api/repos/create"), ("POST", "/api/models/lab/malformed/preupload/main"),
                   ("POST", "/lab/malformed.git/info/lfs/objects/batch"), ("POST", "/api/validate-yaml"),
                   ("POST", "/api/models/lab/malformed/paths-info/main"), ("POST", "/api/models/lab/malformed/tag/main"),
                   ("PUT", "/api/models/lab/malformed/settings")]
    bodies = [b"{not json", b"\xff\xfe\x00garbage", b"[1, 2]", b'"text"', b"{\"a\": 1}{"]
    for method, url in json_routes:
        for body in bodies:
            status, headers, data = hub.call(method, url, body, user="alice",
                                             headers={"Content-Type": "application/json"})
            assert status == 400 and headers["content-type"] == "application/json", (url, body, status, data)
            assert "error" in json.loads(data)
    wrong_types = [("/api/repos/create", {"name": 5}), ("/api/repos/create", {"name": "x", "private": "yes"}),
                   ("/api/repos/create", {"name": "x", "organization": ["lab"]}),
                   ("/api/repos/create", {"name": "x", "type": "weights"}),
                   ("/api/models/lab/malformed/preupload/main", {"files": "x"}),
                   ("/api/models/lab/malformed/preupload/main", {"files": [{"path": "a", "size": -1}]}),
                   ("/api/models/lab/malformed/preupload/main", {"files": [{"path": "a", "size": True}]}),
                   ("/api/models/lab/malformed/preupload/main", {"files": [{"path": "a", "sample": "%%"}]}),
                   ("/lab/malformed.git/info/lfs/objects/batch", {"operation": "upload", "objects": 5}),
                   ("/lab/malformed.git/info/lfs/objects/batch", {"operation": "steal"}),
                   ("/api/models/lab/malformed/paths-info/main", {"paths": 5}),
                   ("/api/models/lab/malformed/tag/main", {"tag": 5}),
                   ("/api/validate-yaml", {"content": "x", "repoType": "weights"})]
    for url, body in wrong_types:
        status, _, data = hub.call("POST", url, body, user="alice")
        assert status == 400, (url, body, status, data)
    ndjson = [b'{"key": "header", "value": {"summary": "x"}}\n{broken',
              b'{"key": "header", "value": {"summary": "x"}}\n\xff\xfe',
              b'{"key": "file", "value": {"path": "a", "content": "x"}}',  # no header line
              b'{"key": "header", "value": "not an object"}',
              b'{"key": "header", "value": {"summary": "x"}}\n{"key": "file", "value": {"path": "a", "content": "!!!!"}}',
              b'{"key": "header", "value": {"summary": "x"}}\n{"key": "file", "value": 5}',
              b'{"key": "header", "value": {"summary": "x"}}\n{"key": "unknown", "value": {"path": "a"}}',
              b'{"key": "header", "value": {"summary": "x"}}\n{"key": "file", "value": {"path": "a", "content": "'
              + b"A" * 100_000 + b'\\n"}}',
              b'{"key": "header", "value": {"summary": "' + b"x" * 100_000 + b'"}}',
              b'{"key": "header", "value": {"summary": "x"}}\n["a"]', b'{"key": "header", "value": {"summary": "x"']
    for body in ndjson:
        status, _, data = hub.call("POST", "/api/models/lab/malformed/commit/main", body, user="alice")
        assert status in (400, 413), (body[:80], status, data)
        assert "error" in json.loads(data)
    assert hub.head("lab/malformed") == head
    assert not list((hub.root / "tmp").iterdir())


def test_bad_framing_answers_400_and_never_smuggles_a_second_request(hub, watched):
    token = hub.tokens["alice"].encode()
    smuggled = b"GET /api/whoami-v2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + b"\r\n\r\n"
    requests = [
        b"POST /api/validate-yaml HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
        b"POST /api/validate-yaml HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}",
        b"POST /api/validate-yaml HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}",
        b"POST /api/validate-yaml HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
        b"0\r\n\r\n" + smuggled,
        b"POST /api/validate-yaml HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + smuggled,
        b"POST /api/validate-yaml HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + smuggled,
        b"GET /api/models HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n" + smuggled,
        b"GET /api/models HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n" + smuggled,
        b"GET /api/models HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 50,  # TLS spoken to plain HTTP
    ]
    for request in requests:
        raw = _raw(hub.port, request)
        statuses = raw.count(b"HTTP/1.1 ")
        assert statuses <= 1 and b'"name": "alice"' not in raw, (request[:80], raw[:300])
        assert _status(raw) in (400, 413, 431, 501) or raw == b"", (request[:80], raw[:300])
        if _status(raw) == 400:
            assert b"application/json" in raw.split(b"\r\n\r\n")[0].lower(), raw[:300]
    assert hub.call("GET", "/api/models")[0] == 200  # and the server is fine


# -- limits --------------------------------------------------------------------------------------------------
def test_oversized_requests_are_refused_before_they_are_read(hub, watched):
    assert hub.create("lab/limits") == 200
    started = time.monotonic()
    raw = _raw(hub.port, b"PUT /lab/limits.git/info/lfs/objects/" + b"a" * 64 + b"?size=1 HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 99999999999\r\n\r\n" + b"x" * 1000)
    assert _status(raw) == 413 and time.monotonic() - started < 5
    status, _, _ = hub.call("POST", "/api/validate-yaml", b'{"content": "' + b"x" * (100 << 10) + b'"}')
    assert status == 413
    content = b"q" * (5 << 20)  # over max_file_bytes (4 MiB)
    oid = hashlib.sha256(content).hexdigest()
    status, _, data = hub.call("POST", "/lab/limits.git/info/lfs/objects/batch",
                               {"operation": "upload", "objects": [{"oid": oid, "size": len(content)}]}, user="alice")
    assert status == 200 and json.loads(data)["objects"][0]["error"]["code"] == 413
    raw = _raw(hub.port, f"PUT /lab/limits.git/info/lfs/objects/{oid}?size={len(content)} HTTP/1.1\r\nHost: x\r\n"
                         f"Authorization: Bearer {hub.tokens['alice']}\r\nContent-Length: {len(content)}\r\n\r\n"
                         .encode() + content[:1000])
    assert _status(raw) == 413
    status, _ = hub.commit("lab/limits", [_file_op("big.txt", content)])  # inline, 6.7 MB of base64
    assert status == 413
    # a body longer than announced in ?size= is cut off as soon as it passes it
    small = b"s" * 1000
    status, _, _ = hub.call("PUT", f"/lab/limits.git/info/lfs/objects/{hashlib.sha256(small).hexdigest()}?size=10",
                            small, user="alice")
    assert status == 400
    assert not list((hub.root / "tmp").iterdir())


def test_slow_and_idle_clients_are_cut_off_without_tying_up_the_server(hub, watched):
    # a client trickling its headers is dropped after header_timeout (1 s)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as sock:
        sock.sendall(b"GET /api/models HTTP/1.1\r\nHost: x\r\n")
        closed_after = None
        for _ in range(40):  # at most ~8 s of trickling
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                sock.settimeout(0.2)
                if sock.recv(1) == b"":
                    closed_after = time.monotonic() - started
                    break
            except socket.timeout:
                continue
            except OSError:
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None and closed_after < 5, closed_after
    # a body that stalls is answered 408 and the connection closed after idle_timeout (1 s)
    with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as sock:
        sock.sendall(b"POST /api/validate-yaml HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"content")
        started = time.monotonic()
        answer = sock.recv(65536)
        assert _status(answer) == 408 and time.monotonic() - started < 5, answer[:200]
    # idle connections beyond max_connections (16) get 503, and the server serves again once they go
    idle = [socket.create_connection(("127.0.0.1", hub.port), timeout=10) for _ in range(20)]
    try:
        statuses = []
        for sock in idle[-4:]:
            sock.sendall(b"GET /api/models HTTP/1.1\r\nHost: x\r\n\r\n")
            statuses.append(_status(sock.recv(65536)))
        assert 503 in statuses, statuses
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and hub.call("GET", "/api/models")[0] != 200:
        time.sleep(0.1)
    assert hub.call("GET", "/api/models")[0] == 200


# -- races and crashes -------------------------------------------------------------------------------------------
def test_create_delete_and_commit_races_never_answer_500(hub, watched):
    statuses: list[int] = []
    errors: list[bytes] = []
    deadline = time.monotonic() + 20

    def worker(kind: str) -> None:
        for i in range(25):
            if time.monotonic() > deadline:
                return
            if kind == "create":
                answers = [hub.call("POST", "/api/repos/create", {"name": "racy", "organization": "lab"}, user="alice")]
            elif kind == "delete":
                answers = [hub.call("DELETE", "/api/repos/delete", {"name": "racy", "organization": "lab"},
                                    user="alice")]
            else:
                body = json.dumps({"key": "header", "value": {"summary": "x"}}) + "\n" + json.dumps(
                    _file_op(f"f{i}.txt", os.urandom(50)))
                answers = [hub.call("POST", "/api/models/lab/racy/commit/main", body.encode(), user="alice"),
                           hub.call("GET", "/api/models/lab/racy/tree/main")]
            statuses.extend(status for status, _, _ in answers)
            errors.extend(data for status, _, data in answers if status >= 500)

    threads = [threading.Thread(target=worker, args=(kind,)) for kind in ("create", "create", "delete", "commit")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses and set(statuses) <= {200, 404, 409}, (sorted(set(statuses)), errors[:3])
    assert not list((hub.root / "tmp").iterdir())
    if hub.call("GET", "/api/models/lab/racy")[0] == 200:
        assert hub.call("GET", "/api/models/lab/racy/tree/main")[0] == 200
    assert hub.server.app.storage.verify() == []


def test_concurrent_commits_all_land_in_order(hub, watched):
    assert hub.create("lab/busy") == 200
    results: list[int] = []

    def worker(n: int) -> None:
        for i in range(5):
            results.append(hub.commit("lab/busy", [_file_op(f"w{n}/{i}.txt", os.urandom(100))], summary=f"{n}-{i}")[0])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [200] * 20
    status, _, data = hub.call("GET", "/api/models/lab/busy/commits/main")
    assert status == 200 and len(json.loads(data)) == 21
    status, _, data = hub.call("GET", "/api/models/lab/busy/tree/main?recursive=true")
    assert len([e for e in json.loads(data) if e["type"] == "file"]) == 21


def test_a_client_killed_mid_commit_leaves_nothing(hub, watched):
    assert hub.create("lab/cut") == 200
    head = hub.head("lab/cut")
    body = ('{"key": "header", "value": {"summary": "cut"}}\n{"key": "file", "value": {"path": "big.txt", '
            '"encoding": "base64", "content": "').encode() + base64.b64encode(os.urandom(600_000))
    with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as sock:
        sock.sendall(f"POST /api/models/lab/cut/commit/main HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     f"{hub.tokens['alice']}\r\nContent-Length: {len(body) + 5000}\r\n\r\n".encode() + body)
        time.sleep(0.3)
    deadline = time.monotonic() + 10  # the server notices the disconnect and drops the spooled content
    while time.monotonic() < deadline and list((hub.root / "tmp").iterdir()):
        time.sleep(0.1)
    assert not list((hub.root / "tmp").iterdir())
    assert hub.head("lab/cut") == head


def test_server_killed_mid_commit_restarts_with_a_sound_store(tmp_path):
    root, port = tmp_path / "root", _free_port()
    token = Auth(root).create_token("alice", "write")
    server = _serve_cli(root, port)  # hf-mae hub serve, in a process of its own
    try:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        connection.request("POST", "/api/repos/create", json.dumps({"name": "crash", "organization": "alice"}), headers)
        assert connection.getresponse().status == 200
        connection.close()
        body = ('{"key": "header", "value": {"summary": "x"}}\n{"key": "file", "value": {"path": "a.txt", '
                '"encoding": "base64", "content": "').encode() + base64.b64encode(os.urandom(2_000_000))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"POST /api/models/alice/crash/commit/main HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                         f"{token}\r\nContent-Length: {len(body) + 100}\r\n\r\n".encode() + body)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any((root / "tmp").iterdir()):
                time.sleep(0.02)
            os.kill(server.pid, signal.SIGKILL)  # mid-commit: the content is being spooled to tmp/
        server.wait(timeout=10)
    finally:
        server.kill()
        server.wait(timeout=10)
    restarted = start_server(str(root))
    try:
        assert not list((root / "tmp").iterdir())
        store = restarted.app.storage
        assert store.verify() == [] and store.list_repos("model") == ["alice/crash"]
        assert [c.title for c in store.history("model", "alice/crash", "main")] == ["initial commit"]
    finally:
        restarted.shutdown()
        restarted.server_close()


# -- serving and the command line ------------------------------------------------------------------------------
def test_refuses_non_loopback_without_tokens_and_names_the_flag(tmp_path, capsys):
    with pytest.raises(ValueError, match="--allow-open-network"):
        make_server(str(tmp_path / "root"), host="0.0.0.0", port=0)  # refused before anything is bound
    assert hub_main(["serve", "--root", str(tmp_path / "root"), "--host", "0.0.0.0", "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--allow-open-network" in error and "token create" in error


def test_token_command_line(tmp_path, capsys):
    root = str(tmp_path / "root")
    assert hub_main(["token", "create", "dana", "--role", "read", "--root", root]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("hf_mae_") and len(token) > 40
    assert Auth(root).identify(f"Bearer {token}").role == "read"
    assert hub_main(["token", "list", "--root", root]) == 0
    listing = capsys.readouterr().out
    assert "dana" in listing and token not in listing
    token_id = listing.split()[0]
    assert hub_main(["token", "create", "../x", "--role", "read", "--root", root]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert hub_main(["token", "revoke", token_id, "--root", root]) == 0
    assert not Auth(root).enabled


def test_server_modules_import_no_torch():
    """The hub's own modules pull no torch (hf_mae/__init__ is stubbed: making it lazy is not this module's)."""
    code = ("import sys, types; package = types.ModuleType('hf_mae'); package.__path__ = [sys.argv[1]]; "
            "sys.modules['hf_mae'] = package; import hf_mae.hub.server; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code, str(ROOT / "hf_mae")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_server_starts_without_importing_torch():
    result = subprocess.run([sys.executable, "-c", "import hf_mae.hub.server, sys; assert 'torch' not in sys.modules"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]


def test_start_up_removes_what_deleted_repositories_and_cut_off_commits_left(tmp_path):
    from dulwich.objects import Blob
    from dulwich.repo import Repo

    from hf_mae.hub.storage import HubStorage

    store = HubStorage(tmp_path / "root")
    for repo_id in ("lab/kept", "lab/gone"):
        assert store.create_repo("model", repo_id)
    content = os.urandom(1000)
    sha256 = hashlib.sha256(content).hexdigest()
    store.receive_lfs(sha256, len(content), [content])
    for repo_id in ("lab/kept", "lab/gone"):
        store.grant_lfs("model", repo_id, sha256)
    orphan = os.urandom(300)
    store.receive_lfs(hashlib.sha256(orphan).hexdigest(), len(orphan), [orphan])
    store.grant_lfs("model", "lab/gone", hashlib.sha256(orphan).hexdigest())
    store.delete_repo("model", "lab/gone")
    loose = Blob.from_string(b"written by a commit whose ref never moved")  # a server killed mid-commit
    Repo(str(store.repo_dir("model", "lab/kept"))).object_store.add_object(loose)
    (store.tmp / "upload.part").write_bytes(b"half")
    restarted = HubStorage(tmp_path / "root")  # collects the garbage
    assert restarted.collect_garbage() == {"temporary": 0, "objects": 0, "unfinished repositories": 0,
                                           "lfs objects": 0}  # a second pass finds nothing left
    assert restarted.has_lfs(sha256) and restarted.repo_has_lfs("model", "lab/kept", sha256)
    assert not restarted.has_lfs(hashlib.sha256(orphan).hexdigest())
    assert loose.id not in Repo(str(restarted.repo_dir("model", "lab/kept"))).object_store
    assert not list(restarted.tmp.iterdir()) and restarted.verify() == []


def test_a_repository_deleted_while_a_read_runs_answers_404(hub, watched, monkeypatch):
    """The race of the test above, made deterministic: the repository is deleted after a reader opened it and
    before it reads the commit's tree (git objects vanish under the reader); every read route answers 404."""
    storage = hub.server.app.storage
    original, armed = type(storage)._files, []

    def delete_then_read(self, repo, oid, tree):
        if armed:
            armed.clear()
            self.delete_repo("model", "lab/gone")
        return original(self, repo, oid, tree)

    monkeypatch.setattr(type(storage), "_files", delete_then_read)
    for path in ("/api/models/lab/gone/tree/main", "/api/models/lab/gone", "/api/models/lab/gone/commits/main",
                 "/lab/gone/resolve/main/a.txt"):
        assert hub.create("lab/gone") == 200
        assert hub.commit("lab/gone", [_file_op("a.txt", b"hello")])[0] == 200
        armed.append(True)
        status, headers, data = hub.call("GET", path)
        assert not armed, f"{path} did not read a commit's files"
        assert status == 404 and headers.get("x-error-code") == "RepoNotFound", (path, status, data[:200])
