"""mediapipe's face mesh: its topology (triangles, border loops) and the face regions.

One place for what the synthetic subject's truth and the preprocessing both need: the 468-vertex
triangle mesh recovered from mediapipe's published edge list, its ordered border loops (face
oval, mouth opening, eye openings), and the classification of triangles into face, eyes and
mouth regions, so that masks made from landmarks mean the same thing everywhere.
"""

from __future__ import annotations

import collections
import functools

import numpy as np

N_LANDMARKS = 478                 # mediapipe face mesh with iris refinement
N_MESH_VERTICES = 468             # the tessellated part (the last 10 are iris points)
RIGHT_IRIS, LEFT_IRIS = 468, 473  # iris centres (the subject's right / left eye)
MOUTH_L, MOUTH_R = 61, 291
# Outer lip contour, in order around the mouth.
OUTER_LIPS = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84,
              181, 91, 146]

# Region labels (label maps, masks). The synthetic truth lumps torso and background (5);
# datasets separate the torso (6) from the background (0).
LABEL_NONE, LABEL_FACE, LABEL_EYES, LABEL_MOUTH, LABEL_HEAD, LABEL_BACKGROUND = 0, 1, 2, 3, 4, 5
LABEL_TORSO = 6


@functools.lru_cache(maxsize=1)
def mesh_triangles() -> np.ndarray:
    """Triangles [T, 3] of mediapipe's 468-vertex face mesh, consistently ordered.

    Recovered from the edge list mediapipe publishes (FACEMESH_TESSELATION): every
    triangle of the mesh is a 3-cycle of edges. The two 3-cycles that are not faces (each
    of their edges already borders two faces) are dropped. The result has holes at the
    mouth opening and the two eye openings, and the face oval as its outer border.
    """
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    adj = collections.defaultdict(set)
    for a, b in FACEMESH_TESSELATION:
        adj[a].add(b)
        adj[b].add(a)
    cliques = {tuple(sorted((a, b, c))) for a, b in FACEMESH_TESSELATION
               for c in adj[a] & adj[b]}
    uses = collections.Counter()
    for t in cliques:
        uses.update([(t[0], t[1]), (t[1], t[2]), (t[0], t[2])])
    tris = [t for t in sorted(cliques)
            if min(uses[(t[0], t[1])], uses[(t[1], t[2])], uses[(t[0], t[2])]) < 3]
    return np.array(tris, dtype=np.int32)


def boundary_loops(triangles: np.ndarray) -> list[list[int]]:
    """Vertex sets of the border loops of a triangle mesh (edges used by one triangle)."""
    uses = collections.Counter()
    for a, b, c in triangles:
        uses.update([tuple(sorted(e)) for e in ((a, b), (b, c), (a, c))])
    adj = collections.defaultdict(list)
    for (a, b), n in uses.items():
        if n == 1:
            adj[a].append(b)
            adj[b].append(a)
    loops, seen = [], set()
    for v in adj:
        if v in seen:
            continue
        comp, stack = [], [v]
        while stack:
            x = stack.pop()
            if x not in seen:
                seen.add(x)
                comp.append(x)
                stack.extend(adj[x])
        loops.append(sorted(comp))
    return loops


def ordered_loop(triangles: np.ndarray, loop: list[int]) -> list[int]:
    """The vertices of one border loop in walking order."""
    vs = set(loop)
    nbr: dict[int, list[int]] = {v: [] for v in loop}
    count: dict[tuple[int, int], int] = {}
    for tri in triangles:
        for a, b in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[0], tri[2])):
            if a in vs and b in vs:
                key = (min(a, b), max(a, b))
                count[key] = count.get(key, 0) + 1
    for (a, b), n in count.items():
        if n == 1:
            nbr[a].append(b)
            nbr[b].append(a)
    order = [loop[0]]
    prev = None
    while True:
        nxt = [v for v in nbr[order[-1]] if v != prev]
        if not nxt or nxt[0] == order[0]:
            break
        prev = order[-1]
        order.append(nxt[0])
    return order


def split_lids(points2d: np.ndarray, loop: list[int]):
    """Split an eye or inner-lip loop at its leftmost and rightmost vertices.

    Returns (upper path, lower path), each ordered left to right and sharing the corners.
    """
    x = points2d[loop, 0]
    i0, i1 = int(np.argmin(x)), int(np.argmax(x))
    n = len(loop)
    a = [loop[(i0 + k) % n] for k in range((i1 - i0) % n + 1)]
    b = [loop[(i0 - k) % n] for k in range((i0 - i1) % n + 1)]
    if points2d[a[1:-1], 1].mean() < points2d[b[1:-1], 1].mean():
        return a, b
    return b, a


@functools.lru_cache(maxsize=1)
def mesh_loops() -> dict[str, list]:
    """Ordered border loops of the mesh: "oval", "mouth", and "eyes" (two loops)."""
    tris = mesh_triangles()
    loops = sorted(boundary_loops(tris), key=len)
    return {"eyes": [ordered_loop(tris, lp) for lp in loops[:2]],
            "mouth": ordered_loop(tris, loops[2]), "oval": ordered_loop(tris, loops[3])}


# Mirroring the image swaps the irises; each iris ring is centre, then the points right, above,
# left and below it in the image, so the horizontal ones trade places.
_IRIS_MIRROR = {468: 473, 469: 476, 470: 475, 471: 474, 472: 477}
_MIDLINE_EDGE = (1, 4)      # nose tip and the point above it: both on the face's midline


@functools.lru_cache(maxsize=1)
def mirror_permutation() -> np.ndarray:
    """perm [478]: landmark ``perm[i]`` of a face is landmark ``i`` of its mirror image.

    Derived from the mesh alone. A left-right mirror fixes the midline, so the map starts
    from a midline edge and its two triangles, then grows one vertex pair at a time, always
    the pair whose mapped neighbours agree best (a few quads of the tessellation are split
    along the other diagonal on the two sides, so triangles alone would mislead there).
    """
    nbrs = collections.defaultdict(set)
    for t in mesh_triangles():
        for a in t:
            nbrs[int(a)].update(int(b) for b in t if b != a)
    a, b = _MIDLINE_EDGE
    x, y = sorted(nbrs[a] & nbrs[b])
    m = {a: a, b: b, x: y, y: x}
    while len(m) < N_MESH_VERTICES:
        best = (0, -1, -1)
        for c in range(N_MESH_VERTICES):
            if c in m:
                continue
            images = [nbrs[m[n]] for n in nbrs[c] if n in m]
            for d in set().union(*images) - m.keys():
                best = max(best, (sum(d in im for im in images), -c, -d))
        score, c, d = best[0], -best[1], -best[2]
        if score < 2:
            raise RuntimeError(f"mirror map stuck at {len(m)} of {N_MESH_VERTICES} vertices")
        m[c], m[d] = d, c                # a mirror is its own inverse
    perm = np.arange(N_LANDMARKS)
    perm[:N_MESH_VERTICES] = [m[v] for v in range(N_MESH_VERTICES)]
    for a, b in _IRIS_MIRROR.items():
        perm[a], perm[b] = b, a
    perm.flags.writeable = False          # cached: shared by every caller
    return perm


def triangle_regions(points2d: np.ndarray) -> np.ndarray:
    """Region label [T] of each mesh triangle, judged on one face's 2D landmarks.

    Mouth: centroid inside the outer lip contour. Eyes: at least two corners on an eye
    opening (the lids' first ring). Face: the rest.
    """
    from matplotlib.path import Path as PolyPath

    tris = mesh_triangles()
    lips = PolyPath(points2d[OUTER_LIPS, :2])
    eye_set = {v for loop in mesh_loops()["eyes"] for v in loop}
    on_eye = np.isin(tris, list(eye_set)).sum(1) >= 2
    in_lips = lips.contains_points(points2d[tris, :2].mean(1))
    return np.where(in_lips, LABEL_MOUTH, np.where(on_eye, LABEL_EYES, LABEL_FACE)).astype(
        np.uint8)


def region_points(points: np.ndarray) -> np.ndarray:
    """The vertices of :func:`region_mesh`: the landmarks [478, C] plus the mouth centre."""
    return np.concatenate([points, points[mesh_loops()["mouth"]].mean(0, keepdims=True)])


def region_mesh(points2d: np.ndarray):
    """Triangles and labels covering the face, with the eye and mouth openings filled.

    Returns (points [478 + 1, 2] with the mouth centre appended, triangles [T, 3],
    labels [T]): the mesh triangles with their regions, a fan over each eye opening from its
    iris centre (eyes) and a fan over the mouth opening from its centre (mouth).
    """
    loops = mesh_loops()
    mouth_centre = len(points2d)
    pts = region_points(points2d[:, :2])
    fans, labels = [], []
    for loop in loops["eyes"]:
        iris = RIGHT_IRIS if np.mean(points2d[loop, 0]) < np.mean(
            points2d[[RIGHT_IRIS, LEFT_IRIS], 0]) else LEFT_IRIS
        fans += [(iris, a, b) for a, b in zip(loop, loop[1:] + loop[:1])]
        labels += [LABEL_EYES] * len(loop)
    m = loops["mouth"]
    fans += [(mouth_centre, a, b) for a, b in zip(m, m[1:] + m[:1])]
    labels += [LABEL_MOUTH] * len(m)
    tris = np.concatenate([mesh_triangles(), np.array(fans, np.int32)])
    return pts, tris, np.concatenate([triangle_regions(points2d), labels]).astype(np.uint8)
