"""Errors the local Hub answers to clients: an HTTP status, the ``X-Error-Code`` that ``huggingface_hub``
dispatches on (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``), and a message.

Example:
    >>> error = repo_not_found("lab/missing")
    >>> error.status, error.code
    (404, 'RepoNotFound')
"""

from __future__ import annotations


class HubError(Exception):
    """An error answered to the client: HTTP status, the ``X-Error-Code`` the client dispatches on, a message."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def repo_not_found(repo_id: str) -> HubError:
    """404 ``RepoNotFound``: also what a private repository looks like to a non-member (as on the Hub)."""
    return HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")


def revision_not_found(repo_id: str, revision: str) -> HubError:
    return HubError(404, f"Invalid rev id: {revision} (no branch, tag or commit of that name in {repo_id})",
                    "RevisionNotFound")


def entry_not_found(path: str, revision: str, commit: str | None = None) -> HubError:
    # X-Repo-Commit lets the client remember that the file does not exist at this commit
    return HubError(404, f"Entry not found: {path!r} does not exist at revision {revision}", "EntryNotFound",
                    {"X-Repo-Commit": commit} if commit else None)


def bad_request(parameter: str, value: object, expected: str) -> HubError:
    """400 naming the parameter, the value received (shortened) and what was expected."""
    shown = repr(value)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    return HubError(400, f"Invalid {parameter} {shown}: expected {expected}.")
