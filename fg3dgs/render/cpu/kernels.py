"""Numba kernels of the CPU rasterizer: tile binning, forward and backward compositing.

Layout. The image is cut into square tiles; each tile holds the list of Gaussians whose pixel
box touches it, in depth order (front first). One thread owns a whole tile, so nothing races.
Inside a tile the loop runs Gaussian-major: for each Gaussian of the list, only the pixels of
its tight box (where alpha can reach 1/255) are visited, and each pixel keeps its own
transmittance and "done" flag. Per pixel this applies exactly the same Gaussians in the same
order as gsplat's pixel-major loop, while never touching pixels a Gaussian cannot reach.
A tile stops as soon as all its pixels are done.

Threads. The tiles are dealt into one part per thread beforehand (:func:`balance_tiles`,
heaviest first to the lightest part), and the compositing loops run ``prange`` over the parts.
numba's OpenMP and workqueue layers split a ``prange`` into equal contiguous blocks whatever
``parallel_chunksize`` says, so a heaviest-first tile order gave one thread every tile with
Gaussians and the other the empty ones.

The backward pass replays the same order front to back. For the colour behind Gaussian i it
uses the total (known from the forward output) minus the running prefix, kept in float64.
Per-list-entry gradients are written to their own slot and summed per Gaussian afterwards.

All arrays are float32 / int32 numpy arrays, C-contiguous. Shapes: C cameras, N Gaussians,
H x W pixels, M = number of (tile, Gaussian) list entries.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ..projection import ALPHA_THRESHOLD, MAX_ALPHA, TRANSMITTANCE_MIN

ALPHA_MIN = np.float32(ALPHA_THRESHOLD)
ALPHA_MAX = np.float32(MAX_ALPHA)
T_MIN = np.float32(TRANSMITTANCE_MIN)
F_HALF = np.float32(0.5)
F_ONE = np.float32(1.0)
F_ZERO = np.float32(0.0)
N_GRAD = 9  # per list entry: d mean2d (2), d conic (3), d opacity (1), d colour (3)


@njit(cache=True)
def _argsort_positive(values):
    """Stable argsort of positive float32 values [n] (LSD radix sort on their bit patterns,
    which order like the values when positive)."""
    keys = values.view(np.uint32)
    n = keys.shape[0]
    idx = np.arange(n).astype(np.int32)
    tmp = np.empty(n, np.int32)
    for shift in (0, 11, 22):
        count = np.zeros(2049, np.int64)
        for i in range(n):
            count[((keys[idx[i]] >> shift) & 2047) + 1] += 1
        for b in range(2048):
            count[b + 1] += count[b]
        for i in range(n):
            b = (keys[idx[i]] >> shift) & 2047
            tmp[count[b]] = idx[i]
            count[b] += 1
        idx, tmp = tmp, idx
    return idx


@njit(parallel=True, cache=True, nogil=True)
def bin_gaussians(valid, depths, bbox, tile, tiles_x, tiles_y):
    """Build per-tile Gaussian lists, front to back.

    Args:
        valid [C, N] bool, depths [C, N] float32 (>= the near plane where valid),
        bbox [C, N, 4] int32 pixel boxes (x0, y0, x1, y1 inclusive).
    Returns:
        offsets [C * tiles + 1] int64 (list of tile t is ids[offsets[t]:offsets[t + 1]]),
        ids [M] int32 Gaussian ids, each list sorted by depth with ties by id (the order
        gsplat's radix sort of (tile, depth) keys gives).
    """
    C, N = valid.shape
    n_tiles = tiles_x * tiles_y
    order = np.empty((C, N), np.int32)
    n_valid = np.zeros(C, np.int64)
    counts = np.zeros(C * n_tiles + 1, np.int64)
    for c in prange(C):
        ids_c = np.flatnonzero(valid[c]).astype(np.int32)
        d = np.empty(ids_c.shape[0], np.float32)
        for i in range(ids_c.shape[0]):
            d[i] = depths[c, ids_c[i]]
        srt = _argsort_positive(d)
        n_valid[c] = ids_c.shape[0]
        base = c * n_tiles + 1
        for k in range(ids_c.shape[0]):
            g = ids_c[srt[k]]
            order[c, k] = g
            for ty in range(bbox[c, g, 1] // tile, bbox[c, g, 3] // tile + 1):
                for tx in range(bbox[c, g, 0] // tile, bbox[c, g, 2] // tile + 1):
                    counts[base + ty * tiles_x + tx] += 1
    offsets = np.cumsum(counts)
    ids = np.empty(offsets[-1], np.int32)
    cursor = offsets[:-1].copy()
    for c in prange(C):
        base = c * n_tiles
        for k in range(n_valid[c]):
            g = order[c, k]
            for ty in range(bbox[c, g, 1] // tile, bbox[c, g, 3] // tile + 1):
                for tx in range(bbox[c, g, 0] // tile, bbox[c, g, 2] // tile + 1):
                    t = base + ty * tiles_x + tx
                    ids[cursor[t]] = g
                    cursor[t] += 1
    return offsets, ids


@njit(cache=True)
def balance_tiles(counts, n_parts):
    """Deal tiles into ``n_parts`` parts of about equal work (greedy: each tile, heaviest
    first, to the part with the least work so far; a tile's work is its list length plus a
    constant for writing its pixels).

    Args: counts [T] int64 list lengths, n_parts >= 1.
    Returns: work [T] int64 tile indices grouped by part (heaviest first within a part),
        parts [n_parts + 1] int64 (part j is work[parts[j]:parts[j + 1]]).
    """
    n = counts.shape[0]
    order = np.argsort(-counts, kind="mergesort")
    load = np.zeros(n_parts, np.int64)
    owner = np.empty(n, np.int64)
    sizes = np.zeros(n_parts + 1, np.int64)
    for i in range(n):
        j = 0
        for q in range(1, n_parts):
            if load[q] < load[j]:
                j = q
        owner[i] = j
        load[j] += counts[order[i]] + 8
        sizes[j + 1] += 1
    parts = np.cumsum(sizes)
    cursor = parts[:-1].copy()
    work = np.empty(n, np.int64)
    for i in range(n):
        j = owner[i]
        work[cursor[j]] = order[i]
        cursor[j] += 1
    return work, parts


@njit(cache=True, inline="always")
def _tile_rect(t, n_tiles, tiles_x, tile, width, height):
    """Camera, pixel rectangle (inclusive), width and pixel count of tile t."""
    c = t // n_tiles
    r = t - c * n_tiles
    ty = r // tiles_x
    tx = r - ty * tiles_x
    x_lo = tx * tile
    y_lo = ty * tile
    x_hi = min(x_lo + tile, width) - 1
    y_hi = min(y_lo + tile, height) - 1
    tw = x_hi - x_lo + 1
    return c, x_lo, y_lo, x_hi, y_hi, tw, tw * (y_hi - y_lo + 1)


@njit(cache=True, inline="always")
def _load_entry(g, c, x_lo, y_lo, x_hi, y_hi, bbox, means2d, conics, opacities, sigma_max,
                colors):
    """Gaussian g's pixel box clipped to the tile and its 2D parameters for camera c."""
    return (max(bbox[c, g, 0], x_lo), max(bbox[c, g, 1], y_lo), min(bbox[c, g, 2], x_hi),
            min(bbox[c, g, 3], y_hi), means2d[c, g, 0], means2d[c, g, 1], conics[c, g, 0],
            conics[c, g, 1], conics[c, g, 2], opacities[g], sigma_max[g], colors[c, g, 0],
            colors[c, g, 1], colors[c, g, 2])


@njit(parallel=True, cache=True, nogil=True)
def rasterize_fwd(offsets, ids, means2d, conics, colors, opacities, sigma_max, bbox,
                  background, width, height, tile, tiles_x, work, parts, out_rgb, out_T,
                  out_last):
    """Composite every tile front to back.

    Args:
        means2d [C, N, 2], conics [C, N, 3], colors [C, N, 3], opacities [N],
        sigma_max [N]: log(255 * opacity) plus a tiny margin (beyond it alpha < 1/255),
        bbox [C, N, 4], background [C, 3], work / parts: the tiles dealt into one part
        per thread (:func:`balance_tiles`).
    Writes:
        out_rgb [C, H, W, 3], out_T [C, H, W] final transmittance,
        out_last [C, H, W] int32 list index of the last contributing entry (-1: none).
    """
    n_tiles = (offsets.shape[0] - 1) // means2d.shape[0]
    for part in prange(parts.shape[0] - 1):
        for it in range(parts[part], parts[part + 1]):
            t = work[it]
            c, x_lo, y_lo, x_hi, y_hi, tw, npix = _tile_rect(t, n_tiles, tiles_x, tile, width,
                                                             height)
            T = np.ones(npix, np.float32)
            acc = np.zeros((npix, 3), np.float32)
            last = np.full(npix, -1, np.int32)
            done = np.zeros(npix, np.bool_)
            n_done = 0
            # Per tile row, the span [live_lo, live_hi] of pixels not yet done (shrinks as
            # pixels finish), so finished pixels are not visited again.
            live_lo = np.full(y_hi - y_lo + 1, x_lo, np.int64)
            live_hi = np.full(y_hi - y_lo + 1, x_hi, np.int64)
            for k in range(offsets[t], offsets[t + 1]):
                (gx0, gy0, gx1, gy1, mx, my, ca, cb, cc, op, smax, cr, cg,
                 cbl) = _load_entry(ids[k], c, x_lo, y_lo, x_hi, y_hi, bbox, means2d, conics,
                                    opacities, sigma_max, colors)
                for py in range(gy0, gy1 + 1):
                    r = py - y_lo
                    lo = max(gx0, live_lo[r])
                    hi = min(gx1, live_hi[r])
                    if lo > hi:
                        continue
                    dy = my - (np.float32(py) + F_HALF)
                    row = r * tw - x_lo
                    for px in range(lo, hi + 1):
                        p = row + px
                        if done[p]:
                            continue
                        dx = mx - (np.float32(px) + F_HALF)
                        sigma = F_HALF * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                        if sigma < F_ZERO or sigma > smax:
                            continue
                        alpha = min(ALPHA_MAX, op * np.float32(math.exp(-sigma)))
                        if alpha < ALPHA_MIN:
                            continue
                        t_cur = T[p]
                        t_next = t_cur * (F_ONE - alpha)
                        if t_next <= T_MIN:
                            done[p] = True
                            n_done += 1
                            while live_lo[r] <= live_hi[r] and done[row + live_lo[r]]:
                                live_lo[r] += 1
                            while live_hi[r] >= live_lo[r] and done[row + live_hi[r]]:
                                live_hi[r] -= 1
                            continue
                        w = alpha * t_cur
                        acc[p, 0] += w * cr
                        acc[p, 1] += w * cg
                        acc[p, 2] += w * cbl
                        T[p] = t_next
                        last[p] = k
                if n_done == npix:
                    break
            for py in range(y_lo, y_hi + 1):
                for px in range(x_lo, x_hi + 1):
                    p = (py - y_lo) * tw + px - x_lo
                    for ch in range(3):
                        out_rgb[c, py, px, ch] = acc[p, ch] + T[p] * background[c, ch]
                    out_T[c, py, px] = T[p]
                    out_last[c, py, px] = last[p]


@njit(parallel=True, cache=True, nogil=True)
def rasterize_bwd(offsets, ids, means2d, conics, colors, opacities, sigma_max, bbox,
                  background, width, height, tile, tiles_x, work, parts, rgb, T_final,
                  last_ids, v_rgb, v_alpha, out_grad):
    """Gradients per list entry.

    Args: as :func:`rasterize_fwd`, plus its outputs rgb [C, H, W, 3], T_final [C, H, W],
        last_ids [C, H, W], and the incoming gradients v_rgb [C, H, W, 3], v_alpha [C, H, W].
    Writes:
        out_grad [M, 9]: d mean2d (x, y), d conic (a, b, c), d opacity, d colour (r, g, b)
        of each list entry; entries a pixel never reached stay as given (zeros).
    """
    n_tiles = (offsets.shape[0] - 1) // means2d.shape[0]
    for part in prange(parts.shape[0] - 1):
        for it in range(parts[part], parts[part + 1]):
            t = work[it]
            c, x_lo, y_lo, x_hi, y_hi, tw, npix = _tile_rect(t, n_tiles, tiles_x, tile, width,
                                                             height)
            T = np.ones(npix, np.float32)
            Q = np.zeros(npix, np.float64)        # prefix of sum_k v_rgb_k * colour_k * weight
            Q_rest = np.zeros(npix, np.float64)   # total of the same over all contributors
            K_bg = np.zeros(npix, np.float32)     # T_final * (v_alpha - background . v_rgb)
            gr = np.zeros((npix, 3), np.float32)
            last = np.empty(npix, np.int32)
            max_last = np.int64(-1)
            for py in range(y_lo, y_hi + 1):
                for px in range(x_lo, x_hi + 1):
                    p = (py - y_lo) * tw + px - x_lo
                    lp = last_ids[c, py, px]
                    last[p] = lp
                    if lp > max_last:
                        max_last = lp
                    tf = T_final[c, py, px]
                    q = 0.0
                    bgv = F_ZERO
                    for ch in range(3):
                        gch = v_rgb[c, py, px, ch]
                        gr[p, ch] = gch
                        q += np.float64(gch) * np.float64(rgb[c, py, px, ch]
                                                          - tf * background[c, ch])
                        bgv += background[c, ch] * gch
                    Q_rest[p] = q
                    K_bg[p] = tf * (v_alpha[c, py, px] - bgv)
            # Per tile row, the span of pixels whose last contributor is at or after entry k.
            live_lo = np.full(y_hi - y_lo + 1, x_lo, np.int64)
            live_hi = np.full(y_hi - y_lo + 1, x_hi, np.int64)
            for k in range(offsets[t], min(offsets[t + 1], max_last + 1)):
                (gx0, gy0, gx1, gy1, mx, my, ca, cb, cc, op, smax, cr, cg,
                 cbl) = _load_entry(ids[k], c, x_lo, y_lo, x_hi, y_hi, bbox, means2d, conics,
                                    opacities, sigma_max, colors)
                s_mx = 0.0
                s_my = 0.0
                s_ca = 0.0
                s_cb = 0.0
                s_cc = 0.0
                s_op = 0.0
                s_r = 0.0
                s_g = 0.0
                s_b = 0.0
                for py in range(gy0, gy1 + 1):
                    r = py - y_lo
                    row = r * tw - x_lo
                    while live_lo[r] <= live_hi[r] and last[row + live_lo[r]] < k:
                        live_lo[r] += 1
                    while live_hi[r] >= live_lo[r] and last[row + live_hi[r]] < k:
                        live_hi[r] -= 1
                    lo = max(gx0, live_lo[r])
                    hi = min(gx1, live_hi[r])
                    dy = my - (np.float32(py) + F_HALF)
                    for px in range(lo, hi + 1):
                        p = row + px
                        if k > last[p]:
                            continue
                        dx = mx - (np.float32(px) + F_HALF)
                        sigma = F_HALF * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                        if sigma < F_ZERO or sigma > smax:
                            continue
                        vis = np.float32(math.exp(-sigma))
                        alpha = min(ALPHA_MAX, op * vis)
                        if alpha < ALPHA_MIN:
                            continue
                        t_cur = T[p]
                        w = alpha * t_cur
                        g0 = gr[p, 0]
                        g1 = gr[p, 1]
                        g2 = gr[p, 2]
                        s_r += w * g0
                        s_g += w * g1
                        s_b += w * g2
                        c_dot_g = cr * g0 + cg * g1 + cbl * g2
                        Q[p] += np.float64(c_dot_g) * np.float64(w)
                        inv_1ma = 1.0 / (1.0 - np.float64(alpha))
                        v_a = c_dot_g * t_cur - (Q_rest[p] - Q[p] - K_bg[p]) * inv_1ma
                        T[p] = t_cur * (F_ONE - alpha)
                        if op * vis <= ALPHA_MAX:
                            v_sigma = -op * vis * v_a
                            s_ca += 0.5 * v_sigma * dx * dx
                            s_cb += v_sigma * dx * dy
                            s_cc += 0.5 * v_sigma * dy * dy
                            s_mx += v_sigma * (ca * dx + cb * dy)
                            s_my += v_sigma * (cb * dx + cc * dy)
                            s_op += vis * v_a
                out_grad[k, 0] = s_mx
                out_grad[k, 1] = s_my
                out_grad[k, 2] = s_ca
                out_grad[k, 3] = s_cb
                out_grad[k, 4] = s_cc
                out_grad[k, 5] = s_op
                out_grad[k, 6] = s_r
                out_grad[k, 7] = s_g
                out_grad[k, 8] = s_b


@njit(parallel=True, cache=True, nogil=True)
def sum_entry_grads(offsets, ids, entry_grad, n_cams, n_gaussians):
    """Sum per-list-entry gradients [M, 9] into per-camera, per-Gaussian [C, N, 9]."""
    N = n_gaussians
    n_tiles = (offsets.shape[0] - 1) // n_cams
    out = np.zeros((n_cams, N, N_GRAD), np.float32)
    for c in prange(n_cams):
        for k in range(offsets[c * n_tiles], offsets[(c + 1) * n_tiles]):
            g = ids[k]
            for j in range(N_GRAD):
                out[c, g, j] += entry_grad[k, j]
    return out
