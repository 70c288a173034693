"""One check per kind of identifier a client sends, applied once where a request enters the server.

Every function returns the value it accepted (possibly normalised) or raises a 400 ``HubError`` naming the
parameter, the value and what was expected. Nothing that fails here reaches the store or a response header.

Example:
    >>> repo_id("lab/chemomae")
    'lab/chemomae'
    >>> file_path("weights/model.safetensors")
    'weights/model.safetensors'
    >>> lfs_oid("ab" * 32) == "ab" * 32
    True
    >>> ref_name("v1.0", "tag")
    'v1.0'
    >>> try:
    ...     file_path("../etc/passwd")
    ... except HubError as error:
    ...     print(error.status)
    400
"""

from __future__ import annotations

import re
from urllib.parse import quote

from .errors import HubError, bad_request

REPO_TYPES = ("model", "dataset", "space")
MAX_PATH_BYTES = 1024  # a file path inside a repository, UTF-8
MAX_PATH_PART_BYTES = 255  # one folder or file name (most file systems' limit)
MAX_REF_BYTES = 200
MAX_HEADER_VALUE = 1024

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_HEX_NAME = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def repo_type(value: object) -> str:
    """``model``, ``dataset`` or ``space``."""
    if value not in REPO_TYPES:
        raise bad_request("repo type", value, f"one of {', '.join(REPO_TYPES)}")
    return str(value)


def namespace(value: object, parameter: str = "namespace") -> str:
    """A user or organisation name: 1-96 letters, digits, ``-``, ``_``, ``.``; no ``..``/``--``, no leading
    or trailing ``.``/``-``."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value or "--" in value \
            or value.endswith((".", "-")):
        raise bad_request(parameter, value, "1-96 letters, digits, '-', '_' or '.', starting with a letter or "
                                            "digit, without '--' or '..', not ending with '.' or '-'")
    return value


def repo_id(value: object) -> str:
    """``namespace/name``, each part as :func:`namespace` says."""
    if not isinstance(value, str) or value.count("/") != 1:
        raise bad_request("repository id", value, "'namespace/name'")
    owner, name = value.split("/")
    namespace(owner, "repository namespace")
    namespace(name, "repository name")
    return value


def file_path(value: object, parameter: str = "path") -> str:
    """A relative file path inside a repository: no empty, ``.`` or ``..`` part, no leading ``/``, no
    backslash, no control character, no ``.git`` folder, at most 1024 bytes (255 per part)."""
    if not isinstance(value, str) or not value:
        raise bad_request(parameter, value, "a non-empty relative path")
    parts = value.split("/")
    problem = None
    if value.startswith("/"):
        problem = "a relative path (no leading '/')"
    elif "\\" in value or _CONTROL.search(value):
        problem = "a path without backslashes or control characters"
    elif any(part in ("", ".", "..") for part in parts):
        problem = "a path without empty, '.' or '..' parts"
    elif any(part.lower() == ".git" for part in parts):
        problem = "a path outside any '.git' folder"
    else:
        try:
            encoded = [part.encode("utf-8") for part in parts]
        except UnicodeEncodeError:
            encoded = None
        if encoded is None:
            problem = "valid Unicode text"
        elif len(value.encode("utf-8")) > MAX_PATH_BYTES or any(len(p) > MAX_PATH_PART_BYTES for p in encoded):
            problem = f"at most {MAX_PATH_BYTES} bytes in all and {MAX_PATH_PART_BYTES} per part"
    if problem:
        raise bad_request(parameter, value, problem)
    return value


def folder_path(value: object, parameter: str = "folder") -> str:
    """A folder inside a repository, ``""`` for the root; otherwise as :func:`file_path`."""
    if value in ("", "/"):
        return ""
    if not isinstance(value, str):
        raise bad_request(parameter, value, "a relative folder path")
    return file_path(value.strip("/") if value.endswith("/") else value, parameter)


def ref_name(value: object, kind: str = "branch") -> str:
    """A branch or tag name by git's ref rules (``git check-ref-format``), and never a name that could be
    mistaken for something else: not ``HEAD``, not 40 or 64 hex digits (a commit id), not ``refs/...``."""
    parameter = f"{kind} name"
    if not isinstance(value, str) or not value:
        raise bad_request(parameter, value, "a non-empty name")
    components = value.split("/")
    problem = None
    if len(value.encode("utf-8", "surrogatepass")) > MAX_REF_BYTES:
        problem = f"at most {MAX_REF_BYTES} bytes"
    elif _REF_FORBIDDEN.search(value):
        problem = "no spaces, control characters or any of ~ ^ : ? * [ \\"
    elif ".." in value or "@{" in value or value == "@":
        problem = "no '..', no '@{', not '@'"
    elif any(not part or part.startswith(".") or part.endswith(".lock") for part in components):
        problem = "no empty component, none starting with '.' or ending with '.lock'"
    elif value.endswith(".") or value.startswith("-"):
        problem = "not ending with '.', not starting with '-'"
    elif value.upper() == "HEAD" or value.startswith("refs/") or _HEX_NAME.fullmatch(value):
        problem = "not HEAD, not a refs/ path and not 40 or 64 hex digits (those name commits)"
    if problem:
        raise bad_request(parameter, value, problem)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request(parameter, value, "valid Unicode text") from None
    return value


def commit_oid(value: object, parameter: str = "commit id") -> str:
    """A git commit id: exactly 40 lowercase hex digits."""
    if not isinstance(value, str) or not _COMMIT.fullmatch(value):
        raise bad_request(parameter, value, "40 lowercase hex digits")
    return value


def revision(value: object) -> str:
    """What a URL may name a revision by: a branch or tag name, ``refs/heads/B``, ``refs/tags/T``,
    ``refs/pr/N`` or a 40-hex commit id."""
    if isinstance(value, str):
        if _COMMIT.fullmatch(value):
            return value
        for prefix, kind in (("refs/heads/", "branch"), ("refs/tags/", "tag")):
            if value.startswith(prefix):
                ref_name(value[len(prefix):], kind)
                return value
        if value.startswith("refs/pr/"):
            pr_number(value[len("refs/pr/"):])
            return value
        try:
            return ref_name(value, "revision")
        except HubError:
            pass
    raise bad_request("revision", value, "a branch or tag name, refs/heads/B, refs/tags/T, refs/pr/N or a "
                                          "40-hex commit id")


def pr_number(value: object) -> int:
    """A pull request number: 1-999999."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6 and int(value) > 0:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1_000_000:
        return value
    raise bad_request("pull request number", value, "an integer from 1 to 999999")


def lfs_oid(value: object, parameter: str = "LFS oid") -> str:
    """An LFS object id: exactly 64 lowercase hex digits (a sha256)."""
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise bad_request(parameter, value, "64 lowercase hex digits (sha256)")
    return value


def size(value: object, parameter: str = "size", maximum: int | None = None) -> int:
    """A byte count: an integer (not a bool), 0 or more, at most ``maximum``."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise bad_request(parameter, value, "a non-negative integer")
    if maximum is not None and value > maximum:
        raise HubError(413, f"{parameter} {value} is over this server's limit of {maximum} bytes.")
    return value


def header_value(text: str) -> str:
    """Text made safe for an HTTP response header: printable ASCII only (anything else percent-encoded),
    at most 1024 characters. Every header built from request data goes through this."""
    safe = quote(text, safe=" !\"#$&'()*+,-./:;<=>?@[]^_`{|}~")
    return safe if len(safe) <= MAX_HEADER_VALUE else safe[: MAX_HEADER_VALUE - 3] + "..."
