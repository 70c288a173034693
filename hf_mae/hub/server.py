"""A local Hub: the HTTP calls ``huggingface_hub`` and ``transformers`` make, served from a folder on disk.

    hf-mae hub serve --port 8080 --root /srv/hub        # then, on the clients:
    export HF_ENDPOINT=http://HOST:8080 HF_HUB_DISABLE_XET=1

For a lab without internet: push with ``model.push_to_hub("lab/model")``, ``Trainer(push_to_hub=True)`` or
``hf-mae push``, load with ``AutoModel.from_pretrained("lab/model")``. Repositories, branches, tags and files
persist in ``--root`` across restarts (see ``storage.py`` for the layout and why a push cut off midway is
never visible).

Access (see ``auth.py``): with no token created the server is open to anyone who reaches it, and so only
listens on loopback unless ``--allow-open-network`` is given. ``hf-mae hub token create USER --role write``
makes a token (clients set ``HF_TOKEN``); from then on anonymous clients only read public repositories,
private repositories answer 404 to non-members everywhere, and writes need a write token for the namespace.

Large files travel as in git LFS: the client asks ``preupload`` which files are large, posts their sha256
to the LFS ``batch`` endpoint, PUTs the bytes to the signed link it gets back (the server checks size and
sha256 as they arrive), then posts the NDJSON commit. The Xet protocol is not spoken: clients with
``hf_xet`` installed (huggingface_hub installs it) must set ``HF_HUB_DISABLE_XET=1``, or the server can be
started with ``--inline-uploads`` so that every file is sent inside the commit (streamed to disk as well).
Otherwise their pushes of large files fail with "501 Not Implemented ... xet-write-token" (hf_xet does not
show the server's message; the server's log does).

Repositories are bare git repositories (``storage.py``): ``git clone http://HOST:PORT/namespace/name`` works
through git's smart HTTP protocol (``git_http.py``), ``git lfs`` fetching large files from the LFS routes.

The HTTP stack is uvicorn with the limits of ``transport.Limits``; ``routes.py`` and ``uploads.py`` hold the
Hub's routes; this module the ASGI app, starting a server, and the ``hf-mae hub`` command line.

Example (in Python):
    >>> server = start_server("/tmp/hub-root", port=0)   # doctest: +SKIP
    >>> server.url                                        # doctest: +SKIP
    'http://127.0.0.1:40123'
    >>> server.shutdown()                                 # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from . import validation as validate
from .auth import Auth
from .errors import HubError
from .routes import Call
from .storage import HubStorage
from .transport import HubServer, Limits


class HubApp:
    """The ASGI application: each request is handled by a ``Call`` in a worker thread (the store is plain
    file I/O); bodies stream in through ``BodyReader``."""

    def __init__(self, root: str, *, user: str = "user", inline_uploads: bool = False,
                 limits: Limits | None = None, verbose: bool = False):
        self.storage = HubStorage(root)
        self.auth = Auth(self.storage.root, user)
        self.user, self.inline_uploads, self.verbose = validate.namespace(user, "--user"), inline_uploads, verbose
        self.limits = limits or Limits()
        self._threads: anyio.CapacityLimiter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if self._threads is None:
            self._threads = anyio.CapacityLimiter(self.limits.max_connections)
        request = Request(scope, receive)
        call = Call(self, request)
        response = await anyio.to_thread.run_sync(call.handle, limiter=self._threads)
        await response(scope, receive, send)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def start_server(root: str, host: str = "127.0.0.1", port: int = 0, *, user: str = "user",
                 inline_uploads: bool = False, verbose: bool = False, limits: Limits | None = None,
                 allow_open_network: bool = False) -> HubServer:
    """Start a server in a background thread (``port=0`` picks a free port); stop it with ``.shutdown()``."""
    return make_server(root, host, port, user=user, inline_uploads=inline_uploads, verbose=verbose,
                       limits=limits, allow_open_network=allow_open_network).start()


def make_server(root: str, host: str = "127.0.0.1", port: int = 0, *, user: str = "user",
                inline_uploads: bool = False, verbose: bool = False, limits: Limits | None = None,
                allow_open_network: bool = False) -> HubServer:
    """The server, not started yet. Refuses (``ValueError``) to listen beyond loopback with no token
    configured, unless ``allow_open_network``."""
    limits = limits or Limits()
    app = HubApp(root, user=user, inline_uploads=inline_uploads, limits=limits, verbose=verbose)
    if not _is_loopback(host) and not app.auth.enabled and not allow_open_network:
        raise ValueError(f"Refusing to serve {host} with no token configured: anyone reaching it could write and "
                         f"delete every repository. Create one with `hf-mae hub token create USER --role write "
                         f"--root {app.storage.root}`, or pass --allow-open-network to serve it open anyway.")
    return HubServer(app, host, port, limits, verbose=verbose)


def _serve(args: argparse.Namespace) -> int:
    limits = Limits(max_body_bytes=args.max_body_mb << 20, max_file_bytes=args.max_file_mb << 20,
                    header_timeout=args.header_timeout, idle_timeout=args.idle_timeout,
                    max_connections=args.max_connections)
    server = make_server(args.root, args.host, args.port, user=args.user, inline_uploads=args.inline_uploads,
                         verbose=args.verbose, limits=limits, allow_open_network=args.allow_open_network)
    access = "tokens required for writes" if server.app.auth.enabled else "open: no token configured"
    print(f"hf-mae hub: serving {server.app.storage.root} at {server.url} ({access}; clients: export "
          f"HF_ENDPOINT={server.url} HF_HUB_DISABLE_XET=1)", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _token(args: argparse.Namespace) -> int:
    auth = Auth(args.root)  # not HubStorage: its start-up clean-up must not run beside a live server
    if args.token_command == "create":
        token = auth.create_token(args.user, args.role)
        print(token)
        print(f"(a {args.role} token for {args.user}; shown once, stored hashed in {auth.folder}/tokens.json; "
              "clients: export HF_TOKEN=...)", file=sys.stderr)
    elif args.token_command == "list":
        for info in auth.list_tokens():
            print(f"{info['id']}  {info['user']:20} {info['role']:5}  {info['created']}")
    elif not auth.revoke_token(args.id):
        print(f"hf-mae hub token revoke: no token whose id starts with {args.id!r} (see `hf-mae hub token list`)",
              file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``hf-mae hub serve --port P --root DIR`` and ``hf-mae hub token create USER --role read|write``."""
    parser = argparse.ArgumentParser(prog="hf-mae hub", description="A local Hub-compatible server.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve repositories stored in --root over HTTP")
    serve.add_argument("--root", required=True, help="folder holding the repositories (created if missing)")
    serve.add_argument("--port", type=int, default=8080, help="TCP port (0 = any free port)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (0.0.0.0 for the whole network: needs a token, see `token`)")
    serve.add_argument("--user", default="user", help="namespace of repositories created without one, no token set")
    serve.add_argument("--inline-uploads", action="store_true",
                       help="have clients send every file inside the commit (works with hf_xet clients too)")
    serve.add_argument("--allow-open-network", action="store_true",
                       help="serve a non-loopback address with no token configured (anyone may write)")
    defaults = Limits()
    serve.add_argument("--max-body-mb", type=int, default=defaults.max_body_bytes >> 20, help="largest request body")
    serve.add_argument("--max-file-mb", type=int, default=defaults.max_file_bytes >> 20, help="largest file uploaded")
    serve.add_argument("--header-timeout", type=float, default=defaults.header_timeout,
                       help="seconds a client has to send a request's headers")
    serve.add_argument("--idle-timeout", type=float, default=defaults.idle_timeout,
                       help="seconds an idle connection, or a stalled request body, is kept")
    serve.add_argument("--max-connections", type=int, default=defaults.max_connections,
                       help="connections served at once (beyond: 503)")
    serve.add_argument("--verbose", action="store_true", help="log every request")
    token = commands.add_parser("token", help="create, list or revoke access tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="create a token for USER and print it (once)")
    create.add_argument("user")
    create.add_argument("--role", choices=("read", "write"), required=True)
    create.add_argument("--root", required=True)
    listing = token_commands.add_parser("list", help="the tokens' ids, users and roles")
    listing.add_argument("--root", required=True)
    revoke = token_commands.add_parser("revoke", help="revoke a token by the id `list` shows")
    revoke.add_argument("id")
    revoke.add_argument("--root", required=True)
    args = parser.parse_args(argv)
    try:
        return _serve(args) if args.command == "serve" else _token(args)
    except (ValueError, OSError, HubError) as error:  # user errors: one line, no traceback
        print(f"hf-mae hub {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
