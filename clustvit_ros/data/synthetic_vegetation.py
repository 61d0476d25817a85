"""Vegetation of the synthetic generator: crop rows, weeds of several species, trees, bushes.

Each ``add_*`` samples its objects from ``rng`` (in a fixed order, so scenes are reproducible)
and appends draw operations to a :class:`~.synthetic_parts.Prims` list keyed by distance.
Plants are drawn leaf by leaf (projected ellipses) up close and as blobs / row strips far away.
"""
from __future__ import annotations

import math
from functools import partial

import numpy as np

from .synthetic_parts import CROP, TREE, WEED, Canvas, Prims, place, pt

# Per species: leaves per plant, leaf length / plant radius, leaf width / length, tip lift /
# length (each lo, hi), colour, brightness jitter, midrib colour, flower colour, radius (m, lo, hi).
_SPECIES = [
    ("lettuce", (6, 9), (0.8, 1.1), (0.55, 0.8), (0.15, 0.35), (0.36, 0.64, 0.18), 0.12,
     (0.60, 0.80, 0.45), None, (0.08, 0.20)),
    ("maize", (5, 8), (1.1, 1.6), (0.10, 0.16), (0.8, 1.4), (0.24, 0.50, 0.14), 0.10,
     (0.50, 0.70, 0.35), None, (0.15, 0.35)),
    ("beet", (5, 8), (0.9, 1.2), (0.45, 0.65), (0.3, 0.6), (0.22, 0.42, 0.12), 0.12,
     (0.55, 0.12, 0.15), None, (0.08, 0.22)),
    ("cabbage", (5, 7), (0.8, 1.0), (0.75, 0.95), (0.25, 0.5), (0.42, 0.58, 0.48), 0.10,
     (0.70, 0.80, 0.70), None, (0.12, 0.28)),
    ("dock", (5, 9), (1.0, 1.4), (0.28, 0.42), (0.1, 0.3), (0.20, 0.30, 0.09), 0.15,
     (0.45, 0.18, 0.12), None, (0.12, 0.35)),
    ("thistle", (8, 14), (0.8, 1.2), (0.10, 0.18), (0.15, 0.45), (0.40, 0.50, 0.36), 0.12,
     (0.80, 0.85, 0.80), (0.60, 0.25, 0.60), (0.08, 0.25)),
    ("dandelion", (6, 10), (0.8, 1.1), (0.16, 0.26), (0.0, 0.1), (0.44, 0.60, 0.12), 0.12,
     None, (0.98, 0.85, 0.10), (0.06, 0.15)),
    ("clover", (8, 12), (0.5, 0.7), (0.8, 1.0), (0.0, 0.15), (0.26, 0.46, 0.20), 0.10,
     None, (0.95, 0.95, 0.95), (0.05, 0.12)),
]
_CROPS, _WEEDS = [0, 1, 2, 3], [4, 5, 6, 7]
_NUM = np.array([[*s[1], *s[2], *s[3], *s[4], s[6], *s[9]] for s in _SPECIES], np.float64)
(_NLO, _NHI, _LLO, _LHI, _ALO, _AHI, _FLO, _FHI, _JIT, _RLO, _RHI) = _NUM.T
_COL = np.array([s[5] for s in _SPECIES], np.float64)


# ----------------------------------------------------------------------------------- plants ----
def add_plants(prims: Prims, rng, cv: Canvas, scene: dict) -> None:
    """Crop rows (field scenes) and scattered weeds, leaf by leaf up close, blobs far away."""
    cam = cv.cam
    Xs, Zs, Rs, sps = [], [], [], []
    rows = scene["rows"]
    if rows is not None:
        sp = _CROPS[rng.integers(len(_CROPS))]
        R0 = rng.uniform(_RLO[sp], _RHI[sp])
        s, x0, tn = rows["spacing"], rows["x0"], rows["tan"]
        d = max(rng.uniform(0.22, 0.45), 1.4 * R0)
        # Single plants while they are > 2.5 px wide and > 1.5 px apart along the row.
        z0 = cam.z_near * 0.8
        z_sw = min(R0 * cam.f / 2.5, math.sqrt(d * cam.f * cam.hc / 1.5))
        path = scene["path"]
        if z_sw > z0:
            hw = cam.half_width(z_sw) + abs(tn) * z_sw + R0
            ks = np.arange(math.floor((-hw - x0) / s) - 1, math.ceil((hw - x0) / s) + 2)
            zz = np.arange(z0, z_sw, d)
            K, ZZ = np.meshgrid(ks, zz, indexing="ij")
            Z = (ZZ + rng.uniform(-0.15, 0.15, ZZ.shape) * d).ravel()
            X = (x0 + K * s).ravel() + tn * Z + rng.normal(0, 0.03, Z.size)
            keep = (rng.random(Z.size) > 0.07) & (np.abs(X) < cam.half_width(Z) + 3 * R0)
            if path is not None and path["along"]:
                keep &= np.abs(X - path["a"] - path["b"] * Z) > path["half"] + 0.5 * R0
            n = int(keep.sum())
            Xs.append(X[keep]), Zs.append(Z[keep])
            Rs.append(R0 * rng.uniform(0.8, 1.2, n)), sps.append(np.full(n, sp))
        _far_rows(prims, cv, rows, sp, R0, max(z_sw, z0), path)
    n_weeds = {"field": (3, 25), "meadow": (8, 40), "yard": (0, 12)}[scene["kind"]]
    n = int(rng.integers(*n_weeds))
    kinds = rng.choice(_WEEDS, size=int(rng.integers(1, 4)), replace=False)
    sp = kinds[rng.integers(len(kinds), size=n)]
    X, Z = place(rng, cam, n, cam.z_near * 0.85, 45.0)
    Xs.append(X), Zs.append(Z), Rs.append(rng.uniform(_RLO[sp], _RHI[sp])), sps.append(sp)
    _plants(prims, rng, cv, np.concatenate(Xs), np.concatenate(Zs), np.concatenate(Rs),
            np.concatenate(sps).astype(np.int64))


def _far_rows(prims, cv, rows, sp, R0, z_start, path) -> None:
    """Distant crop rows as continuous strips (plants overlap along a row there), and beyond the
    distance where rows are < 3 px apart one crop band up to the horizon haze."""
    cam = cv.cam
    s, x0, tn = rows["spacing"], rows["x0"], rows["tan"]
    z_merge, z_end = max(s * cam.f / 3.0, z_start), 400.0
    c = (cam.W / 2 + 4) / cam.f
    col = _COL[sp] * 0.9
    w = 0.85 * R0
    hw = cam.half_width(z_merge) + abs(tn) * z_merge
    for k in range(math.floor((-hw - x0) / s) - 1, math.ceil((hw - x0) / s) + 2):
        xk = x0 + k * s
        if path is not None and path["along"] and abs(xk - path["a"]) < path["half"] + 0.5 * R0:
            continue
        slope = c - math.copysign(1.0, xk) * tn
        if slope <= 0:
            if abs(xk) > w:
                continue
            za = z_start
        else:
            za = max(z_start, (abs(xk) - w) / slope)
        while za < z_merge:
            zb = min(z_merge, za * 3.0)
            xs = np.array([xk + tn * za - w, xk + tn * za + w, xk + tn * zb + w, xk + tn * zb - w])
            px, py = cam.project(xs, np.full(4, 0.4 * R0), np.array([za, za, zb, zb]))
            pts = np.round(np.stack([px, py], -1) * 16).astype(np.int32)
            prims.add(zb, "P", pts, cv.color(col, math.sqrt(za * zb), CROP))
            za = zb
    hw = float(cam.half_width(z_end)) + abs(tn) * z_end
    px, py = cam.project(np.array([-hw, hw, hw, -hw]), np.full(4, 0.4 * R0),
                         np.array([z_merge, z_merge, z_end, z_end]))
    pts = np.round(np.stack([px, py], -1) * 16).astype(np.int32)
    prims.add(z_end, "P", pts, cv.color(col * 0.9, 2 * z_merge, CROP))


def _plants(prims, rng, cv, X, Z, R, sp) -> None:
    cam = cv.cam
    rp = R * cam.f / Z
    x, y = cam.project(X, 0.0, Z)
    vis = (x > -4 * rp - 2) & (x < cam.W + 4 * rp + 2) & (y < cam.H + 4 * rp + 2) & (Z > 0.3)
    X, Z, R, sp, rp = X[vis], Z[vis], R[vis], sp[vis], rp[vis]
    N = X.size
    if N == 0:
        return
    cls = np.where(np.isin(sp, _CROPS), CROP, WEED)
    n = rng.integers(_NLO[sp].astype(int), _NHI[sp].astype(int) + 1)
    n = np.where(rp < 2.5, 1, np.where(rp < 6, np.minimum(n, 4), n))
    tint = rng.uniform(0.85, 1.15, N)
    th0 = rng.uniform(0, 2 * np.pi, N)
    pid = np.repeat(np.arange(N), n)
    start = np.cumsum(n) - n
    j = np.arange(pid.size) - start[pid]
    s = sp[pid]
    th = th0[pid] + 2 * np.pi * j / n[pid] + rng.uniform(-0.3, 0.3, pid.size)
    L = R[pid] * rng.uniform(_LLO[s], _LHI[s])
    wd = L * rng.uniform(_ALO[s], _AHI[s])
    lift = L * rng.uniform(_FLO[s], _FHI[s])
    blob = (rp < 2.5)[pid]
    L = np.where(blob, 0.0, L)
    ct, st = np.cos(th), np.sin(th)
    Xp, Zp = X[pid], Z[pid]
    bx, by = cam.project(Xp + 0.1 * L * ct, 0.05 * lift, Zp + 0.1 * L * st)
    tx, ty = cam.project(Xp + L * ct, lift, Zp + L * st)
    cx, cy = (bx + tx) / 2, (by + ty) / 2
    a = np.hypot(tx - bx, ty - by) / 2
    b = 0.5 * wd * cam.f / (Zp + 0.5 * L * st)
    ang = np.degrees(np.arctan2(ty - by, tx - bx))
    # Far plants: one squashed blob standing on the ground.
    rpp = rp[pid]
    bcx, bcy = cam.project(Xp, 0.5 * R[pid] * _FHI[s], Zp)
    squash = np.clip(cam.hc / Zp + _FHI[s] * 0.5, 0.3, 1.0)
    cx, cy = np.where(blob, bcx, cx), np.where(blob, bcy, cy)
    a, b = np.where(blob, rpp, a), np.where(blob, rpp * squash, b)
    ang = np.where(blob, math.degrees(cam.roll), ang)
    col = _COL[s] * (tint[pid] * rng.uniform(1 - _JIT[s], 1 + _JIT[s]))[:, None]
    col = col * rng.uniform(0.96, 1.04, (pid.size, 3))
    k = np.exp(-Zp / cv.light.haze_m)[:, None]
    col = col * k + cv.light.horizon[None] * (1 - k)
    order = np.lexsort((-st, pid))
    ints = np.rint(np.stack([cx, cy, np.maximum(a, 0.5), np.maximum(b, 0.5), bx, by, tx, ty], -1)
                   * 16).astype(np.int64).tolist()
    flts = np.concatenate([col, ang[:, None], a[:, None]], 1).tolist()
    cls_l, Z_l = cls.tolist(), Z.tolist()
    rib = [sp_[7] for sp_ in _SPECIES]
    flower = [sp_[8] for sp_ in _SPECIES]
    sunny = cv.light.sunny
    order_l, rp_l, start_l, n_l = order.tolist(), rp.tolist(), start.tolist(), n.tolist()
    items = prims.items
    for p in range(N):
        z, c, spi = Z_l[p], cls_l[p], int(sp[p])
        if sunny and rp_l[p] >= 10:
            prims.add(z, "F", partial(Canvas.ground_shadow, X=float(X[p]), Z=z,
                                      radius=float(R[p]) * 0.8, height=float(R[p]) * 0.6))
        rib_col = cv.color(rib[spi], z, c) if rib[spi] is not None else None
        for i in order_l[start_l[p]:start_l[p] + n_l[p]]:
            q, f = ints[i], flts[i]
            col4 = (f[0], f[1], f[2], float(c))
            items.append((-z, len(items), "E", ((q[0], q[1]), (q[2], q[3]), f[3], col4)))
            if rib_col is not None and f[4] >= 5:
                items.append((-z, len(items), "L", ((q[4], q[5]), (q[6], q[7]), rib_col, 1)))
        if flower[spi] is not None and rp_l[p] >= 3:
            for _ in range(int(rng.integers(1, 4))):
                fx, fz = X[p] + rng.uniform(-0.4, 0.4) * R[p], z + rng.uniform(-0.3, 0.3) * R[p]
                fh = R[p] * rng.uniform(0.5, 1.1)
                x0, y0 = cam.project(fx, 0.0, fz)
                x1, y1 = cam.project(fx, fh, fz)
                prims.add(z, "L", pt(x0, y0), pt(x1, y1), cv.color((0.3, 0.5, 0.15), z, c), 1)
                r = max(0.025 * cam.f / fz, 0.8)
                prims.add(z, "C", pt(x1, y1), int(round(r * 16)), cv.color(flower[spi], z, c))


# ------------------------------------------------------------------------------------ trees ----
def _crown(cv: Canvas, X, Z, Yc, Rc, trunk_h, trunk_w, blobs, col, trunk_col) -> None:
    cam = cv.cam
    if trunk_h > 0:
        xs = np.array([X - trunk_w / 2, X + trunk_w / 2, X + trunk_w / 3, X - trunk_w / 3])
        px, py = cam.project(xs, np.array([0, 0, Yc, Yc]), np.full(4, Z))
        cv.poly(px, py, cv.color(trunk_col, Z, TREE))
    sun = cv.light.sun
    for dx, dy, dz, r, shade in blobs:
        x, y = cam.project(X + dx * Rc, Yc + dy * Rc, Z + dz * Rc)
        lit = 1.0 + 0.25 * (dy * 0.6 + dx * sun[0]) * (1.0 if cv.light.sunny else 0.4)
        cv.circle(x, y, r * Rc * cam.f / (Z + dz * Rc), cv.color(col * shade * lit, Z, TREE))


def _blobs(rng, n, spread=0.75):
    a, rr = rng.uniform(0, 2 * np.pi, n), spread * np.sqrt(rng.random(n))
    dz = rng.uniform(-0.5, 0.5, n)
    order = np.argsort(-dz)
    return [(float(rr[i] * np.cos(a[i])), float(rr[i] * np.sin(a[i]) * 0.8), float(dz[i]),
             float(rng.uniform(0.3, 0.55)), float(rng.uniform(0.8, 1.15))) for i in order]


def add_trees(prims: Prims, rng, cv: Canvas, scene: dict) -> None:
    """A tree line / hedge on the horizon, single trees and bushes."""
    cam, kind = cv.cam, scene["kind"]
    base = np.array([0.12, 0.22, 0.08]) * rng.uniform(0.8, 1.3, 3)
    trunk = np.array([0.30, 0.24, 0.18]) * rng.uniform(0.8, 1.2, 3)
    if rng.random() < {"field": 0.7, "meadow": 0.75, "yard": 0.5}[kind]:
        Zt = rng.uniform(60.0, 220.0)
        hw = float(cam.half_width(Zt))
        x = -hw - rng.uniform(0, 10)
        while x < hw + 5:
            Rc = rng.uniform(2.5, 7.0)
            if rng.random() < 0.12:
                x += rng.uniform(5, 25)
                continue
            z = Zt + rng.uniform(-10, 10)
            Yc = Rc + rng.uniform(0.5, 7.0)
            prims.add(z, "F", partial(_crown, X=x, Z=z, Yc=Yc, Rc=Rc, trunk_h=Yc, trunk_w=1.6 * Rc,
                                      blobs=_blobs(rng, 4, 0.5), col=base * rng.uniform(0.75, 1.25),
                                      trunk_col=base * 0.8))
            x += Rc * rng.uniform(0.8, 1.6)
    if rng.random() < {"field": 0.3, "meadow": 0.45, "yard": 0.6}[kind]:
        n = int(rng.integers(1, 4))
        X, Z = place(rng, cam, n, max(6.0, 2 * cam.z_near), 50.0)
        for i in range(n):
            Rc, th = rng.uniform(1.5, 4.5), rng.uniform(1.0, 3.0)
            Yc = th + 0.7 * Rc
            prims.add(Z[i], "F", partial(Canvas.ground_shadow, X=float(X[i]), Z=float(Z[i]),
                                         radius=Rc * 0.8, height=Yc))
            prims.add(Z[i], "F", partial(_crown, X=float(X[i]), Z=float(Z[i]), Yc=Yc, Rc=Rc,
                                         trunk_h=Yc, trunk_w=rng.uniform(0.15, 0.45),
                                         blobs=_blobs(rng, int(rng.integers(12, 26))),
                                         col=base * rng.uniform(0.85, 1.3), trunk_col=trunk))
    if rng.random() < 0.35:
        n = int(rng.integers(1, 5))
        X, Z = place(rng, cam, n, max(3.0, cam.z_near), 35.0)
        for i in range(n):
            Rc = rng.uniform(0.3, 1.2)
            prims.add(Z[i], "F", partial(Canvas.ground_shadow, X=float(X[i]), Z=float(Z[i]),
                                         radius=Rc, height=Rc))
            prims.add(Z[i], "F", partial(_crown, X=float(X[i]), Z=float(Z[i]), Yc=0.8 * Rc, Rc=Rc,
                                         trunk_h=0.0, trunk_w=0.0,
                                         blobs=_blobs(rng, int(rng.integers(6, 13)), 0.6),
                                         col=base * rng.uniform(1.0, 1.5), trunk_col=trunk))
