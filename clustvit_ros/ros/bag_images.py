"""The image messages of a bag for `clustvit bag`: CDR bytes -> a checked message -> RGB.

A bag's schema is a claim like its messages: it may lack a field, give one another type or define a
message in terms of itself. Every message is therefore decoded with the schema the bag carries and
then checked field by field against sensor_msgs/Image or CompressedImage; whatever does not fit,
from a schema that cannot be parsed to one wrong field, is an ImageDecodeError for that message,
which the caller skips and counts.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from .image_codec import DEFAULT_MAX_PIXELS, ImageDecodeError, compressed_to_rgb8, to_rgb8

_IMAGE_FIELDS = {"height": int, "width": int, "encoding": str, "is_bigendian": int, "step": int}
_COMPRESSED_FIELDS = {"format": str}


class BagImages:
    """CDR bytes of one image topic -> (checked message, HxWx3 uint8 RGB); raises ImageDecodeError."""

    def __init__(self, make_decoder: Callable[[], Callable[[bytes], Any] | None], compressed: bool,
                 max_pixels: int | None):
        """`make_decoder` builds the CDR decoder from the bag's schema; when that fails, every
        message is refused with the reason."""
        self._compressed = compressed
        self._max_pixels = max_pixels or DEFAULT_MAX_PIXELS
        self._schema_error = ""
        self._cdr: Callable[[bytes], Any] | None = None
        try:
            self._cdr = make_decoder()
        except Exception as exc:  # the schema's text is the bag's: any parse failure is its fault
            self._schema_error = f"the topic's schema cannot be used: {type(exc).__name__}: {exc}"

    def decode(self, data: bytes) -> tuple[SimpleNamespace, np.ndarray]:
        if self._cdr is None:
            raise ImageDecodeError(self._schema_error)
        try:
            raw = self._cdr(data)
        except Exception as exc:  # any failure of the decoder on these bytes and this schema
            raise ImageDecodeError(f"corrupt message ({type(exc).__name__}: {exc})") from None
        msg = checked_message(raw, self._compressed)
        rgb = (compressed_to_rgb8 if self._compressed else to_rgb8)(msg, self._max_pixels)
        return msg, rgb


def checked_message(raw: Any, compressed: bool) -> SimpleNamespace:
    """The fields of a decoded Image (or CompressedImage) message, each of the type sensor_msgs
    gives it; raises ImageDecodeError naming the first that is missing or of another type."""
    stamp = _get(_get(raw, "header"), "stamp", "header.")
    header = SimpleNamespace(
        stamp=SimpleNamespace(sec=_typed(stamp, "sec", int, "header.stamp."),
                              nanosec=_typed(stamp, "nanosec", int, "header.stamp.")),
        frame_id=_typed(_get(raw, "header"), "frame_id", str, "header."))
    fields = {name: _typed(raw, name, kind) for name, kind in
              (_COMPRESSED_FIELDS if compressed else _IMAGE_FIELDS).items()}
    data = _get(raw, "data")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageDecodeError(f"field 'data' is a {type(data).__name__}, not a byte sequence "
                               "(the bag's schema does not match the message type)")
    return SimpleNamespace(header=header, data=data, **fields)


def _get(obj: Any, name: str, prefix: str = "") -> Any:
    try:
        return getattr(obj, name)
    except AttributeError:
        raise ImageDecodeError(f"the message has no field '{prefix}{name}' "
                               "(the bag's schema does not match the message type)") from None


def _typed(obj: Any, name: str, kind: type, prefix: str = "") -> Any:
    value = _get(obj, name, prefix)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ImageDecodeError(f"field '{prefix}{name}' is a {type(value).__name__}, not a {kind.__name__} "
                               "(the bag's schema does not match the message type)")
    return value
