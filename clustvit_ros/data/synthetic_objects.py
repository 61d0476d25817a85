"""Obstacles and people of the synthetic generator (rocks, boxes/crates, barrels; walking
people with varied clothing, skin tones and hats).

Each ``add_*`` samples its objects from ``rng`` (in a fixed order, so scenes are reproducible)
and appends draw operations to a :class:`~.synthetic_parts.Prims` list keyed by distance.
"""
from __future__ import annotations

import math
from functools import partial

import numpy as np

from .synthetic_parts import OBSTACLE, PERSON, Canvas, Prims, place


# -------------------------------------------------------------------------------- obstacles ----
def _rock(cv: Canvas, X, Z, R, h, ang, rad, col) -> None:
    cam = cv.cam
    ys = np.maximum(h * 0.45 + h * 0.55 * rad * np.sin(ang), 0.0)
    px, py = cam.project(X + R * rad * np.cos(ang), ys, np.full(ang.size, Z))
    cv.poly(px, py, cv.color(col, Z, OBSTACLE))
    if cv.light.sunny:  # a lit facet towards the sun
        sx = 0.25 * R * np.sign(cv.light.sun[0] + 1e-6)
        px, py = cam.project(X + sx + 0.55 * R * rad * np.cos(ang),
                             h * 0.6 + 0.35 * h * rad * np.sin(ang), np.full(ang.size, Z))
        cv.poly(px, py, cv.color(np.minimum(col * 1.3, 1), Z, OBSTACLE))


def _box(cv: Canvas, X, Z, w, d, h, yaw, col) -> None:
    cam, L = cv.cam, cv.light
    c, s = math.cos(yaw), math.sin(yaw)
    lx, lz = np.array([-w, w, w, -w]) / 2, np.array([-d, -d, d, d]) / 2
    gx, gz = X + c * lx - s * lz, Z + s * lx + c * lz
    bx, by = cam.project(gx, 0.0, gz)
    tx, ty = cam.project(gx, h, gz)
    normals = [(0, -1), (1, 0), (0, 1), (-1, 0)]
    for i, (nxl, nzl) in enumerate(normals):
        nx, nz = c * nxl - s * nzl, s * nxl + c * nzl
        j = (i + 1) % 4
        fcx, fcz = (gx[i] + gx[j]) / 2, (gz[i] + gz[j]) / 2
        if nx * (0 - fcx) + nz * (0 - fcz) <= 0:
            continue
        lit = 0.55 + 0.45 * max(0.0, nx * L.sun[0] + nz * L.sun[2]) if L.sunny else 0.7
        cv.poly(np.array([bx[i], bx[j], tx[j], tx[i]]), np.array([by[i], by[j], ty[j], ty[i]]),
                cv.color(col * lit, Z, OBSTACLE))
    if h < cam.hc:
        lit = 0.6 + 0.4 * L.sun[1] if L.sunny else 0.85
        cv.poly(tx, ty, cv.color(np.minimum(col * lit * 1.1, 1), Z, OBSTACLE))


def _barrel(cv: Canvas, X, Z, r, h, col) -> None:
    cam = cv.cam
    rx = r * cam.f / Z
    x0, y0 = cam.project(X, 0.0, Z)
    x1, y1 = cam.project(X, h, Z)
    ry0 = max(abs(cam.project(X, 0.0, Z - r)[1] - cam.project(X, 0.0, Z + r)[1]) / 2, 0.5)
    ry1 = max(abs(cam.project(X, h, Z - r)[1] - cam.project(X, h, Z + r)[1]) / 2, 0.5)
    ang = math.degrees(cam.roll)
    cv.ellipse(x0, y0, rx, ry0, ang, cv.color(col * 0.8, Z, OBSTACLE))
    sgn = 1.0 if cv.light.sun[0] >= 0 else -1.0
    for k, (a, b) in enumerate(((-1.0, -0.35), (-0.35, 0.35), (0.35, 1.0))):
        xs = np.array([X + a * r, X + b * r, X + b * r, X + a * r])
        px, py = cam.project(xs, np.array([0, 0, h, h]), np.full(4, Z))
        lit = (0.7, 0.9, 1.1)[k if sgn > 0 else 2 - k] if cv.light.sunny else 0.85
        cv.poly(px, py, cv.color(np.minimum(col * lit, 1), Z, OBSTACLE))
    cv.ellipse(x1, y1, rx, ry1, ang, cv.color(np.minimum(col * 1.15, 1), Z, OBSTACLE))


_BOX_COLORS = [(0.62, 0.46, 0.28), (0.12, 0.30, 0.68), (0.70, 0.16, 0.10), (0.80, 0.80, 0.78),
               (0.85, 0.65, 0.10), (0.25, 0.25, 0.27)]


def _scatter(rng, cam, odds: tuple[float, int, int], z_min: float) -> tuple[np.ndarray, np.ndarray]:
    """Ground positions (X, Z) for a group that appears with probability odds[0] and counts
    odds[1] <= n < odds[2]; empty when the group does not appear."""
    p, lo, hi = odds
    if rng.random() >= p:
        return np.empty(0), np.empty(0)
    return place(rng, cam, int(rng.integers(lo, hi)), z_min, 35.0)


def add_obstacles(prims: Prims, rng, cv: Canvas, scene: dict) -> None:
    """Rocks, boxes/crates and barrels standing on the ground."""
    cam = cv.cam
    odds = {"field": (0.5, 1, 3), "meadow": (0.6, 1, 4), "yard": (1.0, 2, 7)}[scene["kind"]]
    X, Z = _scatter(rng, cam, odds, max(cam.z_near * 1.05, 1.5))
    for i in range(len(X)):
        x, z = float(X[i]), float(Z[i])
        t = rng.choice(3, p=[0.45, 0.35, 0.2])
        if t == 0:
            R = rng.uniform(0.1, 0.8)
            h = R * rng.uniform(0.5, 0.9)
            m = int(rng.integers(7, 13))
            ang = np.sort(rng.uniform(0, 2 * np.pi, m))
            col = np.array([0.45, 0.43, 0.40]) * rng.uniform(0.6, 1.3) * rng.uniform(0.9, 1.1, 3)
            prims.add(z, "F", partial(Canvas.ground_shadow, X=x, Z=z, radius=R, height=h))
            prims.add(z, "F", partial(_rock, X=x, Z=z, R=R, h=h, ang=ang,
                                      rad=rng.uniform(0.75, 1.05, m), col=col))
        elif t == 1:
            w, d, h = rng.uniform(0.3, 1.2), rng.uniform(0.3, 1.0), rng.uniform(0.25, 1.0)
            col = np.array(_BOX_COLORS[rng.integers(len(_BOX_COLORS))]) * rng.uniform(0.85, 1.15, 3)
            z = max(z, d + 0.5)
            prims.add(z, "F", partial(Canvas.ground_shadow, X=x, Z=z, radius=max(w, d) / 2, height=h))
            prims.add(z, "F", partial(_box, X=x, Z=z, w=w, d=d, h=h,
                                      yaw=math.radians(rng.uniform(-35, 35)), col=col))
        else:
            r, h = rng.uniform(0.22, 0.35), rng.uniform(0.8, 1.0)
            col = np.array(_BOX_COLORS[rng.integers(1, len(_BOX_COLORS))]) * rng.uniform(0.85, 1.15, 3)
            prims.add(z, "F", partial(Canvas.ground_shadow, X=x, Z=z, radius=r, height=h))
            prims.add(z, "F", partial(_barrel, X=x, Z=z, r=r, h=h, col=col))


# ----------------------------------------------------------------------------------- people ----
_SKIN = [(0.96, 0.80, 0.69), (0.87, 0.67, 0.53), (0.72, 0.52, 0.38), (0.50, 0.34, 0.24),
         (0.33, 0.22, 0.15)]
_TOPS = [(0.95, 0.85, 0.05), (1.0, 0.45, 0.05), (0.75, 0.12, 0.12), (0.15, 0.30, 0.65),
         (0.90, 0.90, 0.90), (0.30, 0.30, 0.32), (0.20, 0.40, 0.25), (0.55, 0.35, 0.60)]
_BOTTOMS = [(0.10, 0.12, 0.22), (0.08, 0.08, 0.08), (0.55, 0.48, 0.32), (0.22, 0.30, 0.18),
            (0.30, 0.32, 0.45)]


def _person(cv: Canvas, X, Z, Hp, side, phase, skin, top, bottom, hair, hat) -> None:
    cam = cv.cam

    def quad(p0, p1, w0, w1, col):  # a limb from p0 to p1 (metres, in the person's plane)
        (x0, y0), (x1, y1) = p0, p1
        xs = np.array([x0 - w0 / 2, x0 + w0 / 2, x1 + w1 / 2, x1 - w1 / 2]) * Hp + X
        ys = np.array([y0, y0, y1, y1]) * Hp
        px, py = cam.project(xs, ys, np.full(4, Z))
        cv.poly(px, py, cv.color(col, Z, PERSON))

    sh = 0.075 if side == 1 else 0.13
    step = 0.11 * math.sin(phase)
    swing = 0.08 * math.sin(phase)
    quad((-0.045, 0.50), (-0.045 + step, 0.02), 0.075, 0.06, np.array(bottom) * 0.85)
    quad((0.045, 0.50), (0.045 - step, 0.02), 0.075, 0.06, bottom)
    for sx in (-1.0, 1.0):  # shoes
        fx, fy = cam.project(X + (sx * 0.045 - sx * step) * Hp, 0.015 * Hp, Z)
        cv.ellipse(fx, fy, 0.05 * Hp * cam.f / Z, 0.02 * Hp * cam.f / Z, math.degrees(cam.roll),
                   cv.color((0.1, 0.08, 0.07), Z, PERSON))
    xs = np.array([-sh, sh, 0.09, -0.09]) * Hp + X
    px, py = cam.project(xs, np.array([0.81, 0.81, 0.47, 0.47]) * Hp, np.full(4, Z))
    cv.poly(px, py, cv.color(top, Z, PERSON))
    if top[0] > 0.9 and top[1] > 0.4:  # hi-vis vest: reflective stripes
        for yy in (0.60, 0.68):
            quad((0.0, yy), (0.0, yy + 0.02), 2 * sh - 0.03, 2 * sh - 0.03, (0.85, 0.85, 0.8))
    for sx, sw in ((-1.0, swing), (1.0, -swing)):
        quad((sx * (sh - 0.02), 0.80), (sx * (sh + 0.01) + sw, 0.47), 0.055, 0.045,
             np.array(top) * 0.9)
        hx, hy = cam.project(X + (sx * (sh + 0.01) + sw) * Hp, 0.45 * Hp, Z)
        cv.circle(hx, hy, 0.028 * Hp * cam.f / Z, cv.color(skin, Z, PERSON))
    quad((0.0, 0.80), (0.0, 0.86), 0.05, 0.05, skin)
    hx, hy = cam.project(X, 0.925 * Hp, Z)
    r = 0.068 * Hp * cam.f / Z
    cv.circle(hx, hy, r, cv.color(hair if side == 2 else skin, Z, PERSON))
    if hat:
        cv.ellipse(hx, hy - 0.5 * r, 1.35 * r, 0.35 * r, math.degrees(cam.roll), cv.color(top, Z, PERSON))
        cv.ellipse(hx, hy - 0.8 * r, 0.95 * r, 0.6 * r, math.degrees(cam.roll), cv.color(top, Z, PERSON))
    elif side != 2:
        hair_col = cv.color(hair, Z, PERSON)
        cv.ellipse(hx, hy - 0.45 * r, 1.0 * r, 0.6 * r, math.degrees(cam.roll), hair_col)


def add_people(prims: Prims, rng, cv: Canvas, scene: dict) -> None:
    """Standing/walking people of various sizes, clothing and skin tones."""
    cam = cv.cam
    odds = {"field": (0.25, 1, 2), "meadow": (0.35, 1, 3), "yard": (0.85, 1, 4)}[scene["kind"]]
    X, Z = _scatter(rng, cam, odds, max(cam.z_near * 1.1, 2.5))
    for i in range(len(X)):
        Hp = rng.uniform(1.5, 1.95) if rng.random() > 0.1 else rng.uniform(1.0, 1.4)
        top = np.array(_TOPS[rng.integers(len(_TOPS))]) * rng.uniform(0.9, 1.1, 3)
        prims.add(Z[i], "F", partial(Canvas.ground_shadow, X=float(X[i]), Z=float(Z[i]),
                                     radius=0.2 * Hp, height=Hp))
        prims.add(Z[i], "F", partial(
            _person, X=float(X[i]), Z=float(Z[i]), Hp=Hp, side=int(rng.choice(3, p=[0.5, 0.25, 0.25])),
            phase=rng.uniform(0, 2 * np.pi),
            skin=np.array(_SKIN[rng.integers(len(_SKIN))]) * rng.uniform(0.9, 1.1),
            top=np.minimum(top, 1.0),
            bottom=np.array(_BOTTOMS[rng.integers(len(_BOTTOMS))]) * rng.uniform(0.85, 1.15, 3),
            hair=np.array((0.12, 0.08, 0.05)) * rng.uniform(0.6, 3.0), hat=bool(rng.random() < 0.35)))
