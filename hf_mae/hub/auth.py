"""Who may do what on the local Hub: tokens with roles, organisations, and signed upload links.

Files under ``<root>/auth/`` (created on first use, readable by the owner only):

    tokens.json   {sha256 of the token: {"user", "role", "created"}}; the tokens themselves are never stored
    orgs.yaml     organisation -> members, e.g. ``lab: [alice, bob]`` (edited by hand; re-read when it changes)
    secret        the key that signs LFS upload and download links

With no token created the server is *open*: every request acts as the server's ``--user`` with write access
(for one person on one machine; the server then refuses any address but loopback unless told otherwise).
Once a token exists, reads of public repositories may be anonymous, and everything else follows the token:
``read`` tokens read their namespaces' private repositories, ``write`` tokens also create, commit, tag and
delete there. A namespace is the user's own name or an organisation the user is a member of.

Example:
    >>> import tempfile
    >>> auth = Auth(tempfile.mkdtemp())
    >>> token = auth.create_token("alice", "write")
    >>> who = auth.identify(f"Bearer {token}")
    >>> who.user, who.role, who.can_write("alice"), who.can_write("bob")
    ('alice', 'write', True, False)
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import HubError
from .validation import namespace

ROLES = ("read", "write")
TOKEN_PREFIX = "hf_mae_"


@dataclass(frozen=True)
class Identity:
    """The caller of one request: ``user`` is None for anonymous; ``everything`` for the open server."""

    user: str | None
    role: str | None
    orgs: frozenset[str] = field(default_factory=frozenset)
    everything: bool = False

    @property
    def namespaces(self) -> frozenset[str]:
        return self.orgs | {self.user} if self.user else frozenset()

    def is_member(self, owner: str) -> bool:
        return self.everything or owner in self.namespaces

    def can_read(self, owner: str, private: bool) -> bool:
        return not private or self.is_member(owner)

    def can_write(self, owner: str) -> bool:
        return self.everything or (self.role == "write" and owner in self.namespaces)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only, atomically."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


class _Watched:
    """A file parsed again whenever its modification time or size changes."""

    def __init__(self, path: Path, parse):
        self.path, self.parse, self.stamp, self.value = path, parse, None, parse(None)
        self.lock = threading.Lock()

    def get(self) -> Any:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except FileNotFoundError:
            stamp = None
        with self.lock:
            if stamp != self.stamp:
                self.value = self.parse(self.path.read_bytes() if stamp else None)
                self.stamp = stamp
            return self.value


def _parse_tokens(data: bytes | None) -> dict[str, dict[str, str]]:
    return json.loads(data) if data else {}


def _parse_orgs(data: bytes | None) -> dict[str, frozenset[str]]:
    """``orgs.yaml``: ``{org: [member, ...]}``; a malformed file is an error the operator must fix."""
    if not data:
        return {}
    value = yaml.safe_load(data) or {}
    if not isinstance(value, dict) or not all(isinstance(m, list) for m in value.values()):
        raise ValueError("orgs.yaml must map each organisation to a list of user names, e.g. 'lab: [alice, bob]'")
    return {namespace(org, "organisation"): frozenset(namespace(m, "member") for m in members)
            for org, members in value.items()}


class Auth:
    """Tokens, organisations and link signing, all stored under ``<root>/auth``."""

    def __init__(self, root: str | os.PathLike, user: str = "user"):
        self.folder = Path(root).resolve() / "auth"
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.open_user = namespace(user, "--user")
        self._tokens = _Watched(self.folder / "tokens.json", _parse_tokens)
        self._orgs = _Watched(self.folder / "orgs.yaml", _parse_orgs)
        secret = self.folder / "secret"
        if not secret.is_file():
            try:
                fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(secrets.token_bytes(32))
            except FileExistsError:
                pass  # another process made it first
        self._secret = secret.read_bytes()

    # -- tokens -------------------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """True once any token exists: from then on anonymous clients may only read public repositories."""
        return bool(self._tokens.get())

    def create_token(self, user: str, role: str) -> str:
        """A new token for ``user`` with ``role`` (``read`` or ``write``); only its hash is stored."""
        namespace(user, "user")
        if role not in ROLES:
            raise HubError(400, f"Invalid role {role!r}: expected one of {', '.join(ROLES)}.")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        path = self.folder / "tokens.json"
        with open(self.folder / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            tokens = _parse_tokens(path.read_bytes() if path.is_file() else None)
            tokens[_hash(token)] = {"user": user, "role": role, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                          time.gmtime())}
            _write_private(path, json.dumps(tokens, indent=1, sort_keys=True).encode())
        return token

    def list_tokens(self) -> list[dict[str, str]]:
        """``user``, ``role``, ``created`` and the first 12 hex digits of the hash (to revoke by) per token."""
        return [{"id": digest[:12], **info} for digest, info in sorted(self._tokens.get().items(),
                                                                        key=lambda item: item[1]["created"])]

    def revoke_token(self, token_id: str) -> bool:
        """Remove the token whose hash starts with ``token_id`` (12+ hex digits); False if none does."""
        path = self.folder / "tokens.json"
        with open(self.folder / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            tokens = _parse_tokens(path.read_bytes() if path.is_file() else None)
            doomed = [d for d in tokens if len(token_id) >= 12 and d.startswith(token_id)]
            for digest in doomed:
                del tokens[digest]
            _write_private(path, json.dumps(tokens, indent=1, sort_keys=True).encode())
        return bool(doomed)

    def orgs_of(self, user: str) -> frozenset[str]:
        return frozenset(org for org, members in self._orgs.get().items() if user in members)

    def identify(self, authorization: str | None) -> Identity:
        """The caller named by an ``Authorization: Bearer <token>`` header (or ``Basic`` with the token as
        password, as git sends it); 401 for an unknown token.

        With no token configured (open server) everyone is the server's user with every right."""
        tokens = self._tokens.get()
        if not tokens:
            return Identity(self.open_user, "write", everything=True)
        if not authorization:
            return Identity(None, None)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "basic":  # git: user name and the token as password
            try:
                token = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                token = ""
        info = tokens.get(_hash(token.strip())) if scheme.lower() in ("bearer", "basic") else None
        if info is None:
            raise HubError(401, "Invalid credentials in Authorization header: unknown or revoked token.")
        return Identity(info["user"], info["role"], self.orgs_of(info["user"]))

    # -- signed links (the LFS upload PUT carries no token: the batch answer hands out a signed URL) --------
    def sign(self, *parts: str, lifetime: int = 3600) -> str:
        """``expires.signature`` over ``parts``, valid for ``lifetime`` seconds."""
        expires = str(int(time.time()) + lifetime)
        digest = hmac.new(self._secret, "\n".join((expires, *parts)).encode(), hashlib.sha256).hexdigest()
        return f"{expires}.{digest}"

    def check_signature(self, signature: str, *parts: str) -> bool:
        expires, _, digest = signature.partition(".")
        if not expires.isdigit() or int(expires) < time.time():
            return False
        wanted = hmac.new(self._secret, "\n".join((expires, *parts)).encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(wanted, digest)
