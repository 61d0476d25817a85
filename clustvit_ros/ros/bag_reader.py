"""The messages of an MCAP file in file order, every chunk inflated within a bound.

The mcap library inflates a whole chunk at once to whatever size its compressed frame declares, so a
few hundred kB of zstd or lz4 can ask for gigabytes. Here the records are read one at a time, none
larger than the limit, and each chunk is inflated as a stream that is refused as soon as it passes
the limit: what a bag costs in memory is about twice the limit, whatever it claims.
"""
from __future__ import annotations

import io
from typing import BinaryIO, Iterator

from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.records import Chunk, Message
from mcap.stream_reader import StreamReader

_PIECE = 1 << 20  # bytes inflated per step


class ChunkTooLarge(ValueError):
    """A chunk (inflated) or record above the limit; the text names the limit's option."""


def iter_messages(stream: BinaryIO, max_bytes: int) -> Iterator[Message]:
    """Every Message record of the MCAP `stream` (from its start), in file order, inside chunks or not.

    Raises :class:`ChunkTooLarge` for a record or an inflated chunk above `max_bytes`, and the
    library's own errors for a file that cannot be parsed.
    """
    for record in StreamReader(stream, emit_chunks=True, record_size_limit=max_bytes).records:
        if isinstance(record, Chunk):
            yield from _chunk_messages(_inflate(record, max_bytes))
        elif isinstance(record, Message):
            yield record


def check_chunk_index(summary, max_bytes: int) -> None:
    """Refuse, before anything is read, a bag whose chunk index declares a chunk above `max_bytes`
    (the declaration may lie: :func:`iter_messages` holds to the limit whatever it says)."""
    for index in summary.chunk_indexes:
        if index.uncompressed_size > max_bytes:
            raise ChunkTooLarge(f"the chunk at byte {index.chunk_start_offset} inflates to "
                                f"{index.uncompressed_size} bytes, {_limit(max_bytes)}")


def _inflate(chunk: Chunk, max_bytes: int) -> bytes:
    """The chunk's records as bytes, decompressed piece by piece up to `max_bytes`."""
    if chunk.compression == "":
        return chunk.data
    if chunk.compression == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor(max_window_size=_window(max_bytes)).stream_reader(chunk.data)
        pieces, size = [], 0
        while size <= max_bytes and (piece := reader.read(min(_PIECE, max_bytes + 1 - size))):
            pieces.append(piece)
            size += len(piece)
    elif chunk.compression == "lz4":
        import lz4.frame

        size = len(data := lz4.frame.LZ4FrameDecompressor().decompress(chunk.data, max_length=max_bytes + 1))
        pieces = [data]
    else:
        raise ValueError(f"a chunk has unknown compression {chunk.compression!r}")
    if size > max_bytes:
        raise ChunkTooLarge(f"a chunk declaring {chunk.uncompressed_size} bytes inflates to more than "
                            f"{max_bytes}, {_limit(max_bytes)}")
    return b"".join(pieces)


def _chunk_messages(data: bytes) -> Iterator[Message]:
    """The Message records among a chunk's records; the others (schemas, channels) are in the summary."""
    stream, end = ReadDataStream(io.BytesIO(data)), len(data)
    while stream.count < end:
        opcode, length = stream.read1(), stream.read8()
        if opcode == Opcode.MESSAGE:
            yield Message.read(stream, length)
        else:
            stream.read(length)


def _window(max_bytes: int) -> int:
    """The largest zstd window to allow: a frame made in one piece has its whole size as window."""
    return max(1 << 27, 1 << (max_bytes - 1).bit_length())


def _limit(max_bytes: int) -> str:
    return (f"above the limit of {max_bytes >> 20} MiB (--max-chunk-mib; raise it if the bag is "
            "trusted and this much memory is available)")
