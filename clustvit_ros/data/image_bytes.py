"""Encoded images (JPEG and PNG; BMP, TIFF and WebP from files) -> pixels, bounded.

The one place where an encoded image is decoded and where an image's size is checked: its width
and height are read from the file header and refused above ``max_pixels`` before anything is
decoded. A JPEG's markers are walked first, and one of more than :data:`MAX_JPEG_SCANS` scans (a
progressive JPEG whose scans repeat costs a pass over the whole image per scan) is refused too, so
decoding never costs more than a few ordinary images of the same size. Every refusal is an
:class:`ImageDecodeError` whose text says why.
"""
from __future__ import annotations

import io
import re
import warnings

import cv2
import numpy as np

DEFAULT_MAX_PIXELS = 4096 * 3072
"""Largest width*height accepted by default (the node's max_image_pixels, `clustvit bag`, data set
files): 12.6 MP, a 12 MP robot camera (4056x3040: OAK, Jetson IMX477) or 4K UHD. A guard against
hostile headers and compressed images that claim more (refused before decoding)."""
MAX_JPEG_SCANS = 32
"""Most scans a JPEG may have: a progressive one has 10 (6 in gray), a baseline one 1 to 4."""
MAX_JPEG_SEGMENTS = 1024
"""Most marker segments a JPEG may have (an ordinary one has under 100): bounds the header walk."""

_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                       0xCF})
# The first marker after entropy-coded data: 0xFF followed by anything but a stuffed zero, a restart
# marker (RST0-7) or another fill byte.
_AFTER_SCAN = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"


class ImageDecodeError(ValueError):
    """A message or file that cannot be turned into an image; the text says exactly why."""


def check_size(width: int, height: int, max_pixels: int, what: str = "image") -> None:
    """Raise :class:`ImageDecodeError` for an empty size or one above `max_pixels` pixels."""
    if width <= 0 or height <= 0:
        raise ImageDecodeError(
            f"{what} has empty size {width}x{height} (width and height must be > 0)")
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"{what} of {width}x{height} = {width * height} pixels exceeds max_pixels={max_pixels}")


def decode(data: bytes | np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS, flags: int = cv2.IMREAD_COLOR,
           what: str = "compressed image", camera: bool = True) -> np.ndarray:
    """Decode `data` with ``cv2.imdecode(data, flags)`` once its header says it fits `max_pixels`.

    OpenCV's BGR(A) order is kept. The result must have the header's size (:func:`header_size` says
    what a `camera` image may be; a file may also come out turned, as ``IMREAD_COLOR`` applies its
    EXIF orientation).
    """
    buf = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    width, height = header_size(buf, camera)
    check_size(width, height, max_pixels, what)
    try:
        img = cv2.imdecode(buf, flags)
    except cv2.error as exc:
        raise ImageDecodeError(f"corrupt image data: OpenCV failed to decode: {exc}") from None
    shapes = {(height, width)} if camera else {(height, width), (width, height)}
    if img is None or img.shape[:2] not in shapes:
        got = "nothing" if img is None else f"{img.shape} {img.dtype}"
        raise ImageDecodeError(f"corrupt image data: decoding a {width}x{height} image gave {got}")
    return img


def header_size(data: np.ndarray, camera: bool = True) -> tuple[int, int]:
    """(width, height) from an encoded image's header, without decoding it. A `camera` image must be
    a JPEG or PNG; a file may also be in another format Pillow knows (BMP, TIFF, WebP)."""
    head = data[:24].tobytes()
    if head.startswith(_PNG):
        if len(head) < 24 or head[12:16] != b"IHDR":
            raise ImageDecodeError(f"corrupt or truncated PNG: no IHDR header ({data.size} bytes)")
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head.startswith(_JPEG):
        return _jpeg_size(data.tobytes())
    if camera:
        start = head[:8].hex() or "nothing"
        raise ImageDecodeError(f"data ({data.size} bytes) is neither JPEG nor PNG (starts with {start})")
    return _pillow_size(data)


def _jpeg_size(b: bytes) -> tuple[int, int]:
    """(width, height) from the frame header (SOF), after walking every marker of the file: refuses
    a file cut before its EOI marker, a second frame header, and too many scans or segments."""
    i, n, size, scans, segments, ended = 2, len(b), None, 0, 0, False
    while i + 2 <= n:
        if b[i] != 0xFF:
            raise ImageDecodeError(f"corrupt JPEG: expected a marker at byte {i}")
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xD9:  # end of image
            ended = True
            break
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise ImageDecodeError(f"JPEG has more than {MAX_JPEG_SEGMENTS} marker segments")
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if i + 4 > n:
            break
        length = b[i + 2] << 8 | b[i + 3]
        if marker in _JPEG_SOF:
            if i + 9 > n:
                break
            if size is not None:
                raise ImageDecodeError("corrupt JPEG: a second frame header (SOF)")
            size = b[i + 7] << 8 | b[i + 8], b[i + 5] << 8 | b[i + 6]
        elif marker == 0xDA:  # start of scan: its header, then entropy-coded data up to a marker
            if size is None:
                break
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise ImageDecodeError(f"JPEG has more than {MAX_JPEG_SCANS} scans (each one a pass "
                                       "over the whole image)")
            found = _AFTER_SCAN.search(b, i + 2 + length)
            if found is None:
                break
            i = found.start()
            continue
        i += 2 + length
    if size is None:
        raise ImageDecodeError(f"corrupt or truncated JPEG: no frame header (SOF) found in {n} bytes")
    if not ended:
        raise ImageDecodeError(f"truncated JPEG: no EOI marker after the frame header ({n} bytes)")
    return size


def _pillow_size(data: np.ndarray) -> tuple[int, int]:
    """(width, height) of a BMP, TIFF or WebP (any format Pillow knows), from its header alone."""
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked by the caller
        try:
            with Image.open(io.BytesIO(data.tobytes())) as im:
                return im.size
        except UnidentifiedImageError:
            start = data[:8].tobytes().hex() or "nothing"
            raise ImageDecodeError(f"not an image file of a known format ({data.size} bytes, starts with "
                                   f"{start})") from None
        except Image.DecompressionBombError as exc:
            raise ImageDecodeError(f"image declares too many pixels: {exc}") from None
        except Exception as exc:  # Pillow raises many types for headers it cannot parse
            raise ImageDecodeError(f"corrupt image header: {type(exc).__name__}: {exc}") from None
