"""Reading the files a user names (labels, class and split lists, recipes, annotations, data set
images), bounded: every such file is read here, whole, only if it is a regular file no larger than
the limit for its kind.

A FIFO or device (``/dev/zero``, a pipe nobody writes to) is refused before a byte is read: it is
opened without blocking and checked with ``fstat``. A file is read to at most its limit plus one
byte, so one that grows while it is read is refused too, never read until memory runs out.
"""
from __future__ import annotations

import os
import stat
from typing import Any

import yaml

TEXT_LIMIT = 64 << 20
"""Largest text file read (class and split lists, CVAT annotations): 64 MiB."""
YAML_LIMIT = 1 << 20
"""Largest YAML file read (labels files, training recipes): 1 MiB; 256 classes take 10 kB."""
IMAGE_FILE_LIMIT = 256 << 20
"""Largest image file read from a data set: 256 MiB (a 12.6 MP 16-bit RGBA PNG is 100 MB)."""


class InputFileError(ValueError):
    """A file that is not read: not a regular file, or larger than its limit; the text says which."""


def read_bytes(path: str | os.PathLike, limit: int) -> bytes:
    """The whole of the regular file `path`, at most `limit` bytes; raises :class:`InputFileError`
    for anything else and OSError (FileNotFoundError, ...) when it cannot be opened."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)  # non-blocking: opening a FIFO must not wait for a writer
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputFileError(f"{path} is not a regular file but {_kind(info.st_mode)}")
        if info.st_size > limit:
            raise InputFileError(f"{path} has {info.st_size} bytes, more than the limit of {limit}")
        os.set_blocking(fd, True)
        parts, size = [], 0
        while size <= limit and (part := os.read(fd, min(1 << 20, limit + 1 - size))):
            parts.append(part)
            size += len(part)
    finally:
        os.close(fd)
    if size > limit:
        raise InputFileError(f"{path} grew past the limit of {limit} bytes while it was read")
    return b"".join(parts)


def read_text(path: str | os.PathLike, limit: int = TEXT_LIMIT) -> str:
    """The regular file `path` as UTF-8 text (:func:`read_bytes`); bad UTF-8 is an InputFileError."""
    try:
        return read_bytes(path, limit).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path} is not UTF-8 text: {exc}") from None


def read_yaml(path: str | os.PathLike, limit: int = YAML_LIMIT) -> Any:
    """The YAML document in the regular file `path` (safe loader); any YAML that cannot be read,
    nesting too deep for the parser included, is an InputFileError naming the file."""
    text = read_text(path, limit)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputFileError(f"{path} is not valid YAML: {exc}") from None
    except RecursionError:  # the parser recurses once per nesting level
        raise InputFileError(f"{path} nests deeper than the YAML parser can follow") from None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"

