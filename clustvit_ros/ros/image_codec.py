"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge.

Encodings and their meaning follow cv_bridge / ``sensor_msgs/image_encodings.hpp``; note that ROS's
``yuv422`` is **UYVY** and ``yuv422_yuy2`` is **YUYV** (``uyvy`` / ``yuyv`` are accepted aliases).
Decoding gives zero-copy views of ``msg.data`` wherever the layout allows; every malformed
message raises :class:`ImageDecodeError` (a ``ValueError``) whose text names the problem, and
never any other exception.
"""
from __future__ import annotations

import operator
import sys
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from ..data.image_bytes import DEFAULT_MAX_PIXELS, ImageDecodeError, check_size, decode

__all__ = [
    "DEFAULT_MAX_PIXELS", "ENCODINGS", "RGB8_ENCODINGS", "ImageDecodeError", "image_to_numpy",
    "to_rgb8", "compressed_to_rgb8", "numpy_to_image", "rgb8_to_compressed",
]

_NATIVE_BIG = sys.byteorder == "big"
_YUV422 = frozenset({"yuv422", "uyvy", "yuv422_yuy2", "yuyv"})  # packed 4:2:2, two bytes/pixel

# encoding -> (dtype, channels); 4:2:2 is two bytes per pixel (HxWx2 uint8).
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    **{f"{bits}{kind}C{c}": (np.dtype(dt), c)
       for bits, kind, dt in [(8, "U", "u1"), (8, "S", "i1"), (16, "U", "u2"), (16, "S", "i2"),
                              (32, "S", "i4"), (32, "F", "f4"), (64, "F", "f8")]
       for c in (1, 2, 3, 4)},
    "mono8": (np.dtype("u1"), 1), "mono16": (np.dtype("u2"), 1),
    **{f"{order}{bits}": (np.dtype(dt), len(order))
       for order in ("rgb", "bgr", "rgba", "bgra") for bits, dt in ((8, "u1"), (16, "u2"))},
    **{name: (np.dtype("u1"), 2) for name in sorted(_YUV422)},
}

# What to_rgb8 accepts. 8UC3 has no channel order of its own; it is read as BGR because such
# messages come from OpenCV (cv2_to_imgmsg of a BGR Mat, "passthrough"). cv_bridge's
# toCvCopy(msg, "rgb8") would instead relabel the bytes unchanged.
_TO_RGB = {
    "rgb8": None, "bgr8": cv2.COLOR_BGR2RGB, "8UC3": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB, "mono16": cv2.COLOR_GRAY2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2, "yuyv": cv2.COLOR_YUV2RGB_YUY2,
}
RGB8_ENCODINGS: tuple[str, ...] = tuple(_TO_RGB)


def _int(msg: Any, field: str) -> int:
    try:
        return operator.index(getattr(msg, field))
    except (TypeError, AttributeError) as exc:
        raise ImageDecodeError(f"field {field!r} is not an integer: {exc}") from None


def _buffer(data: Any) -> np.ndarray:
    """``msg.data`` as a flat uint8 array, a view whenever it supports the buffer protocol."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        try:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ImageDecodeError(f"data is not a byte sequence: {exc}") from None


def image_to_numpy(msg: Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """View of ``msg.data`` as HxW (one channel) or HxWxC, dtype per encoding, honouring ``step``.

    Zero-copy, except that multi-byte data whose ``is_bigendian`` differs from this machine is
    byteswapped into a native copy. 4:2:2 encodings come back as HxWx2 uint8 (packed).
    """
    encoding = msg.encoding if isinstance(msg.encoding, str) else repr(msg.encoding)
    if encoding not in ENCODINGS:
        raise ImageDecodeError(f"unknown encoding {encoding!r}; known: {', '.join(ENCODINGS)}")
    dtype, channels = ENCODINGS[encoding]
    width, height, step = _int(msg, "width"), _int(msg, "height"), _int(msg, "step")
    check_size(width, height, max_pixels)
    if encoding in _YUV422 and width % 2:
        raise ImageDecodeError(f"{encoding} (4:2:2) needs an even width, got {width}")
    pixel_bytes = dtype.itemsize * channels
    if step < width * pixel_bytes:
        raise ImageDecodeError(
            f"step {step} < width*bytes_per_pixel = {width}*{pixel_bytes} = {width * pixel_bytes} "
            f"for {encoding}")
    buf = _buffer(msg.data)
    if buf.size != step * height:  # truncated, or more data than the header describes
        raise ImageDecodeError(
            f"data has {buf.size} bytes, expected step*height = {step}*{height} = {step * height}")
    big = bool(msg.is_bigendian) and dtype.itemsize > 1
    view_dtype = dtype.newbyteorder(">" if big else "<") if dtype.itemsize > 1 else dtype
    shape: tuple[int, ...] = (height, width) if channels == 1 else (height, width, channels)
    strides = (step, pixel_bytes) if channels == 1 else (step, pixel_bytes, dtype.itemsize)
    arr = np.ndarray(shape, view_dtype, buffer=buf, strides=strides)
    if dtype.itemsize > 1 and big != _NATIVE_BIG:
        arr = arr.astype(dtype.newbyteorder("="))  # byteswap into a native copy
    return arr


def to_rgb8(msg: Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """HxWx3 uint8 C-contiguous RGB for the model, from any of :data:`RGB8_ENCODINGS`.

    mono16 keeps its high byte (``>> 8``); 8UC3 is read as BGR. An unpadded rgb8 message is
    returned as a view sharing ``msg.data``; everything else is a new array.
    """
    if not isinstance(msg.encoding, str) or msg.encoding not in _TO_RGB:
        known = isinstance(msg.encoding, str) and msg.encoding in ENCODINGS
        what = "is not supported for RGB conversion" if known else "is unknown"
        raise ImageDecodeError(
            f"encoding {msg.encoding!r} {what}; supported: {', '.join(RGB8_ENCODINGS)}")
    arr = image_to_numpy(msg, max_pixels)
    if msg.encoding == "mono16":
        arr = (arr >> 8).astype(np.uint8)
    code = _TO_RGB[msg.encoding]
    if code is None:
        return np.ascontiguousarray(arr)
    return np.ascontiguousarray(cv2.cvtColor(arr, code))


def compressed_to_rgb8(msg: CompressedImage, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a JPEG or PNG CompressedImage to HxWx3 uint8 RGB.

    The size in the file header is checked against ``max_pixels``, and a JPEG's scans are counted,
    before anything is decoded (:func:`~clustvit_ros.data.image_bytes.decode`).
    Gray, alpha and 16-bit PNGs become 8-bit RGB. A ``format`` saying ``compressed rgb...``
    (image_transport's marker for channels stored swapped) is honoured.
    """
    fmt = msg.format.lower() if isinstance(msg.format, str) else ""
    named = any(k in fmt for k in ("jpeg", "jpg", "png"))
    if "compresseddepth" in fmt or (fmt.strip() and not named):
        raise ImageDecodeError(
            f"unsupported CompressedImage format {msg.format!r}; supported: jpeg, png")
    img = decode(_buffer(msg.data), max_pixels, cv2.IMREAD_COLOR)
    return img if "compressed rgb" in fmt else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def numpy_to_image(array: np.ndarray, encoding: str, header: Any = None) -> Image:
    """Build an Image from an array whose shape and dtype match ``encoding`` (HxW or HxWxC).

    ``data`` is filled with one copy, ``msg.data.frombytes(...)`` into the message's own
    ``array.array`` (assigning ``msg.data = ...`` would copy twice; a non-contiguous or non-native
    input costs one more). ``step`` is the unpadded row size; ``is_bigendian`` is this machine's
    order. Raises ``ValueError`` for a mismatch between array and encoding.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; known: {', '.join(ENCODINGS)}")
    dtype, channels = ENCODINGS[encoding]
    array = np.asarray(array)
    if array.ndim == 3 and channels == 1 and array.shape[2] == 1:
        array = array[:, :, 0]
    want = "HxW" if channels == 1 else f"HxWx{channels}"
    if array.ndim != (2 if channels == 1 else 3) or (channels > 1 and array.shape[2] != channels):
        raise ValueError(f"{encoding} needs a {want} array, got shape {array.shape}")
    if array.dtype.newbyteorder("=") != dtype:
        raise ValueError(f"{encoding} needs dtype {dtype.name}, got {array.dtype.name}")
    height, width = array.shape[:2]
    if height == 0 or width == 0 or (encoding in _YUV422 and width % 2):
        raise ValueError(f"{encoding} cannot hold a {width}x{height} image")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding = height, width, encoding
    msg.is_bigendian = int(_NATIVE_BIG)
    msg.step = width * channels * dtype.itemsize
    native = np.ascontiguousarray(array, dtype=dtype.newbyteorder("="))
    msg.data.frombytes(native.reshape(-1).view(np.uint8))
    return msg


def rgb8_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", header: Any = None,
                       quality: int = 90) -> CompressedImage:
    """Encode HxWx3 uint8 RGB as JPEG or PNG, with image_transport's ``format`` string."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.size == 0:
        raise ValueError(f"need a non-empty HxWx3 uint8 array, got {rgb.shape} {rgb.dtype}")
    kind = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png"}.get(fmt.lower())
    if kind is None:
        raise ValueError(f"unsupported format {fmt!r}; supported: jpeg, png")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if kind == "jpeg" else []
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg" if kind == "jpeg" else ".png", bgr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {rgb.shape} image as {kind}")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = f"rgb8; {kind} compressed bgr8"
    msg.data.frombytes(buf)
    return msg
