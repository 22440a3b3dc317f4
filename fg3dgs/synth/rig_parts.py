"""The parts of a face rig built from one photo (:func:`fg3dgs.synth.face.build_rig`): the
mouth closed at rest, the eye fans and lids, the outer rings and grid that extend the face
mesh over the portrait, the jaw, lip and mouth weights, the mouth interior (cavity, tongue,
teeth) and the texture. Head space as in :mod:`fg3dgs.synth.face`."""

from __future__ import annotations

import numpy as np

from ..facemesh import MOUTH_L, MOUTH_R, N_MESH_VERTICES, split_lids

HEAD_DISTANCE = 0.6          # m, photo camera to face
CHIN, FOREHEAD = 152, 10


def interp_path(points: np.ndarray, path: list[int], xs: np.ndarray) -> np.ndarray:
    """Positions along ``path`` (ordered by x) at horizontal coordinates ``xs``."""
    p = points[path]
    return np.stack([np.interp(xs, p[:, 0], p[:, k]) for k in range(points.shape[1])], -1)


def smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def close_mouth_at_rest(lm3: np.ndarray, L: np.ndarray, mouth_loop: list[int]):
    """Close the mouth at rest, in place on the metric landmarks lm3 [P, 3]: the inner lips
    meet at their midline, their neighbours follow. Returns (upper lip, lower lip vertex
    lists, mouth width in metres)."""
    upper, lower = split_lids(L, mouth_loop)
    xs_u = lm3[upper, 0]
    xs_l = lm3[lower, 0]
    mid_u = 0.5 * (lm3[upper] + interp_path(lm3, lower, xs_u))
    mid_l = 0.5 * (lm3[lower] + interp_path(lm3, upper, xs_l))
    anchors = np.concatenate([lm3[upper], lm3[lower]])
    deltas = np.concatenate([mid_u - lm3[upper], mid_l - lm3[lower]])
    mouth_w = np.linalg.norm(lm3[MOUTH_R] - lm3[MOUTH_L])
    sig = 0.22 * mouth_w
    d2 = ((lm3[:N_MESH_VERTICES, None] - anchors[None]) ** 2).sum(-1)
    wk = np.exp(-d2 / (2 * sig * sig))
    shift = (wk[..., None] * deltas[None]).sum(1) / np.maximum(1.0, wk.sum(1))[:, None]
    lm3[:N_MESH_VERTICES] += shift
    lm3[upper] = mid_u
    lm3[lower] = mid_l
    return upper, lower, mouth_w


def outer_mesh(L: np.ndarray, depth: np.ndarray, oval: list[int], W: int, H: int,
                n_core: int):
    """Outer rings around the face oval and a grid over the photo: (their photo pixels
    [M, 2], depths [M], head weights of the rings and of the grid, triangles [T, 3] of a
    Delaunay over oval and outer points outside the face oval, numbered as vertices after
    the ``n_core`` face and eye ones)."""
    from matplotlib.path import Path as PolyPath
    from scipy.spatial import Delaunay

    centre2d = L[oval, :2].mean(0)
    face_h = np.linalg.norm(L[CHIN, :2] - L[FOREHEAD, :2])
    ring_uv, ring_depth, ring_w = [], [], []
    for grow, back, wgt in ((1.18, 0.02, 1.0), (1.45, 0.05, 0.95), (1.8, 0.09, 0.75)):
        r_uv = centre2d + (L[oval, :2] - centre2d) * grow
        ring_uv.append(r_uv)
        ring_depth.append(depth[oval] + back)
        ring_w.append(np.full(len(oval), wgt))
    ring_uv = np.concatenate(ring_uv)
    ring_depth = np.concatenate(ring_depth)
    ring_w = np.concatenate(ring_w)
    outer_poly = PolyPath(ring_uv[-len(oval):])
    step = max(W, H) / 24
    gx, gy = np.meshgrid(np.linspace(0, W, int(np.ceil(W / step)) + 1),
                         np.linspace(0, H, int(np.ceil(H / step)) + 1))
    grid = np.stack([gx.ravel(), gy.ravel()], -1)
    grid = grid[~outer_poly.contains_points(grid, radius=-step * 0.3)]
    bg_depth = HEAD_DISTANCE + 0.35
    dist = np.min(np.linalg.norm(grid[:, None] - ring_uv[None, -len(oval):], axis=-1), 1)
    grid_w = 0.75 * np.exp(-(dist / (0.45 * face_h)) ** 2)
    grid_depth = bg_depth - (bg_depth - (HEAD_DISTANCE + 0.12)) * grid_w / 0.75
    outer_uv = np.concatenate([ring_uv, grid])
    outer_depth = np.concatenate([ring_depth, grid_depth])

    pts2d = np.concatenate([L[oval, :2], outer_uv])
    ids = np.concatenate([np.array(oval), n_core + np.arange(len(outer_uv))])
    dl = Delaunay(pts2d)
    cent = pts2d[dl.simplices].mean(1)
    keep = ~PolyPath(L[oval, :2]).contains_points(cent)
    return outer_uv, outer_depth, ring_w, grid_w, ids[dl.simplices[keep]]


def mouth_interior(first: int, mouth_centre: np.ndarray, hw: float):
    """The mouth interior: cavity, tongue, upper and lower teeth (vertex-coloured, behind the
    lips), as vertex lists numbered from ``first``: (vertices, colours, triangles, jaw
    weights, head weights)."""
    extra_v, extra_c, extra_t, extra_jaw, extra_hw = [], [], [], [], []

    def add_strip(x0, x1, y_top, y_bot, z, bend, color_top, color_bot, jaw, n=12):
        base = first + sum(len(v) for v in extra_v)
        xs = np.linspace(x0, x1, n)
        zz = z + bend * ((xs - mouth_centre[0]) / (0.5 * (x1 - x0))) ** 2
        top = np.stack([xs, np.full(n, y_top), zz], -1)
        bot = np.stack([xs, np.full(n, y_bot), zz], -1)
        extra_v.append(np.concatenate([top, bot]))
        extra_c.append(np.concatenate([np.tile(color_top, (n, 1)), np.tile(color_bot, (n, 1))]))
        extra_jaw.append(np.full(2 * n, jaw))
        extra_hw.append(np.ones(2 * n))
        for i in range(n - 1):
            a, b, c2, d = base + i, base + i + 1, base + n + i, base + n + i + 1
            extra_t.extend([(a, b, c2), (b, d, c2)])

    def add_fan(cx, cy, z, rx, ry, color_in, color_out, jaw_fn, n=24):
        base = first + sum(len(v) for v in extra_v)
        ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
        ring = np.stack([cx + rx * np.cos(ang), cy + ry * np.sin(ang), np.full(n, z)], -1)
        pts = np.concatenate([[[cx, cy, z]], ring])
        extra_v.append(pts)
        extra_c.append(np.concatenate([[color_in], np.tile(color_out, (n, 1))]))
        extra_jaw.append(jaw_fn(pts))
        extra_hw.append(np.ones(n + 1))
        for i in range(n):
            extra_t.append((base, base + 1 + i, base + 1 + (i + 1) % n))

    mx, my, mz = mouth_centre
    add_fan(mx, my + 0.004, mz + 0.022, 1.25 * hw, 0.9 * hw, (0.07, 0.02, 0.02),
            (0.30, 0.08, 0.08), lambda pts: smoothstep(my - 0.003, my + 0.012, pts[:, 1]))
    add_fan(mx, my + 0.016, mz + 0.014, 0.55 * hw, 0.25 * hw, (0.55, 0.24, 0.26),
            (0.38, 0.14, 0.16), lambda pts: np.ones(len(pts)))
    add_strip(mx - 0.78 * hw, mx + 0.78 * hw, my - 0.012, my + 0.0025, mz + 0.0045, 0.006,
              (0.80, 0.76, 0.68), (0.95, 0.93, 0.86), jaw=0.0)
    add_strip(mx - 0.7 * hw, mx + 0.7 * hw, my + 0.0045, my + 0.016, mz + 0.0065, 0.006,
              (0.93, 0.91, 0.84), (0.75, 0.70, 0.62), jaw=1.0)
    return extra_v, extra_c, extra_t, extra_jaw, extra_hw


def photo_texture(photo: np.ndarray, person_mask: np.ndarray | None, background: str,
             background_color) -> np.ndarray:
    """The photo [H, W, 3] float32 in [0, 1], its background blurred or replaced outside the
    person."""
    from scipy.ndimage import gaussian_filter

    tex = photo.astype(np.float32) / 255.0
    if person_mask is not None and background != "photo":
        m = gaussian_filter(person_mask.astype(np.float32), 2.0)[..., None]
        if background == "blur":
            other = np.stack([gaussian_filter(tex[..., c], 6.0) for c in range(3)], -1)
        else:
            other = np.broadcast_to(np.asarray(background_color, np.float32), tex.shape)
        tex = m * tex + (1 - m) * other
    return tex


def mouth_weights(hs: np.ndarray, n_lm: int, n_core: int, oval: list[int],
                   upper: list[int], lower: list[int], mouth_w: float):
    """Per vertex of the rest mesh hs [V, 3] (head space): (jaw weight: the lower face below
    the mouth corners, the lower lip forced in; lip-closure weight; upper-lip weight; mouth
    field), then the mouth centre [3] and the jaw's pivot [3]."""
    y_m = 0.5 * (hs[MOUTH_L, 1] + hs[MOUTH_R, 1])
    y_c = hs[CHIN, 1]
    span = y_c - y_m
    jaw_w = smoothstep(y_m - 0.15 * span, y_m + 0.55 * span, hs[:, 1])
    jaw_w[n_lm:] = 0.0
    lower_lip_outer = [146, 91, 181, 84, 17, 314, 405, 321, 375]
    upper_lip_outer = [185, 40, 39, 37, 0, 267, 269, 270, 409]
    jaw_w[lower[1:-1]] = 1.0
    jaw_w[lower_lip_outer] = 1.0
    jaw_w[upper[1:-1]] = 0.0
    jaw_w[upper_lip_outer] = 0.0
    jaw_w[[MOUTH_L, MOUTH_R, upper[0], upper[-1]]] = 0.5
    # Lip closure cancels the jaw's pull on the lower lip and its close surroundings.
    ll = hs[lower[1:-1] + lower_lip_outer]
    d2 = ((hs[:, None] - ll[None]) ** 2).sum(-1).min(1)
    lip_close = np.exp(-d2 / (2 * (0.18 * mouth_w) ** 2))
    lip_close[n_lm:] = 0.0
    ul = hs[upper[1:-1] + upper_lip_outer]
    upper_lip_w = np.exp(-((hs[:, None] - ul[None]) ** 2).sum(-1).min(1)
                         / (2 * (0.15 * mouth_w) ** 2))
    upper_lip_w[n_lm:] = 0.0
    # The rings around the face oval follow the jaw with their oval vertex (fading outwards),
    # so the chin's outline and shadow move with the chin.
    n_oval = len(oval)
    for k, fade in enumerate((1.0, 0.6, 0.3)):
        jaw_w[n_core + k * n_oval:n_core + (k + 1) * n_oval] = fade * jaw_w[oval]
    mouth_centre = 0.5 * (hs[13] + hs[14])
    dm = hs - mouth_centre
    mouth_field = np.exp(-(dm[:, 0] / (0.75 * mouth_w)) ** 2 - (dm[:, 1] / (0.55 * mouth_w)) ** 2
                         - (dm[:, 2] / (0.6 * mouth_w)) ** 2)
    mouth_field[n_lm:] = 0.0
    jaw_pivot = np.array([0.0, y_m - 0.035, mouth_centre[2] + 0.085])
    return jaw_w, lip_close, upper_lip_w, mouth_field, mouth_centre, jaw_pivot


def eye_lids(eyes: list[dict], hs: np.ndarray, tris_face: np.ndarray) -> None:
    """Complete each eye's record in place: the line where its lids meet, the ring of skin
    above the upper lid that follows it, and its openness reference points."""
    nbrs: dict[int, set[int]] = {}
    for t in tris_face:
        for a in t:
            nbrs.setdefault(int(a), set()).update(int(b) for b in t if b != a)
    for eye in eyes:
        up, lo = eye["upper"], eye["lower"]
        lo_at_up = interp_path(hs, lo, hs[up, 0])
        up_at_lo = interp_path(hs, up, hs[lo, 0])
        eye["meet_upper"] = lo_at_up + 0.25 * (hs[up] - lo_at_up)
        eye["meet_lower"] = hs[lo] + 0.25 * (up_at_lo - hs[lo])
        loop_set = set(eye["loop"])
        ring1 = sorted({n for v in up[1:-1] for n in nbrs[v]} - loop_set)
        src = [up.index(min(up, key=lambda u: np.linalg.norm(hs[u, :2] - hs[r, :2])))
               for r in ring1]
        # The skin ring above the upper lid follows it part of the way.
        eye["ring"] = (np.array(ring1), np.array(src), 0.45)
        eye["centre_offset"] = hs[eye["centre"]] - hs[eye["loop"]].mean(0)
        eye["mid_upper"] = up[len(up) // 2]


def eye_fans(L: np.ndarray, lm3: np.ndarray, eye_loops: list[list[int]],
              head_centre: np.ndarray, verts: list, uvs: list) -> tuple[list, list[dict]]:
    """Eye fans: one centre vertex per eye at the iris centre, appended to ``verts`` (head
    space) and ``uvs`` (photo pixels) after the landmarks; returns (the fans' triangles,
    each eye's record)."""
    n_lm = len(L)
    eye_tris, eyes = [], []
    for loop in eye_loops:
        iris = 468 if np.mean(L[loop, 0]) < np.mean(L[[468, 473], 0]) else 473
        centre_idx = n_lm + len(eyes)
        verts.append((lm3[iris] - head_centre)[None])
        uvs.append(L[iris, None, :2])
        for a, b in zip(loop, loop[1:] + loop[:1]):
            eye_tris.append((centre_idx, a, b))
        up, lo = split_lids(L, loop)
        eyes.append({"loop": loop, "centre": centre_idx, "upper": up, "lower": lo,
                     "iris": iris})
    return eye_tris, eyes
