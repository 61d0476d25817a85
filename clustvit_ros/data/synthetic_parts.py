"""Building blocks of the synthetic scene generator: camera, light, noise, canvas, scene objects.

Internal to ``synthetic.py``. Units: metres on the ground plane (X right, Y up, Z forward),
pixels in the image (OpenCV convention, pixel centres at integer coordinates). Drawing happens in
a float32 ``(H, W, 4)`` canvas whose last channel is the class id, so RGB and mask always come
from the same rasterisation call.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

SKY, GROUND, CROP, WEED, OBSTACLE, PERSON, TREE, PATH = range(8)
_T = 256  # noise tile size
_SHIFT = 4
_ONE = 1 << _SHIFT


# ----------------------------------------------------------------------------------- noise ----
@functools.lru_cache(maxsize=None)
def noise_tile(name: str) -> np.ndarray:
    """Fixed, periodic, zero-mean unit-std float32 noise tiles (same for every process)."""
    rng = np.random.default_rng(20240917 + sum(map(ord, name)))
    if name == "white3":
        return rng.standard_normal((_T, _T, 3)).astype(np.float32)
    white = rng.standard_normal((_T, _T))
    fy, fx = np.fft.fftfreq(_T)[:, None], np.fft.fftfreq(_T)[None, :]
    if name == "streak":  # vertical streaks: narrow in x, long in y
        spec = np.exp(-(fx / 0.25) ** 2 - (fy / 0.02) ** 2)
    elif name == "fine":
        spec = np.exp(-(fx ** 2 + fy ** 2) / 0.18 ** 2)
    else:
        beta = {"medium": 1.4, "coarse": 2.2}[name]
        f = np.hypot(fx, fy)
        f[0, 0] = 1.0
        spec = f ** -beta
    t = np.real(np.fft.ifft2(np.fft.fft2(white) * spec))
    t = (t - t.mean()) / t.std()
    return t.astype(np.float32)


@functools.lru_cache(maxsize=None)
def _tiled2(name: str) -> np.ndarray:
    """The tile repeated 2x2, so any whole-pixel window up to the tile size is a plain slice."""
    t = noise_tile(name)
    t2 = np.concatenate([np.concatenate([t, t], 1)] * 2, 0)
    t2.setflags(write=False)
    return t2


_FEATURE_PX = {"fine": 1.0, "medium": 12.0, "coarse": 48.0, "streak": 1.0, "white3": 1.0}


@functools.lru_cache(maxsize=8)
def _pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def _wrap(x: np.ndarray) -> np.ndarray:
    """x mod tile size (float32; much faster than np.mod). remap needs small coordinates."""
    return x - np.floor(x * np.float32(1.0 / _T)) * np.float32(_T)


def sample_field(name: str, h: int, w: int, rng: np.random.Generator, *,
                 scale: float = 1.0, stretch=(1.0, 1.0), coords=None,
                 integer: bool = False) -> np.ndarray:
    """Sample the periodic tile ``name`` at a random offset.

    ``coords=(cx, cy)``: per-pixel coordinates in units of the tile's feature size (ground-plane
    texture); otherwise image space with ``scale`` tile pixels per image pixel and ``stretch``
    (x, y) elongation. ``integer``: whole-pixel shifts, no interpolation (white noise)."""
    tile = noise_tile(name)
    ox, oy = (float(o) for o in rng.uniform(0, _T, 2))
    if integer:
        if h <= _T and w <= _T:
            return _tiled2(name)[int(oy):int(oy) + h, int(ox):int(ox) + w]
        ix = (np.arange(w) + int(ox)) % _T
        iy = (np.arange(h) + int(oy)) % _T
        return tile[iy[:, None], ix[None, :]]
    if coords is not None:
        feat = np.float32(_FEATURE_PX[name])
        mx = _wrap(np.asarray(coords[0], np.float32) * feat + np.float32(ox))
        my = _wrap(np.asarray(coords[1], np.float32) * feat + np.float32(oy))
    else:
        yy, xx = _pixel_grid(h, w)
        mx = _wrap(xx * np.float32(scale / stretch[0]) + np.float32(ox))
        my = _wrap(yy * np.float32(scale / stretch[1]) + np.float32(oy))
    return cv2.remap(tile, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


# ------------------------------------------------------------------------------ camera/light ----
@dataclass
class Camera:
    """Pinhole camera at height ``hc`` over flat ground, horizon row ``y_h``, rolled by ``roll``."""

    H: int
    W: int
    f: float
    hc: float
    y_h: float
    roll: float

    @classmethod
    def sample(cls, rng, H, W) -> "Camera":
        roll = math.radians(rng.uniform(-3.0, 3.0)) if rng.random() < 0.6 else 0.0
        return cls(H, W, f=W * rng.uniform(0.75, 1.2), hc=rng.uniform(0.7, 1.6),
                   y_h=H * rng.uniform(0.2, 0.45), roll=roll)

    @property
    def cx(self) -> float:
        return (self.W - 1) / 2.0

    @property
    def z_near(self) -> float:
        """Distance of the closest visible ground (bottom row)."""
        v = (self.H - 1 - self.y_h) * math.cos(self.roll) + abs(math.sin(self.roll)) * self.W / 2
        return self.f * self.hc / max(v, 1.0)

    def half_width(self, Z):
        """Lateral half-extent (m) of the view at distance Z, with a small margin."""
        return (self.W / 2 + 8) * np.asarray(Z) / self.f

    def project(self, X, Y, Z):
        """Ground-frame points (metres) -> image (x, y) pixels (arrays broadcast; plain floats
        take a scalar fast path)."""
        c, s = math.cos(self.roll), math.sin(self.roll)
        if isinstance(Z, (float, int)) and isinstance(X, (float, int)) and isinstance(Y, (float, int)):
            Z = max(Z, 1e-3)
            u, v = self.f * X / Z, self.f * (self.hc - Y) / Z
            return self.cx + c * u - s * v, self.y_h + s * u + c * v
        Z = np.maximum(Z, 1e-3)
        u = self.f * np.asarray(X) / Z
        v = self.f * (self.hc - np.asarray(Y)) / Z
        return self.cx + c * u - s * v, self.y_h + s * u + c * v

    def upright_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel (u, v) in the un-rolled frame; v > 0 is ground."""
        yy, xx = _pixel_grid(self.H, self.W)
        c, s = math.cos(self.roll), math.sin(self.roll)
        dx, dy = xx - np.float32(self.cx), yy - np.float32(self.y_h)
        return c * dx + s * dy, -s * dx + c * dy

    def pixel_grid(self):
        return _pixel_grid(self.H, self.W)


def place(rng, cam: Camera, n: int, z_lo: float, z_hi: float):
    """n ground positions (X, Z): log-uniform in distance, inside the horizontal field of view."""
    Z = np.exp(rng.uniform(math.log(z_lo), math.log(max(z_hi, z_lo * 1.01)), n))
    X = rng.uniform(-1.0, 1.0, n) * cam.half_width(Z)
    return X, Z


@dataclass
class Light:
    kind: str
    zenith: np.ndarray
    horizon: np.ndarray
    cloud_color: np.ndarray
    cloud_amount: float
    cloud_threshold: float
    cloud_shadow: float
    haze_m: float
    gain: np.ndarray
    brightness: float
    sunny: bool
    sun: np.ndarray  # unit vector towards the sun (X, Y, Z)
    shadow_len: float
    shadow_strength: float

    @classmethod
    def sample(cls, rng) -> "Light":
        kind = rng.choice(["clear", "evening", "overcast"], p=[0.5, 0.2, 0.3])
        j = lambda c, a=0.08: np.clip(np.array(c) * rng.uniform(1 - a, 1 + a, 3), 0, 1)  # noqa: E731
        az = rng.uniform(0, 2 * math.pi)
        if kind == "clear":
            el = rng.uniform(25, 65)
            zen, hor, cc = j((0.22, 0.42, 0.80)), j((0.66, 0.78, 0.92), 0.05), j((0.97,) * 3, 0.03)
            amount, thr, temp = rng.uniform(0.0, 0.9), rng.uniform(-0.2, 1.4), rng.uniform(-0.3, 0.3)
            bright, haze = rng.uniform(0.85, 1.2), rng.uniform(500, 2000)
        elif kind == "evening":
            el = rng.uniform(8, 22)
            zen, hor, cc = j((0.28, 0.36, 0.62)), j((0.95, 0.66, 0.42)), j((0.92, 0.70, 0.58))
            amount, thr, temp = rng.uniform(0.2, 0.9), rng.uniform(0.0, 1.2), rng.uniform(0.4, 1.0)
            bright, haze = rng.uniform(0.6, 0.95), rng.uniform(300, 1000)
        else:
            el = 60.0
            zen, hor, cc = j((0.60, 0.62, 0.67), 0.05), j((0.80, 0.81, 0.83), 0.04), j((0.70, 0.71, 0.74))
            amount, thr, temp = rng.uniform(0.5, 1.0), rng.uniform(-0.8, 0.3), rng.uniform(-0.5, 0.0)
            bright, haze = rng.uniform(0.6, 1.0), rng.uniform(150, 500)
        sunny = kind != "overcast"
        e = math.radians(el)
        sun = np.array([math.cos(e) * math.sin(az), math.sin(e), math.cos(e) * math.cos(az)])
        gain = np.array([1 + 0.12 * temp, 1 + 0.02 * temp, 1 - 0.16 * temp], np.float32)
        return cls(kind, zen, hor, cc, amount, thr,
                   rng.uniform(0.15, 0.35) if sunny and rng.random() < 0.35 else 0.0, haze, gain,
                   bright, sunny, sun, min(1.0 / math.tan(e), 4.0),
                   rng.uniform(0.3, 0.5) if sunny else 0.0)


# ----------------------------------------------------------------------------------- canvas ----
class Prims:
    """Draw list: (Z, seq, op, args); drawn far (large Z) to near, insertion order on ties."""

    def __init__(self):
        self.items: list = []

    def add(self, Z: float, op: str, *args) -> None:
        self.items.append((-float(Z), len(self.items), op, args))


def pt(x, y) -> tuple[int, int]:
    return int(round(float(x) * _ONE)), int(round(float(y) * _ONE))


class Canvas:
    def __init__(self, H: int, W: int, cam: Camera, light: Light):
        self.H, self.W = H, W
        self.cam, self.light = cam, light
        self.img = np.zeros((H, W, 4), np.float32)

    def color(self, rgb, Z: float, cls: int) -> tuple:
        k = math.exp(-Z / self.light.haze_m)
        h = self.light.horizon
        return (rgb[0] * k + h[0] * (1 - k), rgb[1] * k + h[1] * (1 - k), rgb[2] * k + h[2] * (1 - k),
                float(cls))

    def ellipse(self, x, y, a, b, angle, col) -> None:
        cv2.ellipse(self.img, pt(x, y), pt(max(a, 0.5), max(b, 0.5)), float(angle), 0, 360, col,
                    -1, cv2.LINE_8, _SHIFT)

    def circle(self, x, y, r, col) -> None:
        cv2.circle(self.img, pt(x, y), int(round(max(r, 0.5) * _ONE)), col, -1, cv2.LINE_8, _SHIFT)

    def poly(self, xs, ys, col) -> None:
        pts = np.round(np.stack([xs, ys], -1) * _ONE).astype(np.int32)
        cv2.fillPoly(self.img, [pts], col, cv2.LINE_8, _SHIFT)

    def line(self, x0, y0, x1, y1, col, th=1) -> None:
        cv2.line(self.img, pt(x0, y0), pt(x1, y1), col, int(th), cv2.LINE_8, _SHIFT)

    def ground_shadow(self, X, Z, radius, height, strength=None) -> None:
        """Shadow on the ground of an object of footprint ``radius`` and ``height`` standing at
        (X, Z): an ellipse from the foot point away from the sun, ``height / tan(elevation)``
        long and the footprint wide."""
        L, cam = self.light, self.cam
        if not L.sunny or Z <= 0.3:
            return
        Ls = height * L.shadow_len
        n = math.hypot(L.sun[0], L.sun[2]) + 1e-9
        ex, ez = X - L.sun[0] / n * Ls, max(Z - L.sun[2] / n * Ls, 0.3)
        x0, y0 = cam.project(float(X), 0.0, float(Z))
        x1, y1 = cam.project(float(ex), 0.0, float(ez))
        zc = 0.5 * (Z + ez)
        r_px = radius * cam.f / zc
        half = 0.5 * math.hypot(x1 - x0, y1 - y0)
        ang = math.atan2(y1 - y0, x1 - x0)
        # Minor axis: the footprint, foreshortened when it lies along the viewing direction.
        minor = r_px * max(abs(math.cos(ang)) * cam.hc / zc * 1.0 + abs(math.sin(ang)), 0.25)
        a, b = half + r_px, minor
        self._shadow_rot(0.5 * (x0 + x1), 0.5 * (y0 + y1), a, b, math.degrees(ang),
                         L.shadow_strength if strength is None else strength)

    def _shadow_rot(self, x, y, a, b, angle, strength) -> None:
        e = max(a, b)
        x0, y0 = max(int(x - e) - 1, 0), max(int(y - e) - 1, 0)
        x1, y1 = min(int(x + e) + 2, self.W), min(int(y + e) + 2, self.H)
        if x1 <= x0 or y1 <= y0 or strength <= 0:
            return
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.ellipse(m, pt(x - x0, y - y0), pt(max(a, 0.5), max(b, 0.5)), angle, 0, 360, 1, -1,
                    cv2.LINE_8, _SHIFT)
        sub = self.img[y0:y1, x0:x1, :3]
        sub[m.astype(bool)] *= 1.0 - strength

    def draw_all(self, prims: Prims) -> None:
        for _, _, op, args in sorted(prims.items):  # (-Z, seq) are unique: args never compared
            if op == "E":
                cv2.ellipse(self.img, args[0], args[1], args[2], 0, 360, args[3], -1, cv2.LINE_8,
                            _SHIFT)
            elif op == "L":
                cv2.line(self.img, args[0], args[1], args[2], args[3], cv2.LINE_8, _SHIFT)
            elif op == "C":
                cv2.circle(self.img, args[0], args[1], args[2], -1, cv2.LINE_8, _SHIFT)
            elif op == "P":
                cv2.fillPoly(self.img, [args[0]], args[1], cv2.LINE_8, _SHIFT)
            else:  # "F": a callable drawing a composite object
                args[0](self)
