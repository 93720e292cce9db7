"""HTTP/1.1 framing for the upstream side of the relay: request heads, response heads, chunks.

Small and strict on purpose: it only has to understand vLLM (uvicorn/h11), and a response it
cannot frame is a broken upstream (the relay answers 502 or cuts the stream).
"""

from __future__ import annotations

import re
from typing import Final

from multidict import CIMultiDict, CIMultiDictProxy

CRLF: Final = b"\r\n"
_MAX_CHUNK_LINE: Final = 1024
DEFAULT_MAX_TRAILER: Final = 16 * 1024
_FORBIDDEN_IN_HEAD: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
"""Control characters (bare CR and LF included; tab is allowed) that no header line may hold:
passed on, they would split or corrupt the client's response head."""
_ZERO: Final = ord("0")
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})


class FramingError(ValueError):
    """The upstream's bytes are not valid HTTP/1.1 framing."""


class ResponseHead:
    """Status line and headers of vLLM's response."""

    __slots__ = ("headers", "reason", "status", "version")

    def __init__(
        self, status: int, reason: str, headers: CIMultiDictProxy[str], version: tuple[int, int]
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.version = version

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased (``""`` when absent)."""
        value = self.headers.get("Content-Type", "")
        return value.partition(";")[0].strip().lower()

    @property
    def keep_alive(self) -> bool:
        """Whether vLLM lets the connection serve another request."""
        connection = self.headers.get("Connection", "").lower()
        if "close" in connection:
            return False
        return self.version >= (1, 1) or "keep-alive" in connection


def parse_response_head(raw: bytes) -> ResponseHead:
    """Status line and header lines (without the blank line); values decoded as aiohttp does.

    Refused (:class:`FramingError`, which the relay answers with 502): a control character
    such as a bare CR or LF in any line, and ``Content-Length`` headers that disagree or are
    not a plain number (RFC 9112 section 6.3: an unrecoverable framing error).
    """
    lines = raw.split(CRLF)
    if any(_FORBIDDEN_IN_HEAD.search(line) for line in lines):
        raise FramingError("control character in the response head")
    status_line = lines[0].decode("latin-1")
    version_text, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version_text.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise FramingError(f"bad status line {status_line[:64]!r}")
    version = (1, 1) if version_text == "HTTP/1.1" else (1, 0)
    pairs: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise FramingError("bad header line")
        pairs.append(
            (name.decode("latin-1"), value.strip(b" \t").decode("utf-8", "surrogateescape"))
        )
    headers: CIMultiDict[str] = CIMultiDict(pairs)
    lengths = {
        part.strip() for value in headers.getall("Content-Length", ()) for part in value.split(",")
    }
    if lengths:
        length = lengths.pop()
        if lengths or not (length.isascii() and length.isdigit()):
            raise FramingError("conflicting or invalid Content-Length")
        headers.popall("Content-Length")
        headers["Content-Length"] = length
    return ResponseHead(int(code), reason, CIMultiDictProxy(headers), version)


def request_head(
    method: str, target: str, host: str, headers: CIMultiDict[str], body: bytes
) -> bytes:
    """The request line and headers; ``Host`` and ``Content-Length`` are the proxy's own."""
    lines = [f"{method} {target or '/'} HTTP/1.1\r\nHost: {host}\r\n"]
    for name, value in headers.items():
        lines.append(f"{name}: {value}\r\n")
    if body or method in _BODY_METHODS:
        lines.append(f"Content-Length: {len(body)}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8", "surrogateescape")


_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkedDecoder:
    """Incremental ``Transfer-Encoding: chunked`` decoder; any split of the input works.

    Per upstream read carrying one SSE event (one chunk) it costs one ``find``, one ``int(_,
    16)`` and one slice.
    """

    __slots__ = ("_max_trailer", "_pending", "_remaining", "_state", "_trailer", "leftover")

    def __init__(self, max_trailer: int = DEFAULT_MAX_TRAILER) -> None:
        self._state = _SIZE
        self._remaining = 0
        self._pending = b""
        self._max_trailer = max_trailer
        self._trailer = 0
        """Trailer bytes seen so far: bounded, or an endless trailer would buffer forever."""
        self.leftover = False
        """Set when bytes followed the last chunk (the connection must not be reused)."""

    @property
    def done(self) -> bool:
        return self._state == _DONE

    @property
    def at_boundary(self) -> bool:
        """Whether the next byte starts a chunk's size line (nothing of one is held back)."""
        return self._state == _SIZE and not self._pending

    def feed(self, data: bytes) -> bytes:  # noqa: PLR0912, PLR0915 - one loop: runs every read
        """The body bytes in ``data``; raises :class:`FramingError` on malformed framing."""
        buffer = self._pending + data if self._pending else data
        self._pending = b""
        state = self._state
        if state == _SIZE:
            pieces, position = whole_chunks(buffer)
        else:
            pieces, position = [], 0
        size = len(buffer)
        while position < size:
            if state == _DATA:
                take = min(self._remaining, size - position)
                pieces.append(buffer[position : position + take])
                position += take
                self._remaining -= take
                if not self._remaining:
                    state = _DATA_END
            elif state == _DATA_END:
                if size - position < 2:
                    break
                if buffer[position : position + 2] != CRLF:
                    raise FramingError("bad chunk terminator")
                position += 2
                state = _SIZE
            elif state == _SIZE:
                line_end = buffer.find(CRLF, position, position + _MAX_CHUNK_LINE)
                if line_end == -1:
                    if size - position >= _MAX_CHUNK_LINE:
                        raise FramingError("chunk size line too long")
                    break
                self._remaining = _chunk_size(buffer[position:line_end])
                position = line_end + 2
                state = _DATA if self._remaining else _TRAILER
            elif state == _TRAILER:
                line_end = buffer.find(CRLF, position)
                if line_end == -1:
                    self._check_trailer(size - position)
                    break
                blank = line_end == position
                self._trailer += line_end + 2 - position
                self._check_trailer(0)
                position = line_end + 2
                if blank:
                    state = _DONE
            else:  # _DONE
                self.leftover = True
                break
        self._state = state
        if position < size and state != _DONE:
            self._pending = buffer[position:]
        if not pieces:
            return b""
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _check_trailer(self, pending: int) -> None:
        if self._trailer + pending > self._max_trailer:
            raise FramingError("chunked trailer too large")


def whole_chunks(buffer: bytes) -> tuple[list[bytes], int]:
    """The fast path: complete plain chunks from the start of ``buffer``, and where they end.

    Plain means a size line of hex digits without leading zeros and no extension, so
    ``buffer[:end]`` is valid chunked framing as it is (the relay forwards it unchanged).
    Stops (for the exact state machine to go on) at anything else: a chunk cut by the read,
    a chunk extension, odd size digits, the last chunk. About twice as fast per chunk, which
    matters when one read carries many events.
    """
    pieces: list[bytes] = []
    append = pieces.append
    find = buffer.find
    position = 0
    size = len(buffer)
    while position < size:
        line_end = find(CRLF, position, position + 18)
        if line_end == -1:
            break
        digits = buffer[position:line_end]
        if not digits.isalnum() or digits[0] == _ZERO:
            break
        try:
            length = int(digits, 16)
        except ValueError:
            break
        start = line_end + 2
        end = start + length
        if end + 2 > size or buffer[end : end + 2] != CRLF:
            break
        append(buffer[start:end])
        position = end + 2
    return pieces, position


def _chunk_size(line: bytes) -> int:
    text = line.split(b";", 1)[0].strip()
    if not text or len(text) > 16 or not text.isalnum():
        raise FramingError("bad chunk size")
    try:
        return int(text, 16)
    except ValueError:
        raise FramingError("bad chunk size") from None
