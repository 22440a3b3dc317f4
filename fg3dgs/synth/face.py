"""An animatable 3D face built from one portrait photo.

The photo's mediapipe landmarks (478 points with depth) are lifted to metric 3D with a
pinhole camera that puts the head 0.6 m away and the irises 63 mm apart. The face mesh
(mediapipe's 468-vertex topology) is textured by the photo; rings around the face oval and a
grid over the rest of the photo extend it to a full portrait mesh (hair, neck, shoulders,
background) that follows the head with smoothly decreasing weight, so nothing ever tears.
The eye openings are filled with fans textured by the photo's eyes; behind the mouth opening
sit a dark cavity, upper and lower teeth and a tongue.

Expression: jaw rotation about a pivot near the ears moves the lower face; the lips close,
spread and round through smooth displacement fields; eyelids meet at a line near the lower
lid. All of it happens in head space; the head pose then moves the weighted vertices.
Head space: OpenCV axes (x right, y down, z away from the viewer), origin inside the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..facemesh import (
    LABEL_BACKGROUND,
    LABEL_EYES,
    LABEL_HEAD,
    LABEL_MOUTH,
    MOUTH_L,
    MOUTH_R,
    N_MESH_VERTICES,
    mesh_loops,
    mesh_triangles,
    split_lids,
    triangle_regions,
)
from .photo import FaceLandmarks

HEAD_DISTANCE = 0.6          # m, photo camera to face
INTEROCULAR = 0.063          # m, iris centre distance
JAW_MAX_DEG = 14.0           # jaw rotation at jaw_open = 1
UPPER_LIP_RAISE = 0.003      # m the upper lip rises at jaw_open = 1 with lips apart

CHIN, FOREHEAD = 152, 10
RIGHT_IRIS_IDS, LEFT_IRIS_IDS = range(468, 473), range(473, 478)


def _interp_path(points: np.ndarray, path: list[int], xs: np.ndarray) -> np.ndarray:
    """Positions along ``path`` (ordered by x) at horizontal coordinates ``xs``."""
    p = points[path]
    return np.stack([np.interp(xs, p[:, 0], p[:, k]) for k in range(points.shape[1])], -1)


def _smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _rot_x(deg):
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


@dataclass
class Expression:
    """One frame's expression: the four mouth parameters and the eye openness per eye."""

    jaw_open: float = 0.0
    lip_spread: float = 0.0
    lip_round: float = 0.0
    lip_closure: float = 1.0
    eye_open: tuple[float, float] = (1.0, 1.0)     # subject's right, left


@dataclass
class FaceRig:
    """Everything needed to pose and draw the face. V vertices, T triangles.

    rest [V, 3] head-space positions (mouth closed), uv [V, 2] photo texel coordinates,
    colors [V, 3], head_weight [V], jaw_weight [V]; tris [T, 3], textured [T], labels [T];
    texture [H, W, 3] float32; K_photo [3, 3]; head_centre [3] (camera space of the photo).
    The first 478 vertices are mediapipe's landmarks (iris points 468-477 included).
    """

    rest: np.ndarray
    uv: np.ndarray
    colors: np.ndarray
    head_weight: np.ndarray
    jaw_weight: np.ndarray
    lip_close_weight: np.ndarray
    upper_lip_weight: np.ndarray      # [V] smooth weight of the upper lip
    mouth_field: np.ndarray           # [V] smooth weight of the lips' surroundings
    depth_bias: np.ndarray            # [V] added to depth for the z-test only (interior: 1 m)
    tris: np.ndarray
    textured: np.ndarray
    labels: np.ndarray
    texture: np.ndarray
    K_photo: np.ndarray
    head_centre: np.ndarray
    jaw_pivot: np.ndarray
    mouth_centre: np.ndarray
    mouth_half_width: float
    eyes: list[dict]                  # per eye: upper, lower, fan centre index, ring weights
    scale: float                      # metres per photo pixel at the face

    def deform(self, e: Expression) -> np.ndarray:
        """Head-space vertex positions [V, 3] for one expression."""
        p = self.rest.copy()
        c = self.mouth_centre
        # Lips spread / round: horizontal stretch around the mouth, rounding protrudes.
        f = self.mouth_field
        dx = (p[:, 0] - c[0]) * f * (0.3 * e.lip_spread - 0.42 * e.lip_round)
        p[:, 0] += dx
        p[:, 2] -= 0.007 * e.lip_round * f ** 2
        p[:, 1] -= 0.0015 * e.lip_spread * f * (np.abs(p[:, 0] - c[0]) / self.mouth_half_width)
        # Jaw: rotate about the pivot, weighted; the closure keeps the lower lip up.
        R = _rot_x(JAW_MAX_DEG * e.jaw_open)
        moved = (p - self.jaw_pivot) @ R.T + self.jaw_pivot
        w = self.jaw_weight * (1.0 - e.lip_closure * self.lip_close_weight)
        p += (moved - p) * w[:, None]
        # The upper lip lifts a little as the mouth opens (lips open more than the jaw).
        p[:, 1] -= UPPER_LIP_RAISE * e.jaw_open * (1.0 - e.lip_closure) * self.upper_lip_weight
        # Eyelids meet at a line a quarter of the way up from the lower lid.
        for side, eye in enumerate(self.eyes):
            o = float(np.clip(e.eye_open[side], 0.0, 1.0))
            if o >= 1.0:
                continue
            up, lo = eye["upper"], eye["lower"]
            meet_u, meet_l = eye["meet_upper"], eye["meet_lower"]
            du = (meet_u + o * (self.rest[up] - meet_u)) - self.rest[up]
            dl = (meet_l + o * (self.rest[lo] - meet_l)) - self.rest[lo]
            p[up] += du
            p[lo] += dl
            ring, src, wgt = eye["ring"]
            p[ring] += wgt * du[src]
            p[eye["centre"]] = p[eye["loop"]].mean(axis=0) + eye["centre_offset"]
        return p

    def pose(self, head_space: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Camera-space positions: vertices blend between rest placement and the posed head.

        A head-space point X of a fully attached vertex goes to R X + t; weight w mixes
        that with the rest placement X + head_centre.
        """
        rigid = head_space @ R.T + t
        still = head_space + self.head_centre
        w = self.head_weight[:, None]
        return w * rigid + (1 - w) * still

    def eye_openness(self, head_space: np.ndarray) -> np.ndarray:
        """[2] lid opening (upper lid middle to the lower lid below it) relative to the
        photo's, per eye."""
        def gap(p, eye):
            mid = eye["mid_upper"]
            below = _interp_path(p, eye["lower"], p[mid:mid + 1, 0])[0]
            return np.linalg.norm(p[mid] - below)

        return np.array([gap(head_space, e) / max(gap(self.rest, e), 1e-9) for e in self.eyes])


def _photo_camera(face: FaceLandmarks):
    w, h = face.image_size
    scale = INTEROCULAR / face.interocular             # m per pixel at the face
    f = HEAD_DISTANCE / scale
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    return K, scale


def _unproject(K, uv, depth):
    x = (uv[:, 0] - K[0, 2]) * depth / K[0, 0]
    y = (uv[:, 1] - K[1, 2]) * depth / K[1, 1]
    return np.stack([x, y, depth], axis=-1)


def build_rig(photo: np.ndarray, face: FaceLandmarks, person_mask: np.ndarray | None = None,
              background: str = "blur", background_color=(0.45, 0.5, 0.55)) -> FaceRig:
    """Build the animatable face of one photo.

    Args:
        photo: RGB uint8 [H, W, 3]; face: its landmarks.
        person_mask: [H, W] bool, the person (for blurring the background), or None.
        background: "blur" (photo background blurred), "photo" (as is) or "plain".
    """
    from matplotlib.path import Path as PolyPath
    from scipy.ndimage import gaussian_filter
    from scipy.spatial import Delaunay

    H, W = photo.shape[:2]
    K, scale = _photo_camera(face)
    L = face.points
    tris_face = mesh_triangles()
    loops = mesh_loops()
    oval, mouth_loop, eye_loops = loops["oval"], loops["mouth"], loops["eyes"]

    # --- 3D landmarks: photo pixel + mediapipe depth, metric.
    depth = HEAD_DISTANCE + L[:, 2] * scale
    lm3 = _unproject(K, L[:, :2], depth)
    uv_lm = L[:, :2].copy()

    # --- Close the mouth at rest: inner lips meet at their midline, neighbours follow.
    upper, lower = split_lids(L, mouth_loop)
    xs_u = lm3[upper, 0]
    xs_l = lm3[lower, 0]
    mid_u = 0.5 * (lm3[upper] + _interp_path(lm3, lower, xs_u))
    mid_l = 0.5 * (lm3[lower] + _interp_path(lm3, upper, xs_l))
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

    # --- Head space.
    oval_pts = lm3[oval]
    head_centre = np.array([oval_pts[:, 0].mean(), oval_pts[:, 1].mean(),
                            oval_pts[:, 2].mean() + 0.075])
    verts = [lm3 - head_centre]
    uvs = [uv_lm]
    n_lm = len(L)

    # --- Eye fans: one centre vertex per eye at the iris centre.
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
    n_core = n_lm + len(eyes)

    # --- Outer rings around the face oval and a grid over the photo.
    centre2d = L[oval, :2].mean(0)
    face_h = np.linalg.norm(L[CHIN, :2] - L[FOREHEAD, :2])
    ring_uv, ring_depth, ring_w = [], [], []
    for k, (grow, back, wgt) in enumerate(((1.18, 0.02, 1.0), (1.45, 0.05, 0.95),
                                           (1.8, 0.09, 0.75))):
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
    verts.append(_unproject(K, outer_uv, outer_depth) - head_centre)
    uvs.append(outer_uv)
    head_weight = np.concatenate([np.ones(n_core), ring_w, grid_w])

    # Delaunay over oval + outer points; keep triangles outside the face oval.
    pts2d = np.concatenate([L[oval, :2], outer_uv])
    ids = np.concatenate([np.array(oval), n_core + np.arange(len(outer_uv))])
    dl = Delaunay(pts2d)
    cent = pts2d[dl.simplices].mean(1)
    keep = ~PolyPath(L[oval, :2]).contains_points(cent)
    outer_tris = ids[dl.simplices[keep]]

    rest = np.concatenate(verts)
    uv = np.concatenate(uvs)
    V = len(rest)

    # --- Labels of the textured triangles.
    face_labels = triangle_regions(L)
    outer_labels = np.where(head_weight[outer_tris].mean(1) > 0.8, LABEL_HEAD, LABEL_BACKGROUND)

    # --- Jaw weights: lower face below the mouth corners, lower lip forced in.
    hs = rest
    y_m = 0.5 * (hs[MOUTH_L, 1] + hs[MOUTH_R, 1])
    y_c = hs[CHIN, 1]
    span = y_c - y_m
    jaw_w = _smoothstep(y_m - 0.15 * span, y_m + 0.55 * span, hs[:, 1])
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

    # --- Eyes: lid meeting line, neighbour rings, openness reference points.
    nbrs: dict[int, set[int]] = {}
    for t in tris_face:
        for a in t:
            nbrs.setdefault(int(a), set()).update(int(b) for b in t if b != a)
    for eye in eyes:
        up, lo = eye["upper"], eye["lower"]
        lo_at_up = _interp_path(hs, lo, hs[up, 0])
        up_at_lo = _interp_path(hs, up, hs[lo, 0])
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

    # --- Mouth interior: cavity, teeth, tongue (vertex-coloured, behind the lips).
    extra_v, extra_c, extra_t, extra_jaw, extra_hw = [], [], [], [], []

    def add_strip(x0, x1, y_top, y_bot, z, bend, color_top, color_bot, jaw, n=12):
        base = V + sum(len(v) for v in extra_v)
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
        base = V + sum(len(v) for v in extra_v)
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
    hw = 0.5 * mouth_w
    add_fan(mx, my + 0.004, mz + 0.022, 1.25 * hw, 0.9 * hw, (0.07, 0.02, 0.02),
            (0.30, 0.08, 0.08), lambda pts: _smoothstep(my - 0.003, my + 0.012, pts[:, 1]))
    add_fan(mx, my + 0.016, mz + 0.014, 0.55 * hw, 0.25 * hw, (0.55, 0.24, 0.26),
            (0.38, 0.14, 0.16), lambda pts: np.ones(len(pts)))
    add_strip(mx - 0.78 * hw, mx + 0.78 * hw, my - 0.012, my + 0.0025, mz + 0.0045, 0.006,
              (0.80, 0.76, 0.68), (0.95, 0.93, 0.86), jaw=0.0)
    add_strip(mx - 0.7 * hw, mx + 0.7 * hw, my + 0.0045, my + 0.016, mz + 0.0065, 0.006,
              (0.93, 0.91, 0.84), (0.75, 0.70, 0.62), jaw=1.0)

    n_extra = sum(len(v) for v in extra_v)
    rest = np.concatenate([rest] + extra_v)
    uv = np.concatenate([uv, np.zeros((n_extra, 2))])
    colors = np.concatenate([np.zeros((V, 3)), *extra_c]).astype(np.float32)
    head_weight = np.concatenate([head_weight, *extra_hw])
    jaw_w = np.concatenate([jaw_w, *extra_jaw])
    lip_close = np.concatenate([lip_close, np.zeros(n_extra)])
    upper_lip_w = np.concatenate([upper_lip_w, np.zeros(n_extra)])
    mouth_field = np.concatenate([mouth_field, np.zeros(n_extra)])
    # The mouth interior is seen only through the lip opening: in the z-test it lies behind
    # every face triangle (the face mesh has a hole there and nothing else covers it).
    depth_bias = np.concatenate([np.zeros(V), np.ones(n_extra)])

    tris = np.concatenate([tris_face, np.array(eye_tris), outer_tris,
                           np.array(extra_t)]).astype(np.int32)
    textured = np.concatenate([np.ones(len(tris_face) + len(eye_tris) + len(outer_tris), bool),
                               np.zeros(len(extra_t), bool)])
    labels = np.concatenate([face_labels, np.full(len(eye_tris), LABEL_EYES), outer_labels,
                             np.full(len(extra_t), LABEL_MOUTH)]).astype(np.uint8)

    # --- Texture: the photo, background blurred or replaced outside the person.
    tex = photo.astype(np.float32) / 255.0
    if person_mask is not None and background != "photo":
        m = gaussian_filter(person_mask.astype(np.float32), 2.0)[..., None]
        if background == "blur":
            other = np.stack([gaussian_filter(tex[..., c], 6.0) for c in range(3)], -1)
        else:
            other = np.broadcast_to(np.asarray(background_color, np.float32), tex.shape)
        tex = m * tex + (1 - m) * other
    return FaceRig(rest=rest, uv=uv, colors=colors, head_weight=head_weight, jaw_weight=jaw_w,
                   lip_close_weight=lip_close, upper_lip_weight=upper_lip_w,
                   mouth_field=mouth_field,
                   depth_bias=depth_bias, tris=tris,
                   textured=textured, labels=labels, texture=np.ascontiguousarray(tex),
                   K_photo=K, head_centre=head_centre, jaw_pivot=jaw_pivot,
                   mouth_centre=mouth_centre, mouth_half_width=hw, eyes=eyes, scale=scale)
