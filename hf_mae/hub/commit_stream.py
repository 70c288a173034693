"""Reading a commit's NDJSON body as it arrives, with file contents going straight to disk.

``huggingface_hub`` sends one JSON object per line; a ``file`` line carries the whole file, base64-encoded,
in ``value.content`` (every file, with ``--inline-uploads``). Parsing such a line with ``json.loads`` would
hold the text, the decoded bytes and the line at once: gigabytes for a large model. Here each line is scanned
for its strings; a string longer than ``spill_bytes`` is decoded from base64 into a temporary file while it
arrives, and the rest of the line (small) is parsed by ``json``. Only ``value.content`` may be long.

Example:
    >>> import base64, tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> content = base64.b64encode(b"x" * 100).decode()
    >>> line = '{"key": "file", "value": {"content": "%s", "path": "a.txt", "encoding": "base64"}}\\n' % content
    >>> reader = CommitReader(folder, spill_bytes=16, max_line_bytes=1024, max_file_bytes=1 << 20)
    >>> [(item["key"], item["value"]["path"], item["value"]["content"].size) for item in reader.feed(line.encode())]
    [('file', 'a.txt', 100)]
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import HubError

_OUTSIDE = re.compile(rb'["\n]')
_INSIDE = re.compile(rb'["\\\n]')


@dataclass
class SpooledContent:
    """A long base64 string, decoded into ``path`` (``size`` bytes whose sha256 is ``sha256``)."""

    path: Path
    size: int
    sha256: str


class _Base64Spool:
    """Decodes base64 text arriving in pieces into a file, refusing anything that is not base64."""

    def __init__(self, path: Path, max_bytes: int):
        self.path, self.max_bytes, self.size, self.pending = path, max_bytes, 0, b""
        self.digest = hashlib.sha256()
        self.handle = open(path, "wb")

    def write(self, text: bytes) -> None:
        data = self.pending + text
        usable = len(data) - len(data) % 4
        self.pending = data[usable:]
        if usable:
            self._decode(data[:usable])

    def _decode(self, text: bytes) -> None:
        try:
            decoded = binascii.a2b_base64(text, strict_mode=True)
        except binascii.Error as err:
            raise HubError(400, f"Commit: a file's content is not valid base64 ({err}).") from None
        self.size += len(decoded)
        if self.size > self.max_bytes:
            raise HubError(413, f"Commit: a file is over this server's limit of {self.max_bytes} bytes.")
        self.handle.write(decoded)
        self.digest.update(decoded)

    def close(self) -> SpooledContent:
        if self.pending:
            raise HubError(400, "Commit: a file's base64 content has a length that is not a multiple of 4.")
        self.handle.close()
        return SpooledContent(self.path, self.size, self.digest.hexdigest())

    def discard(self) -> None:
        self.handle.close()
        self.path.unlink(missing_ok=True)


class CommitReader:
    """Feed it the body's chunks; it yields each line's object, long strings replaced by ``SpooledContent``.

    Temporary files are created in ``folder``; ``cleanup()`` removes every one this reader made (the caller
    moves those it keeps first).
    """

    def __init__(self, folder: Path, *, spill_bytes: int = 1 << 16, max_line_bytes: int = 8 << 20,
                 max_file_bytes: int = 50 << 30, max_lines: int = 100_000):
        self.folder, self.spill_bytes = folder, spill_bytes
        self.max_line_bytes, self.max_file_bytes, self.max_lines = max_line_bytes, max_file_bytes, max_lines
        self.marker = f"\x00hf-mae-spool-{secrets.token_hex(8)}-"  # a client cannot guess it
        self.spooled: dict[str, SpooledContent] = {}
        self.files: list[Path] = []
        self.lines = 0
        self._line = bytearray()  # the current line, long strings replaced by markers
        self._string: bytearray | None = None  # the current string's raw text (None: outside a string)
        self._spool: _Base64Spool | None = None
        self._escape = False

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        position = 0
        while position < len(data):
            if self._string is None and self._spool is None:
                match = _OUTSIDE.search(data, position)
                end = match.start() if match else len(data)
                self._append_line(data[position:end])
                if not match:
                    return
                position = end + 1
                if match.group() == b"\n":
                    item = self._end_line()
                    if item is not None:
                        yield item
                else:
                    self._string = bytearray()
                continue
            if self._escape:  # the character after a backslash, whatever it is (never a newline)
                if data[position:position + 1] == b"\n":
                    raise HubError(400, "Commit body: a JSON string is cut by a line break.")
                self._string_text(data[position:position + 1])
                self._escape = False
                position += 1
                continue
            match = _INSIDE.search(data, position)
            end = match.start() if match else len(data)
            self._string_text(data[position:end])
            if not match:
                return
            position = end + 1
            char = match.group()
            if char == b"\n":
                raise HubError(400, "Commit body: a JSON string is cut by a line break.")
            if char == b"\\":
                if self._spool is not None:
                    raise HubError(400, "Commit body: a long string must be plain base64 (no escapes).")
                self._string_text(b"\\")
                self._escape = True
            else:
                self._end_string()

    def finish(self) -> Iterator[dict[str, Any]]:
        """After the last chunk: the last line, if it has no final newline."""
        if self._string is not None or self._spool is not None:
            raise HubError(400, "Commit body ended inside a JSON string.")
        item = self._end_line()
        if item is not None:
            yield item

    def cleanup(self) -> None:
        if self._spool is not None:
            self._spool.discard()
        for path in self.files:
            path.unlink(missing_ok=True)

    # -- internals ----------------------------------------------------------------------------------
    def _append_line(self, text: bytes) -> None:
        self._line += text
        if len(self._line) > self.max_line_bytes:
            raise HubError(413, f"Commit body: a line is over the limit of {self.max_line_bytes} bytes "
                                "(file contents not counted).")

    def _string_text(self, text: bytes) -> None:
        if self._spool is not None:
            self._spool.write(text)
            return
        assert self._string is not None
        self._string += text
        if len(self._string) > self.spill_bytes:
            if b"\\" in self._string:
                raise HubError(400, "Commit body: a long string must be plain base64 (no escapes).")
            path = self.folder / f"{uuid.uuid4().hex}.inline"
            self.files.append(path)
            self._spool = _Base64Spool(path, self.max_file_bytes)
            self._spool.write(bytes(self._string))
            self._string = None

    def _end_string(self) -> None:
        if self._spool is not None:
            key = f"{self.marker}{len(self.spooled)}"
            self.spooled[key] = self._spool.close()
            self._spool = None
            self._append_line(json.dumps(key).encode())
        else:
            assert self._string is not None
            self._append_line(b'"' + bytes(self._string) + b'"')
        self._string = None

    def _end_line(self) -> dict[str, Any] | None:
        line, self._line = bytes(self._line), bytearray()
        if not line.strip():
            return None
        self.lines += 1
        if self.lines > self.max_lines:
            raise HubError(413, f"Commit body: more than {self.max_lines} operations.")
        try:
            item = json.loads(line)
        except ValueError as err:  # JSON errors and non-UTF-8 alike
            raise HubError(400, f"Commit body must be NDJSON lines {{\"key\": ..., \"value\": ...}}: {err}") from None
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or "value" not in item:
            raise HubError(400, "Commit body must be NDJSON lines {\"key\": ..., \"value\": ...}.")
        value = item["value"]
        if isinstance(value, dict) and isinstance(value.get("content"), str) and value["content"] in self.spooled:
            value["content"] = self.spooled.pop(value["content"])
        if self._has_marker(item):
            raise HubError(413, f"Commit body: a string other than a file's content is over {self.spill_bytes} bytes.")
        return item

    def _has_marker(self, value: Any) -> bool:
        if isinstance(value, str):
            return value.startswith(self.marker)
        if isinstance(value, dict):
            return any(self._has_marker(v) for v in value.values())
        if isinstance(value, list):
            return any(self._has_marker(v) for v in value)
        return False


def read_commit(chunks: Iterable[bytes], reader: CommitReader) -> Iterator[dict[str, Any]]:
    """Every line of a commit body, in order."""
    for chunk in chunks:
        yield from reader.feed(chunk)
    yield from reader.finish()
