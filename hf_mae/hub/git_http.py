"""git's smart HTTP protocol (clone and fetch) over the store's bare repositories, through dulwich.

``git clone http://HOST/namespace/name`` asks ``GET .../info/refs?service=git-upload-pack`` for the refs,
then ``POST .../git-upload-pack`` with what it wants and gets a pack back; ``git lfs`` then fetches the large
files through the Hub's LFS batch route (``/namespace/name.git/info/lfs/objects/batch``).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from hf_mae.hub.storage import HubStorage
    >>> store = HubStorage(tempfile.mkdtemp())
    >>> _ = store.create_repo("model", "lab/tiny")
    >>> advertise_refs(store.repo_dir("model", "lab/tiny")).startswith(b"001e# service=git-upload-pack")
    True
"""

from __future__ import annotations

import zlib
from io import BytesIO
from pathlib import Path

from dulwich.protocol import ReceivableProtocol
from dulwich.repo import Repo
from dulwich.server import DictBackend, UploadPackHandler

from .errors import HubError


def _handler(git_dir: Path, read, write, *, advertise: bool) -> UploadPackHandler:
    backend = DictBackend({b"/": Repo(str(git_dir))})
    return UploadPackHandler(backend, [b"/"], ReceivableProtocol(read, write), stateless_rpc=True,
                             advertise_refs=advertise)


def advertise_refs(git_dir: Path) -> bytes:
    """The answer to ``GET info/refs?service=git-upload-pack``."""
    out = BytesIO()
    handler = _handler(git_dir, BytesIO().read, out.write, advertise=True)
    handler.proto.write_pkt_line(b"# service=git-upload-pack\n")
    handler.proto.write_pkt_line(None)
    handler.handle()
    return out.getvalue()


def decoded_body(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The request body, gunzipped if git compressed it (bounded: no gzip bomb)."""
    if not encoding:
        return body
    if encoding.lower() not in ("gzip", "x-gzip"):
        raise HubError(415, f"Unsupported Content-Encoding {encoding[:40]!r}: expected gzip.")
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = decompressor.decompress(body, limit + 1)
    except zlib.error as err:
        raise HubError(400, f"Request body is not valid gzip ({err}).") from None
    if len(data) > limit:
        raise HubError(413, f"Decompressed request body is over the limit of {limit} bytes.")
    return data


def upload_pack(git_dir: Path, request: bytes, output: Path) -> Path:
    """Answer a ``git-upload-pack`` request (wants, haves) with a pack, written to ``output``."""
    with open(output, "wb") as handle:
        try:
            _handler(git_dir, BytesIO(request).read, handle.write, advertise=False).handle()
        except Exception as err:  # a malformed negotiation: dulwich raises on what it cannot parse
            raise HubError(400, f"Malformed git-upload-pack request ({type(err).__name__}: {err}).") from None
    return output


__all__ = ["advertise_refs", "decoded_body", "upload_pack"]
