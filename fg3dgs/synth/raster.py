"""A textured-triangle software rasterizer (numba): z-buffer, perspective-correct attributes.

Used by the synthetic subject to draw the animated photo mesh. A triangle is either textured
(bilinear lookup in one RGB texture by per-vertex texel coordinates) or coloured (per-vertex
colours). Each triangle also carries a small integer label, written to a label buffer, from
which the region masks come. Coverage follows the usual top-left-free rule: a pixel centre
(x + 0.5, y + 0.5) is inside when all three edge functions are >= 0 (for either winding).
Anti-aliasing is done by the caller: render at k x the size, then :func:`downsample`.

The image is split into horizontal bands, one thread per band, so no two threads ever write
the same pixel. :func:`rasterize_reference` is the slow numpy version the tests compare with.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

BAND = 8   # rows per parallel band


@njit(cache=True, inline="always")
def _sample_bilinear(tex, u, v):
    """Texture [H, W, 3] float32 at texel coordinates (u, v) (texel centres at i + 0.5)."""
    h, w = tex.shape[0], tex.shape[1]
    x = min(max(u - 0.5, 0.0), w - 1.0)
    y = min(max(v - 0.5, 0.0), h - 1.0)
    x0 = int(x)
    y0 = int(y)
    x1 = min(x0 + 1, w - 1)
    y1 = min(y0 + 1, h - 1)
    fx = x - x0
    fy = y - y0
    return (_lerp2(tex, y0, y1, x0, x1, fx, fy, 0), _lerp2(tex, y0, y1, x0, x1, fx, fy, 1),
            _lerp2(tex, y0, y1, x0, x1, fx, fy, 2))


@njit(cache=True, inline="always")
def _lerp2(tex, y0, y1, x0, x1, fx, fy, c):
    """Channel c bilinearly between four texels (scalars: no array per pixel)."""
    top = tex[y0, x0, c] * (1 - fx) + tex[y0, x1, c] * fx
    bot = tex[y1, x0, c] * (1 - fx) + tex[y1, x1, c] * fx
    return np.float32(top * (1 - fy) + bot * fy)


@njit(parallel=True, cache=True, nogil=True)
def rasterize_mesh(xy, depth, tris, uv, colors, textured, labels, texture, width, height,
                   background, out_rgb, out_depth, out_label):
    """Draw triangles with a z-buffer.

    Args:
        xy [V, 2] float64 pixel positions, depth [V] float64 camera depth (> 0),
        tris [T, 3] int32, uv [V, 2] texel coordinates, colors [V, 3] float32,
        textured [T] bool (texture lookup, else vertex colours), labels [T] uint8,
        texture [Ht, Wt, 3] float32, background [3] float32.
    Writes:
        out_rgb [H, W, 3] float32, out_depth [H, W] float64 (inf where empty),
        out_label [H, W] uint8 (0 where empty).
    """
    n_bands = (height + BAND - 1) // BAND
    half = (n_bands + 1) // 2
    T = tris.shape[0]
    for k in prange(n_bands):
        # even bands first, then odd: numba splits a prange into contiguous blocks, and
        # contiguous halves of the image (the head above, the shoulders below) differ in work
        band = 2 * k if k < half else 2 * (k - half) + 1
        y_lo = band * BAND
        y_hi = min(y_lo + BAND, height)
        for y in range(y_lo, y_hi):
            for x in range(width):
                out_depth[y, x] = np.inf
                out_label[y, x] = 0
                for c in range(3):
                    out_rgb[y, x, c] = background[c]
        for t in range(T):
            i0, i1, i2 = tris[t, 0], tris[t, 1], tris[t, 2]
            x0, y0 = xy[i0, 0], xy[i0, 1]
            x1, y1 = xy[i1, 0], xy[i1, 1]
            x2, y2 = xy[i2, 0], xy[i2, 1]
            area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
            if area == 0.0:
                continue
            ymin = max(int(np.ceil(min(y0, y1, y2) - 0.5)), y_lo)
            ymax = min(int(np.floor(max(y0, y1, y2) - 0.5)), y_hi - 1)
            if ymin > ymax:
                continue
            xmin = max(int(np.ceil(min(x0, x1, x2) - 0.5)), 0)
            xmax = min(int(np.floor(max(x0, x1, x2) - 0.5)), width - 1)
            if xmin > xmax:
                continue
            inv_area = 1.0 / area
            iz0, iz1, iz2 = 1.0 / depth[i0], 1.0 / depth[i1], 1.0 / depth[i2]
            for py in range(ymin, ymax + 1):
                cy = py + 0.5
                for px in range(xmin, xmax + 1):
                    cx = px + 0.5
                    w0 = ((x1 - cx) * (y2 - cy) - (x2 - cx) * (y1 - cy)) * inv_area
                    w1 = ((x2 - cx) * (y0 - cy) - (x0 - cx) * (y2 - cy)) * inv_area
                    w2 = 1.0 - w0 - w1
                    if w0 < 0.0 or w1 < 0.0 or w2 < 0.0:
                        continue
                    # Perspective-correct: interpolate attribute / z and 1 / z.
                    p0, p1, p2 = w0 * iz0, w1 * iz1, w2 * iz2
                    iz = p0 + p1 + p2
                    z = 1.0 / iz
                    if z >= out_depth[py, px]:
                        continue
                    out_depth[py, px] = z
                    out_label[py, px] = labels[t]
                    b0, b1, b2 = p0 * z, p1 * z, p2 * z
                    if textured[t]:
                        u = b0 * uv[i0, 0] + b1 * uv[i1, 0] + b2 * uv[i2, 0]
                        v = b0 * uv[i0, 1] + b1 * uv[i1, 1] + b2 * uv[i2, 1]
                        r, g, b = _sample_bilinear(texture, u, v)
                        out_rgb[py, px, 0] = r
                        out_rgb[py, px, 1] = g
                        out_rgb[py, px, 2] = b
                    else:
                        for c in range(3):
                            out_rgb[py, px, c] = (b0 * colors[i0, c] + b1 * colors[i1, c]
                                                  + b2 * colors[i2, c])


def render(xy, depth, tris, uv, colors, textured, labels, texture, width, height,
           background=(0.0, 0.0, 0.0)):
    """Allocate buffers and call :func:`rasterize_mesh`; returns (rgb, depth, label)."""
    rgb = np.empty((height, width, 3), np.float32)
    zbuf = np.empty((height, width), np.float64)
    lab = np.empty((height, width), np.uint8)
    rasterize_mesh(np.ascontiguousarray(xy, np.float64), np.ascontiguousarray(depth, np.float64),
                   np.ascontiguousarray(tris, np.int32), np.ascontiguousarray(uv, np.float64),
                   np.ascontiguousarray(colors, np.float32),
                   np.ascontiguousarray(textured, np.bool_),
                   np.ascontiguousarray(labels, np.uint8),
                   np.ascontiguousarray(texture, np.float32), width, height,
                   np.asarray(background, np.float32), rgb, zbuf, lab)
    return rgb, zbuf, lab


def downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter [H*f, W*f, ...] down to [H, W, ...] (anti-aliasing after supersampling):
    the f x f samples of each pixel summed as strided slices, then scaled. numpy's
    ``mean`` over the two non-adjacent axes took 40 ms a 1024x1024 RGB frame here, most of
    the synthetic clip's time; :func:`downsample_reference` is that formula."""
    if factor == 1:
        return image
    h, w = image.shape[0] // factor, image.shape[1] // factor
    x = image[:h * factor, :w * factor]
    acc = x[::factor, ::factor].astype(image.dtype if image.dtype.kind == "f" else np.float64)
    for i in range(factor):
        for j in range(factor):
            if i or j:
                acc += x[i::factor, j::factor]
    acc /= factor * factor
    return acc


def downsample_reference(image: np.ndarray, factor: int) -> np.ndarray:
    """The box filter as a mean over reshaped axes (slow; the tests' reference)."""
    if factor == 1:
        return image
    h, w = image.shape[0] // factor, image.shape[1] // factor
    return image[:h * factor, :w * factor].reshape(h, factor, w, factor,
                                                   *image.shape[2:]).mean(axis=(1, 3))


@njit(parallel=True, cache=True, nogil=True)
def _block_mode(lab, ss, n_labels, out):
    """out [H, W] = the most common value of each ss x ss block of lab [H * ss, W * ss]
    (values < n_labels), ties to the higher value."""
    for y in prange(out.shape[0]):
        counts = np.zeros(n_labels, np.int64)
        for x in range(out.shape[1]):
            counts[:] = 0
            for i in range(ss):
                for j in range(ss):
                    counts[lab[y * ss + i, x * ss + j]] += 1
            best = n_labels - 1
            for v in range(n_labels - 2, -1, -1):
                if counts[v] > counts[best]:
                    best = v
            out[y, x] = best


def downsample_labels(lab: np.ndarray, ss: int) -> np.ndarray:
    """[H * ss, W * ss] -> [H, W]: the most common label of each pixel's ss x ss samples
    (centred on the pixel, like the image's box filter; ties go to the higher label, the
    smaller region drawn on top). :func:`downsample_labels_reference` is the numpy
    formula (a pass over the image per label value)."""
    if ss == 1:
        return lab
    H, W = lab.shape[0] // ss, lab.shape[1] // ss
    out = np.empty((H, W), lab.dtype)
    _block_mode(np.ascontiguousarray(lab[:H * ss, :W * ss]), ss, int(lab.max()) + 1, out)
    return out


def downsample_labels_reference(lab: np.ndarray, ss: int) -> np.ndarray:
    """:func:`downsample_labels` in numpy (slow; the tests' reference)."""
    if ss == 1:
        return lab
    H, W = lab.shape[0] // ss, lab.shape[1] // ss
    blocks = lab[:H * ss, :W * ss].reshape(H, ss, W, ss).transpose(0, 2, 1, 3).reshape(H, W, -1)
    counts = np.stack([(blocks == v).sum(-1) for v in range(int(lab.max()) + 1)], -1)
    return (counts.shape[-1] - 1 - np.argmax(counts[..., ::-1], -1)).astype(lab.dtype)


def rasterize_reference(xy, depth, tris, uv, colors, textured, labels, texture, width, height,
                        background=(0.0, 0.0, 0.0)):
    """Slow numpy version of :func:`render`, one triangle at a time over all pixels."""
    rgb = np.tile(np.asarray(background, np.float64), (height, width, 1))
    zbuf = np.full((height, width), np.inf)
    lab = np.zeros((height, width), np.uint8)
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    th, tw = texture.shape[:2]
    for t, (a, b, c) in enumerate(tris):
        (x0, y0), (x1, y1), (x2, y2) = xy[a], xy[b], xy[c]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if area == 0:
            continue
        w0 = ((x1 - xs) * (y2 - ys) - (x2 - xs) * (y1 - ys)) / area
        w1 = ((x2 - xs) * (y0 - ys) - (x0 - xs) * (y2 - ys)) / area
        w2 = 1 - w0 - w1
        inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        p = np.stack([w0 / depth[a], w1 / depth[b], w2 / depth[c]], -1)
        z = 1 / p.sum(-1)
        bary = p * z[..., None]
        draw = inside & (z < zbuf)
        zbuf[draw] = z[draw]
        lab[draw] = labels[t]
        if textured[t]:
            u = bary @ np.array([uv[a, 0], uv[b, 0], uv[c, 0]])
            v = bary @ np.array([uv[a, 1], uv[b, 1], uv[c, 1]])
            fx = np.clip(u - 0.5, 0, tw - 1)
            fy = np.clip(v - 0.5, 0, th - 1)
            ix, iy = np.floor(fx).astype(int), np.floor(fy).astype(int)
            jx, jy = np.minimum(ix + 1, tw - 1), np.minimum(iy + 1, th - 1)
            ax, ay = (fx - ix)[..., None], (fy - iy)[..., None]
            col = ((texture[iy, ix] * (1 - ax) + texture[iy, jx] * ax) * (1 - ay)
                   + (texture[jy, ix] * (1 - ax) + texture[jy, jx] * ax) * ay)
        else:
            col = bary @ colors[[a, b, c]]
        rgb[draw] = col[draw]
    return rgb.astype(np.float32), zbuf, lab
