"""Render one synthetic robot scene with its pixel-exact mask (numpy and OpenCV only, no torch).

What a field or service robot sees from 0.7–1.6 m: sky (clear, evening or overcast, with clouds)
over a perspective ground plane (grass, soil with furrows, gravel), a tree line or single trees,
crop rows, weeds of several species, rocks, boxes and barrels, and people, under changing light
(global brightness, colour temperature, haze, cast and cloud shadows) and camera noise.

Classes (see :data:`CLASSES`, palette in ``palettes.SYNTHETIC``)::

    0 sky  1 ground  2 crop  3 weed  4 obstacle  5 person  6 tree  7 path

Geometry is a pinhole camera at height ``hc`` with a rolled horizon; ground pixels are computed
analytically per pixel, objects are projected polygons/ellipses drawn far to near into one
4-channel canvas (R, G, B, label) with the same OpenCV calls and no anti-aliasing, so the mask is
exactly what was drawn. Photometric effects (texture, shadows, light, noise) change RGB only.
:func:`render_scene` is a pure function of the generator state and the size.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .palettes import SYNTHETIC
from .synthetic_objects import add_obstacles, add_people
from .synthetic_vegetation import add_plants, add_trees
from .synthetic_parts import Camera, Canvas, Light, Prims, sample_field

__all__ = ["CLASSES", "PALETTE", "render_scene"]

CLASSES = SYNTHETIC.names
PALETTE = SYNTHETIC.palette
SKY, GROUND, CROP, WEED, OBSTACLE, PERSON, TREE, PATH = range(8)

# Per-class texture amplitudes for the image-space noise (fine, medium) applied at the end.
_TEX_FINE = np.array([0.01, 0.03, 0.08, 0.12, 0.07, 0.03, 0.12, 0.06], np.float32)
_TEX_MED = np.array([0.015, 0.03, 0.10, 0.08, 0.12, 0.04, 0.20, 0.05], np.float32)


def _smoothstep(e0, e1, x):
    t = np.clip((x - np.float32(e0)) * np.float32(1.0 / (e1 - e0)), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _f32(c) -> np.ndarray:
    return np.asarray(c, np.float32)


def _sky(out: np.ndarray, cam: Camera, light: Light, rng, v: np.ndarray) -> None:
    """Vertical gradient + stretched cloud noise into ``out`` (canvas rows that hold any sky);
    written everywhere, the ground overwrites it."""
    H, W = v.shape
    e = np.sqrt(np.clip(v * np.float32(-1.0 / (0.7 * cam.H)), 0.0, 1.0))
    hor, zen = _f32(light.horizon), _f32(light.zenith)
    col = hor + (zen - hor) * e[..., None]
    clouds = sample_field("coarse", H, W, rng, scale=rng.uniform(0.35, 0.8),
                          stretch=(rng.uniform(2.0, 4.0), 1.0))
    thr = light.cloud_threshold
    c = _smoothstep(thr, thr + 0.9, clouds) * np.float32(light.cloud_amount)
    col += (_f32(light.cloud_color) - col) * c[..., None]
    out[..., :3] = col
    out[..., 3] = SKY


def _ground(out: np.ndarray, cam: Camera, light: Light, rng, scene: dict, gnd: np.ndarray,
            u: np.ndarray, v: np.ndarray) -> None:
    """Ground plane (and path) evaluated per pixel from its ground coordinates (X, Z), into
    ``out`` (canvas rows that hold any ground; ``gnd`` marks the ground pixels there)."""
    H, W = v.shape
    Z = np.minimum(np.float32(cam.f * cam.hc) / np.maximum(v, np.float32(0.25)), np.float32(2000.0))
    X = u * Z * np.float32(1.0 / cam.f)
    fp = Z * np.float32(1.0 / cam.f)  # metres per pixel (footprint), for anti-aliasing
    g = scene["ground"]
    c1, c2 = _f32(g["c1"]), _f32(g["c2"])
    pm = np.float32(1.0 / g["patch_m"])
    m = _smoothstep(-0.6, 0.8, sample_field("coarse", H, W, rng, coords=(X * pm, Z * pm)))
    col = c1 + (c2 - c1) * m[..., None]
    it = np.float32(1.0 / g["texel"])
    fine = sample_field("fine", H, W, rng, coords=(X * it, Z * it))
    shade = 1.0 + np.float32(g["fine_amp"]) * fine / (1.0 + fp * (it * np.float32(0.6)))
    if g["blades"] > 0:  # grass blades: vertical image-space streaks, fading with distance
        bl = sample_field("streak", H, W, rng, scale=rng.uniform(0.6, 1.2), stretch=(1.0, 0.5))
        shade += np.float32(g["blades"]) * bl * np.clip(1.0 - Z * np.float32(1 / 12.0), 0.0, 1.0)
    if scene.get("rows") is not None:  # furrows along the crop rows
        r = scene["rows"]
        phase = (X - np.float32(r["x0"]) - np.float32(r["tan"]) * Z) * np.float32(2 * np.pi / r["spacing"])
        aa = np.clip(1.0 - fp * np.float32(2.5 / r["spacing"]), 0.0, 1.0)
        shade += np.float32(r["furrow"]) * np.cos(phase) * aa
    if light.cloud_shadow > 0:
        cs = sample_field("coarse", H, W, rng, coords=(X * np.float32(1 / 9.0), Z * np.float32(1 / 9.0)))
        shade *= 1.0 - np.float32(light.cloud_shadow) * _smoothstep(-0.2, 0.8, cs)
    col *= shade[..., None]
    label = np.full((H, W), GROUND, np.float32)
    p = scene.get("path")
    if p is not None:
        if p["along"]:
            zr = Z - np.float32(p["z0"])
            d = X - np.float32(p["a"]) - np.float32(p["b"]) * Z - np.float32(p["c"]) * zr * zr
        else:
            d = Z - np.float32(p["z0"]) - np.float32(p["b"]) * X
        inside = (np.abs(d) < p["half"]) & gnd
        pf = sample_field("fine", H, W, rng, coords=(X * np.float32(80.0), Z * np.float32(80.0)))
        pshade = 1.0 + np.float32(p["amp"]) * pf / (1.0 + fp * np.float32(40.0))
        if p["along"]:  # two darker wheel ruts
            q = (np.abs(d) - np.float32(0.55 * p["half"])) * np.float32(1 / (0.12 * p["half"]))
            rut = np.exp(-q * q)
            pshade -= np.float32(p["rut"]) * rut
        np.copyto(col, _f32(p["color"]) * pshade[..., None], where=inside[..., None])
        label[inside] = PATH
    haze = 1.0 - np.exp(Z * np.float32(-1.0 / light.haze_m))
    col += (_f32(light.horizon) - col) * haze[..., None]
    np.copyto(out[..., :3], col, where=gnd[..., None])
    np.copyto(out[..., 3], label, where=gnd)


def _scene_layout(rng, cam: Camera) -> dict:
    """Scene kind and ground/path/row parameters (all sizes in metres)."""
    kind = rng.choice(["field", "meadow", "yard"], p=[0.45, 0.3, 0.25])
    grass = dict(c1=np.array([0.20, 0.36, 0.10]) * rng.uniform(0.8, 1.2, 3),
                 c2=np.array([0.42, 0.44, 0.18]) * rng.uniform(0.8, 1.2, 3),
                 texel=0.02, fine_amp=0.18, blades=0.08, patch_m=rng.uniform(2, 6))
    soil = dict(c1=np.array([0.36, 0.26, 0.17]) * rng.uniform(0.8, 1.2, 3),
                c2=np.array([0.26, 0.19, 0.13]) * rng.uniform(0.8, 1.2, 3),
                texel=0.015, fine_amp=0.22, blades=0.0, patch_m=rng.uniform(1, 4))
    gravel = dict(c1=np.array([0.48, 0.45, 0.40]) * rng.uniform(0.85, 1.15, 3),
                  c2=np.array([0.36, 0.32, 0.27]) * rng.uniform(0.85, 1.15, 3),
                  texel=0.01, fine_amp=0.28, blades=0.0, patch_m=rng.uniform(1, 3))
    scene: dict = {"kind": kind, "rows": None, "path": None}
    if kind == "field":
        scene["ground"] = soil if rng.random() < 0.75 else grass
        scene["rows"] = dict(spacing=rng.uniform(0.45, 0.85), x0=rng.uniform(0, 1),
                             tan=math.tan(math.radians(rng.uniform(-14, 14))),
                             furrow=rng.uniform(0.05, 0.18) if scene["ground"] is soil else 0.0)
        p_path = 0.3
    elif kind == "meadow":
        scene["ground"] = grass
        p_path = 0.4
    else:
        scene["ground"] = [grass, soil, gravel][rng.integers(3)]
        p_path = 0.75
    if rng.random() < p_path:
        along = bool(kind == "field" or rng.random() < 0.7)
        half = rng.uniform(0.7, 1.8)
        z0 = rng.uniform(3.0, 12.0) if not along else cam.z_near
        color = np.array([0.55, 0.50, 0.42]) if rng.random() < 0.5 else np.array([0.45, 0.36, 0.26])
        scene["path"] = dict(
            along=along, half=half, z0=z0, a=rng.uniform(-3.0, 3.0),
            b=rng.uniform(-0.25, 0.25), c=rng.uniform(-0.004, 0.004) if kind != "field" else 0.0,
            amp=rng.uniform(0.12, 0.3), rut=rng.uniform(0.0, 0.25),
            color=color * rng.uniform(0.85, 1.15, 3))
        if kind == "field":
            scene["path"]["c"] = 0.0
            scene["path"]["b"] = scene["rows"]["tan"]
    return scene


def render_scene(rng: np.random.Generator, size: tuple[int, int] = (256, 256)
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One scene: ``(rgb uint8 (H, W, 3), mask uint8 (H, W))`` with ids in ``0..7``."""
    H, W = int(size[0]), int(size[1])
    if H < 8 or W < 8:
        raise ValueError(f"size must be at least 8x8, got {size}")
    light = Light.sample(rng)
    cam = Camera.sample(rng, H, W)
    scene = _scene_layout(rng, cam)
    cv = Canvas(H, W, cam, light)
    u, v = cam.upright_grid()
    gnd = v > 0.0
    rows = np.flatnonzero(gnd.any(axis=1))
    r0 = int(rows[0]) if rows.size else H  # first row with ground
    rows = np.flatnonzero((~gnd).any(axis=1))
    r1 = int(rows[-1]) + 1 if rows.size else 0  # last row with sky, + 1
    if r1 > 0:
        _sky(cv.img[:r1], cam, light, rng, v[:r1])
    if r0 < H:
        _ground(cv.img[r0:], cam, light, rng, scene, gnd[r0:], u[r0:], v[r0:])

    prims = Prims()
    add_trees(prims, rng, cv, scene)
    add_plants(prims, rng, cv, scene)
    add_obstacles(prims, rng, cv, scene)
    add_people(prims, rng, cv, scene)
    cv.draw_all(prims)

    lab = cv.img[..., 3].astype(np.uint8)
    fine = sample_field("fine", H, W, rng, scale=rng.uniform(0.7, 1.4))
    med = sample_field("medium", H, W, rng, scale=rng.uniform(0.6, 1.5))
    tex = 1.0 + _TEX_FINE[lab] * fine + _TEX_MED[lab] * med
    if rng.random() < 0.4:  # vignetting
        yy, xx = cam.pixel_grid()
        r2 = ((xx - np.float32(W / 2)) * np.float32(1 / W)) ** 2 + \
            ((yy - np.float32(H / 2)) * np.float32(1 / H)) ** 2
        tex *= 1.0 - np.float32(rng.uniform(0.2, 0.5)) * r2
    gain = light.gain * light.brightness * 255.0
    img = cv2.multiply(cv2.cvtColor(cv.img, cv2.COLOR_RGBA2RGB),
                       cv2.merge([tex * np.float32(g) for g in gain]))
    sigma = rng.uniform(0.004, 0.025) * 255.0
    noise = np.ascontiguousarray(sample_field("white3", H, W, rng, integer=True))
    img = cv2.scaleAdd(noise, sigma, img)
    out = cv2.convertScaleAbs(cv2.max(img, 0.0))  # saturating, rounding float -> uint8
    if rng.random() < 0.3:  # slight defocus / motion blur; RGB only, the mask stays geometric
        out = cv2.GaussianBlur(out, (3, 3), rng.uniform(0.4, 0.9))
    return out, lab
