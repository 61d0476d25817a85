"""Image codec: round trips, step and endianness, YUV, JPEG/PNG, errors, fuzzing. Starts no DDS."""
from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from clustvit_ros.ros.image_codec import (
    ENCODINGS, RGB8_ENCODINGS, ImageDecodeError, compressed_to_rgb8, image_to_numpy,
    numpy_to_image, rgb8_to_compressed, to_rgb8)

RNG = np.random.default_rng(0)
FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_array(encoding: str, h: int = 5, w: int = 6) -> np.ndarray:
    dtype, c = ENCODINGS[encoding]
    shape = (h, w) if c == 1 else (h, w, c)
    if dtype.kind == "f":
        return RNG.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def make_msg(arr: np.ndarray, encoding: str, pad: int = 0, big: bool = False) -> Image:
    """An Image built by hand (not by numpy_to_image): rows padded with 0xAB, chosen byte order."""
    h, w = arr.shape[:2]
    row = arr.astype(arr.dtype.newbyteorder(">" if big else "<")).reshape(h, -1).view(np.uint8)
    data = np.full((h, row.shape[1] + pad), 0xAB, np.uint8)
    data[:, :row.shape[1]] = row
    return Image(height=h, width=w, encoding=encoding, is_bigendian=int(big),
                 step=row.shape[1] + pad, data=data.tobytes())


def shares(arr: np.ndarray, msg) -> bool:
    return np.shares_memory(arr, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_round_trip_every_encoding_is_a_view(encoding):
    arr = random_array(encoding)
    msg = numpy_to_image(arr, encoding)
    assert msg.step == arr.nbytes // arr.shape[0] and msg.is_bigendian == (sys.byteorder == "big")
    assert len(msg.data) == arr.nbytes
    out = image_to_numpy(msg)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    assert shares(out, msg)


@pytest.mark.parametrize("encoding", ["mono8", "mono16", "rgb8", "bgra16", "32FC3", "64FC1",
                                      "16SC1", "yuv422", "yuyv"])
@pytest.mark.parametrize("pad", [1, 3, 64])
def test_padded_rows(encoding, pad):
    arr = random_array(encoding, 4, 6)
    msg = make_msg(arr, encoding, pad=pad)
    out = image_to_numpy(msg)
    np.testing.assert_array_equal(out, arr)
    assert shares(out, msg) and out.strides[0] == msg.step


@pytest.mark.parametrize("encoding", ["mono16", "rgb16", "32FC1", "16SC1", "64FC1"])
def test_big_endian_is_swapped_to_native(encoding):
    arr = random_array(encoding)
    out = image_to_numpy(make_msg(arr, encoding, pad=2, big=True))
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_big_endian_flag_on_bytes_keeps_the_view():
    arr = random_array("rgb8")
    msg = make_msg(arr, "rgb8", big=True)
    assert shares(image_to_numpy(msg), msg)


def test_more_data_than_the_header_describes_is_malformed():
    msg = make_msg(random_array("mono8"), "mono8")
    msg.data = bytes(msg.data) + b"\x00" * 7
    with pytest.raises(ImageDecodeError, match="expected step\\*height"):
        image_to_numpy(msg)


def test_numpy_to_image_contract():
    header = Header(frame_id="cam")
    rgb = random_array("rgb8", 4, 6)
    msg = numpy_to_image(rgb[:, ::-1], "rgb8", header)  # non-contiguous input
    assert msg.header is header and (msg.height, msg.width, msg.step) == (4, 6, 18)
    np.testing.assert_array_equal(image_to_numpy(msg), rgb[:, ::-1])
    other = numpy_to_image(rgb, "rgb8")  # each message owns its buffer
    assert other.data is not msg.data and len(msg.data) == len(other.data) == rgb.nbytes
    mono = random_array("mono16")
    np.testing.assert_array_equal(image_to_numpy(numpy_to_image(mono[..., None], "mono16")), mono)
    swapped = numpy_to_image(mono.astype(">u2"), "mono16")  # non-native input is stored native
    np.testing.assert_array_equal(image_to_numpy(swapped), mono)


@pytest.mark.parametrize("arr,encoding,match", [
    (np.zeros((4, 6, 3), np.uint8), "rgb9", "unknown encoding 'rgb9'"),
    (np.zeros((4, 6), np.uint8), "rgb8", "needs a HxWx3 array, got shape (4, 6)"),
    (np.zeros((4, 6, 4), np.uint8), "rgb8", "needs a HxWx3 array"),
    (np.zeros((4, 6, 3), np.float32), "rgb8", "needs dtype uint8, got float32"),
    (np.zeros((4, 6), np.uint8), "mono16", "needs dtype uint16"),
    (np.zeros((4, 5, 2), np.uint8), "yuv422", "cannot hold a 5x4 image"),
    (np.zeros((0, 6), np.uint8), "mono8", "cannot hold a 6x0 image"),
])
def test_numpy_to_image_errors(arr, encoding, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        numpy_to_image(arr, encoding)


def test_to_rgb8_every_supported_encoding():
    rgb = random_array("rgb8", 4, 6)
    gray = random_array("mono8", 4, 6)
    cases = {
        "rgb8": (rgb, rgb), "bgr8": (rgb[..., ::-1], rgb), "8UC3": (rgb[..., ::-1], rgb),
        "rgba8": (np.dstack([rgb, gray]), rgb), "bgra8": (np.dstack([rgb[..., ::-1], gray]), rgb),
        "mono8": (gray, np.dstack([gray] * 3)),
        "mono16": (gray.astype(np.uint16) << 8 | 0xFF, np.dstack([gray] * 3)),
    }
    for encoding, (src, want) in cases.items():
        for pad, big in [(0, False), (5, True)]:
            out = to_rgb8(make_msg(src, encoding, pad=pad, big=big))
            assert out.dtype == np.uint8 and out.flags.c_contiguous, encoding
            np.testing.assert_array_equal(out, want, err_msg=encoding)
    assert shares(out := to_rgb8(msg := numpy_to_image(rgb, "rgb8")), msg)  # unpadded rgb8: a view
    assert set(RGB8_ENCODINGS) >= set(cases) | {"yuv422", "yuv422_yuy2", "uyvy", "yuyv"}


def bt601_packed(rgb: np.ndarray, order: str) -> np.ndarray:
    """Independent reference: limited-range BT.601 4:2:2 (chroma averaged per pixel pair)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    u, v = (0.5 * (c[:, 0::2] + c[:, 1::2]) for c in (u, v))
    out = np.empty(rgb.shape[:2] + (2,), np.float64)
    luma, chroma = (1, 0) if order == "uyvy" else (0, 1)
    out[..., luma] = y
    out[:, 0::2, chroma], out[:, 1::2, chroma] = u, v
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("encoding,order", [("yuv422", "uyvy"), ("uyvy", "uyvy"),
                                            ("yuv422_yuy2", "yuyv"), ("yuyv", "yuyv")])
def test_yuv422_against_bt601_reference(encoding, order):
    h, w = 16, 24
    rgb = np.repeat(RNG.integers(0, 256, (h, w // 2, 3), dtype=np.uint8), 2, axis=1)  # 4:2:2-exact
    rgb[0, :, :] = np.repeat(np.linspace(0, 255, w // 2).astype(np.uint8), 2)[:, None]  # gray ramp
    out = to_rgb8(make_msg(bt601_packed(rgb, order), encoding, pad=4))
    assert out.shape == (h, w, 3) and out.flags.c_contiguous
    assert np.abs(out.astype(int) - rgb).max() <= 2
    other = "yuv422_yuy2" if order == "uyvy" else "yuv422"  # the two ROS names really differ
    assert np.abs(to_rgb8(make_msg(bt601_packed(rgb, order), other)).astype(int) - rgb).max() > 20


def bad(**fields) -> Image:
    base = dict(height=4, width=6, encoding="rgb8", step=18, data=bytes(72))
    return Image(**{**base, **fields})


@pytest.mark.parametrize("msg,match,kwargs", [
    (bad(encoding="rgb9"), "encoding 'rgb9'", {}),
    (bad(encoding=""), "encoding ''", {}),
    (bad(width=0, step=0, data=b""), "empty size 0x4", {}),
    (bad(height=0, data=b""), "empty size 6x0", {}),
    (bad(width=-3), "empty size -3x4", {}),
    (bad(step=17), "step 17 < width*bytes_per_pixel = 6*3 = 18 for rgb8", {}),
    (bad(encoding="bgra8", step=20, data=bytes(80)), "step 20 < width*bytes_per_pixel = 6*4", {}),
    (bad(data=bytes(71)), "data has 71 bytes, expected step*height = 18*4 = 72", {}),
    (bad(data=b""), "data has 0 bytes", {}),
    (bad(encoding="yuv422", width=5, step=10, data=bytes(40)), "needs an even width, got 5", {}),
    (bad(), "6x4 = 24 pixels exceeds max_pixels=23", {"max_pixels": 23}),
    (bad(width=100_000, height=100_000, step=300_000), "exceeds max_pixels=12582912", {}),
    (bad(width=2.5), "field 'width' is not an integer", {}),
])
def test_decode_errors_are_precise(msg, match, kwargs):
    assert issubclass(ImageDecodeError, ValueError)
    for fn in (image_to_numpy, to_rgb8):
        with pytest.raises(ImageDecodeError) as err:
            fn(msg, **kwargs)
        assert match in str(err.value)


@pytest.mark.parametrize("encoding", ["32FC1", "32FC3", "64FC1", "rgb16", "16UC1", "8UC1",
                                      "bgra16"])
def test_to_rgb8_rejects_unsupported_encodings(encoding):
    with pytest.raises(ImageDecodeError, match="encoding 'rgb9' is unknown; supported: rgb8, bgr8"):
        to_rgb8(bad(encoding="rgb9"))
    with pytest.raises(ImageDecodeError) as err:
        to_rgb8(make_msg(random_array(encoding), encoding))
    assert f"encoding {encoding!r} is not supported" in str(err.value)
    assert "supported: rgb8, bgr8" in str(err.value) and "yuv422_yuy2" in str(err.value)


def test_to_rgb8_of_float_with_nan_is_rejected_not_converted():
    with pytest.raises(ImageDecodeError, match="not supported"):
        to_rgb8(numpy_to_image(np.full((2, 2), np.nan, np.float32), "32FC1"))


# ----------------------------------------------------------------------------- compressed
SMOOTH = cv2.resize(RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8), (64, 48),
                    interpolation=cv2.INTER_LINEAR)


def encoded(img: np.ndarray, ext: str, fmt: str = "") -> CompressedImage:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return CompressedImage(format=fmt, data=buf.tobytes())


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_round_trip(fmt):
    msg = rgb8_to_compressed(SMOOTH, fmt, header=Header(frame_id="f"))
    assert msg.format == f"rgb8; {fmt} compressed bgr8" and msg.header.frame_id == "f"
    out = compressed_to_rgb8(msg)
    assert out.shape == SMOOTH.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - SMOOTH).mean() < (3 if fmt == "jpeg" else 1e-9)


@pytest.mark.parametrize("fmt", ["", "jpeg", "JPEG", "jpg", "rgb8; jpeg compressed bgr8",
                                 "bgr8; jpeg compressed bgr8"])
def test_jpeg_format_strings(fmt):
    out = compressed_to_rgb8(encoded(SMOOTH[..., ::-1], ".jpg", fmt))
    assert np.abs(out.astype(int) - SMOOTH).mean() < 3


def test_png_gray_16bit_alpha_and_rgb_marker():
    gray = SMOOTH[..., 0].copy()
    gray3 = np.dstack([gray] * 3)
    np.testing.assert_array_equal(compressed_to_rgb8(encoded(gray, ".png", "mono8; png")), gray3)
    deep = gray.astype(np.uint16) << 8 | 0x7F
    np.testing.assert_array_equal(compressed_to_rgb8(encoded(deep, ".png", "16UC1; png")), gray3)
    deep_rgb = SMOOTH.astype(np.uint16)[..., ::-1] << 8
    np.testing.assert_array_equal(compressed_to_rgb8(encoded(deep_rgb, ".png", "png")), SMOOTH)
    bgra = np.dstack([SMOOTH[..., ::-1], gray])
    np.testing.assert_array_equal(compressed_to_rgb8(encoded(bgra, ".png", "bgra8; png")), SMOOTH)
    # image_transport's "compressed rgb8": an RGB buffer went to imencode, channels stored swapped
    swapped = encoded(SMOOTH, ".png", "rgb8; png compressed rgb8")
    np.testing.assert_array_equal(compressed_to_rgb8(swapped), SMOOTH)


def header_claiming(ext: str, width: int, height: int) -> CompressedImage:
    msg = rgb8_to_compressed(SMOOTH, ext)
    data = bytearray(msg.data)
    if ext == "png":
        data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    else:
        sof = data.index(b"\xff\xc0")
        data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    msg.data = bytes(data)
    return msg


JPEG = bytes(rgb8_to_compressed(SMOOTH, "jpeg").data)
PNG = bytes(rgb8_to_compressed(SMOOTH, "png").data)


def comp(fmt: str, data: bytes = b"") -> CompressedImage:
    return CompressedImage(format=fmt, data=data)


@pytest.mark.parametrize("msg,match,kwargs", [
    (comp("jpeg"), "data (0 bytes) is neither JPEG nor PNG (starts with nothing)", {}),
    (comp("jpeg", b"hello world"), "neither JPEG nor PNG (starts with 68656c6c", {}),
    (comp("jpeg", JPEG[:len(JPEG) // 2]), "truncated JPEG: no EOI marker", {}),
    (comp("jpeg", JPEG[:60]), "no frame header (SOF) found in 60 bytes", {}),
    (comp("jpeg", JPEG[:4] + b"\x00" * 40), "expected a marker at byte", {}),
    (comp("png", PNG[:20]), "corrupt or truncated PNG: no IHDR", {}),
    (comp("png", PNG[:len(PNG) // 2]), "corrupt image data: decoding a 64x48", {}),
    (comp("png", PNG[:40] + bytes(200)), "corrupt image data", {}),
    (comp("16UC1; compressedDepth png", PNG), "unsupported CompressedImage format", {}),
    (comp("h264", JPEG), "unsupported CompressedImage format 'h264'", {}),
    (header_claiming("png", 60000, 60000), "image of 60000x60000 = 3600000000 pixels exceeds", {}),
    (header_claiming("jpeg", 65000, 65000), "65000x65000 = 4225000000 pixels exceeds max_pix", {}),
    (header_claiming("jpeg", 64, 0), "compressed image has empty size 64x0", {}),
    (comp("png", PNG), "64x48 = 3072 pixels exceeds max_pixels=3000", {"max_pixels": 3000}),
])
def test_compressed_errors(msg, match, kwargs):
    with pytest.raises(ImageDecodeError) as err:
        compressed_to_rgb8(msg, **kwargs)
    assert match in str(err.value)


def test_rgb8_to_compressed_rejects_bad_input():
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        rgb8_to_compressed(SMOOTH[..., 0])
    with pytest.raises(ValueError, match="unsupported format 'bmp'"):
        rgb8_to_compressed(SMOOTH, "bmp")


def progressive_jpeg(height: int, width: int, repeats: int = 0) -> bytes:
    """A progressive JPEG of a flat image whose last scan comes `repeats` more times: each copy is
    27 bytes, and each costs the decoder a pass over every block of the image."""
    flat = np.full((height, width, 3), 128, np.uint8)
    data = cv2.imencode(".jpg", flat, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    last_scan = data[data.rfind(b"\xff\xda"):-2]
    return data[:-2] + last_scan * repeats + b"\xff\xd9"


def test_a_progressive_jpeg_whose_scans_repeat_is_refused_before_decoding(monkeypatch):
    """A 130 kB JPEG of 4096x3072 (the default max_image_pixels) with 2000 copies of its last scan:
    OpenCV would make 2010 passes over 12.6 MP (seconds of CPU per frame). The markers
    are walked instead, in well under a millisecond, and the 33rd scan refuses the frame."""
    from clustvit_ros.data.image_bytes import MAX_JPEG_SCANS

    bomb = CompressedImage(format="jpeg", data=progressive_jpeg(3072, 4096, repeats=2000))
    assert len(bomb.data) < 200_000
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("the scan bomb was decoded"))
    with pytest.raises(ImageDecodeError, match=f"more than {MAX_JPEG_SCANS} scans"):
        compressed_to_rgb8(bomb)


def test_ordinary_progressive_and_baseline_jpegs_are_within_the_scan_limit():
    from clustvit_ros.data.image_bytes import MAX_JPEG_SCANS

    standard = progressive_jpeg(48, 64)
    assert standard.count(b"\xff\xda") == 10 < MAX_JPEG_SCANS  # libjpeg's progressive script
    assert compressed_to_rgb8(CompressedImage(format="jpeg", data=standard)).shape == (48, 64, 3)
    near_limit = progressive_jpeg(48, 64, repeats=MAX_JPEG_SCANS - 10)
    assert compressed_to_rgb8(CompressedImage(format="jpeg", data=near_limit)).shape == (48, 64, 3)
    with pytest.raises(ImageDecodeError, match="scans"):
        compressed_to_rgb8(CompressedImage(format="jpeg", data=progressive_jpeg(48, 64, MAX_JPEG_SCANS - 9)))


def test_a_jpeg_of_more_marker_segments_than_the_limit_is_refused():
    from clustvit_ros.data.image_bytes import MAX_JPEG_SEGMENTS

    comments = b"\xff\xfe\x00\x02" * MAX_JPEG_SEGMENTS  # empty COM segments after SOI
    with pytest.raises(ImageDecodeError, match=f"more than {MAX_JPEG_SEGMENTS} marker segments"):
        compressed_to_rgb8(comp("jpeg", JPEG[:2] + comments + JPEG[2:]))
    few = b"\xff\xfe\x00\x02" * 100
    assert compressed_to_rgb8(comp("jpeg", JPEG[:2] + few + JPEG[2:])).shape == SMOOTH.shape


def test_a_jpeg_with_a_second_frame_header_is_refused():
    sof = JPEG.index(b"\xff\xc0")
    length = JPEG[sof + 2] << 8 | JPEG[sof + 3]
    frame = JPEG[sof:sof + 2 + length]
    with pytest.raises(ImageDecodeError, match="second frame header"):
        compressed_to_rgb8(comp("jpeg", JPEG[:sof] + frame + frame + JPEG[sof + 2 + length:]))


# ----------------------------------------------------------------------------- property tests
@st.composite
def raw_images(draw):
    encoding = draw(st.one_of(st.sampled_from(RGB8_ENCODINGS),
                              st.sampled_from([*ENCODINGS, "rgb9", "", "RGB8", "yuv420"])))
    sizes = st.one_of(st.integers(1, 20), st.integers(-2, 2))
    width, height = draw(sizes), draw(sizes)
    dtype, channels = ENCODINGS.get(encoding, (np.dtype("u1"), 3))
    natural = max(width, 0) * dtype.itemsize * channels
    step = draw(st.one_of(st.just(natural), st.integers(natural, natural + 9),
                          st.integers(-4, 200)))
    full = max(step, 0) * max(height, 0)
    size = draw(st.one_of(st.just(full), st.integers(0, full + 16)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    data = rng.integers(0, 256, size, np.uint8).tobytes()
    return Image(height=height, width=width, encoding=encoding, step=step, data=data,
                 is_bigendian=draw(st.integers(0, 1)))


@FUZZ
@given(raw_images(), st.sampled_from([10**9, 100]))
def test_fuzz_raw_images(msg, max_pixels):
    for fn in (image_to_numpy, to_rgb8):
        try:
            out = fn(msg, max_pixels=max_pixels)
        except ImageDecodeError as exc:
            event(f"{fn.__name__}: {str(exc).split()[0]}")
            continue
        event(f"{fn.__name__}: decoded")
        assert out.shape[:2] == (msg.height, msg.width)
        if fn is to_rgb8:
            assert out.shape == (msg.height, msg.width, 3) and out.dtype == np.uint8
            assert out.flags.c_contiguous


GRAY_PNG = encoded(SMOOTH[..., 0], ".png").data.tobytes()
PROGRESSIVE = cv2.imencode(".jpg", SMOOTH, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()


@st.composite
def corrupt_compressed(draw):
    data = bytearray(draw(st.sampled_from([JPEG, PNG, GRAY_PNG, PROGRESSIVE])))
    kind = draw(st.sampled_from(["truncate", "flip", "random", "append"]))
    if kind == "truncate":
        data = data[:draw(st.integers(0, len(data)))]
    elif kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif kind == "random":
        data = bytearray(draw(st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"])) +
                         draw(st.binary(max_size=300)))
    else:
        data += draw(st.binary(max_size=50))
    fmt = draw(st.sampled_from(["", "jpeg", "png", "rgb8; jpeg compressed bgr8", "tiff",
                                "bgr8; png"]))
    return CompressedImage(format=fmt, data=bytes(data))


@FUZZ
@given(corrupt_compressed())
def test_fuzz_compressed(msg):
    try:
        out = compressed_to_rgb8(msg, max_pixels=64 * 64)
    except ImageDecodeError as exc:
        event(str(exc)[:24])
        return
    event("decoded")
    assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8
    assert 0 < out.shape[0] * out.shape[1] <= 64 * 64
