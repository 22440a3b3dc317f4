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
    mesh_loops,
    mesh_triangles,
    triangle_regions,
)
from .photo import FaceLandmarks
from .rig_parts import (
    HEAD_DISTANCE,
    close_mouth_at_rest,
    eye_fans,
    eye_lids,
    interp_path,
    mouth_interior,
    mouth_weights,
    outer_mesh,
    photo_texture,
)

INTEROCULAR = 0.063          # m, iris centre distance
JAW_MAX_DEG = 14.0           # jaw rotation at jaw_open = 1
UPPER_LIP_RAISE = 0.003      # m the upper lip rises at jaw_open = 1 with lips apart

RIGHT_IRIS_IDS, LEFT_IRIS_IDS = range(468, 473), range(473, 478)


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
            below = interp_path(p, eye["lower"], p[mid:mid + 1, 0])[0]
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

    upper, lower, mouth_w = close_mouth_at_rest(lm3, L, mouth_loop)

    # --- Head space.
    oval_pts = lm3[oval]
    head_centre = np.array([oval_pts[:, 0].mean(), oval_pts[:, 1].mean(),
                            oval_pts[:, 2].mean() + 0.075])
    verts, uvs, n_lm = [lm3 - head_centre], [uv_lm], len(L)

    eye_tris, eyes = eye_fans(L, lm3, eye_loops, head_centre, verts, uvs)
    n_core = n_lm + len(eyes)

    outer_uv, outer_depth, ring_w, grid_w, outer_tris = outer_mesh(L, depth, oval, W, H,
                                                                      n_core)
    verts.append(_unproject(K, outer_uv, outer_depth) - head_centre)
    uvs.append(outer_uv)
    head_weight = np.concatenate([np.ones(n_core), ring_w, grid_w])

    rest = np.concatenate(verts)
    uv = np.concatenate(uvs)
    V = len(rest)

    # --- Labels of the textured triangles.
    face_labels = triangle_regions(L)
    outer_labels = np.where(head_weight[outer_tris].mean(1) > 0.8, LABEL_HEAD, LABEL_BACKGROUND)

    jaw_w, lip_close, upper_lip_w, mouth_field, mouth_centre, jaw_pivot = mouth_weights(
        rest, n_lm, n_core, oval, upper, lower, mouth_w)
    eye_lids(eyes, rest, tris_face)

    hw = 0.5 * mouth_w
    extra_v, extra_c, extra_t, extra_jaw, extra_hw = mouth_interior(V, mouth_centre, hw)

    n_extra = sum(len(v) for v in extra_v)
    zeros = np.zeros(n_extra)
    # The mouth interior is seen only through the lip opening: in the z-test it lies behind
    # every face triangle (the face mesh has a hole there and nothing else covers it).
    depth_bias = np.concatenate([np.zeros(V), np.ones(n_extra)])
    tris = np.concatenate([tris_face, np.array(eye_tris), outer_tris,
                           np.array(extra_t)]).astype(np.int32)
    textured = np.concatenate([np.ones(len(tris_face) + len(eye_tris) + len(outer_tris), bool),
                               np.zeros(len(extra_t), bool)])
    labels = np.concatenate([face_labels, np.full(len(eye_tris), LABEL_EYES), outer_labels,
                             np.full(len(extra_t), LABEL_MOUTH)]).astype(np.uint8)

    tex = photo_texture(photo, person_mask, background, background_color)
    return FaceRig(rest=np.concatenate([rest] + extra_v),
                   uv=np.concatenate([uv, np.zeros((n_extra, 2))]),
                   colors=np.concatenate([np.zeros((V, 3)), *extra_c]).astype(np.float32),
                   head_weight=np.concatenate([head_weight, *extra_hw]),
                   jaw_weight=np.concatenate([jaw_w, *extra_jaw]),
                   lip_close_weight=np.concatenate([lip_close, zeros]),
                   upper_lip_weight=np.concatenate([upper_lip_w, zeros]),
                   mouth_field=np.concatenate([mouth_field, zeros]),
                   depth_bias=depth_bias, tris=tris,
                   textured=textured, labels=labels, texture=np.ascontiguousarray(tex),
                   K_photo=K, head_centre=head_centre, jaw_pivot=jaw_pivot,
                   mouth_centre=mouth_centre, mouth_half_width=hw, eyes=eyes, scale=scale)
