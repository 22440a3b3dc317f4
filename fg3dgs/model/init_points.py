"""Initial Gaussians per region from a dataset: points on the canonical face mesh (face, eye
and mouth triangles, the eye and mouth openings filled, a layer behind the lips for the
mouth's inside), plus points on a head-sized ellipsoid shell that land on hair / ears / neck
pixels, coloured from the frames. The inside layer's upper half is the upper teeth: rigid
with the head (the skull carries them), while the lips, the lower teeth and the tongue
follow the mouth network."""

from __future__ import annotations

import numpy as np

from ..facemesh import LABEL_EYES, LABEL_FACE, LABEL_HEAD, LABEL_MOUTH, region_mesh, region_points

MOUTH_DEPTH = 0.008      # m: the mouth's inside sits this far behind the lip opening
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14      # mediapipe face mesh: the inner lips' middle


def sample_triangles(pts: np.ndarray, tris: np.ndarray, n: int,
                     rng: np.random.Generator) -> np.ndarray:
    """n points [n, 3] uniformly on the triangles' surface."""
    a, b, c = pts[tris[:, 0]], pts[tris[:, 1]], pts[tris[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=-1)
    k = rng.choice(len(tris), n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    return a[k] + u[:, None] * (b[k] - a[k]) + v[:, None] * (c[k] - a[k])


def project(points: np.ndarray, R: np.ndarray, t: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Head-space points [N, 3] -> pixels [N, 2] for one camera."""
    cam = points @ R.T + t
    return cam[:, :2] / cam[:, 2:3] * K[[0, 1], [0, 1]] + K[[0, 1], [2, 2]]


def initial_points(canonical: np.ndarray, frames, counts: dict[str, int], seed: int = 0):
    """Points and colours per region.

    Args:
        canonical: [478, 3] head-space landmarks (the dataset's cameras.npz "canonical").
        frames: list of (image [H, W, 3] float, labels [H, W], R [3, 3], t [3], K [3, 3])
            sample frames used to colour points and to find the hair / ears / neck.
        counts: region ("face", "eyes", "mouth", "head_rest") -> number of points.
    Returns: region -> (points [N, 3], colours [N, 3], rigid [N] bool: the upper teeth);
    "head_rest" points belong to the face set (they move rigidly with the head).
    """
    rng = np.random.default_rng(seed)
    _, tris, labels = region_mesh(canonical[:, :2])
    verts = region_points(canonical)      # + the mouth centre, in 3D
    out, rigid = {}, {}
    for name, label in (("face", LABEL_FACE), ("eyes", LABEL_EYES), ("mouth", LABEL_MOUTH)):
        p = sample_triangles(verts, tris[labels == label], counts[name], rng)
        rigid[name] = np.zeros(len(p), bool)
        if name == "mouth":    # half on the lips and opening, half behind: teeth, tongue
            back = rng.random(len(p)) < 0.5
            p[back, 2] += MOUTH_DEPTH * rng.uniform(0.5, 1.5, back.sum())
            # above the line where the inner lips meet (head space: y points down)
            rigid[name] = back & (p[:, 1] < 0.5 * (canonical[UPPER_INNER_LIP, 1]
                                                   + canonical[LOWER_INNER_LIP, 1]))
        out[name] = p
    out["head_rest"] = _head_shell(canonical, frames, counts["head_rest"], rng)
    rigid["head_rest"] = np.zeros(len(out["head_rest"]), bool)
    return {k: (v.astype(np.float32), _colours(v, frames), rigid[k]) for k, v in out.items()}


def _head_shell(canonical: np.ndarray, frames, n: int, rng) -> np.ndarray:
    """Points on an ellipsoid around the skull that project onto head (hair, ears, neck)
    pixels in most sample frames."""
    lo, hi = canonical.min(0), canonical.max(0)
    size = hi - lo
    centre = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2 - 0.1 * size[1],
                       lo[2] + 0.55 * size[0]])
    radii = np.array([0.62 * size[0], 0.68 * size[1], 0.55 * size[0]])
    keep = []
    for _ in range(20):
        d = rng.normal(size=(8 * n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        cand = centre + d * radii * rng.uniform(0.9, 1.08, (len(d), 1))
        hits = np.zeros(len(cand))
        seen = np.zeros(len(cand))
        for _img, lab, R, t, K in frames:
            uv = np.round(project(cand, R, t, K) - 0.5).astype(int)
            H, W = lab.shape
            inside = (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
            seen += inside
            hits[inside] += lab[uv[inside, 1], uv[inside, 0]] == LABEL_HEAD
        ok = (seen > 0) & (hits >= 0.5 * seen)
        keep.append(cand[ok])
        if sum(len(k) for k in keep) >= n:
            break
    allp = np.concatenate(keep)
    if len(allp) == 0:
        return np.zeros((0, 3))
    return allp[rng.choice(len(allp), min(n, len(allp)), replace=False)]


def _colours(points: np.ndarray, frames) -> np.ndarray:
    """Median colour [N, 3] of the points' projections over the sample frames."""
    cols = []
    for img, _lab, R, t, K in frames:
        H, W = img.shape[:2]
        uv = np.round(project(points, R, t, K) - 0.5).astype(int)
        uv[:, 0] = uv[:, 0].clip(0, W - 1)
        uv[:, 1] = uv[:, 1].clip(0, H - 1)
        cols.append(img[uv[:, 1], uv[:, 0]])
    return np.median(np.stack(cols), axis=0).astype(np.float32)
