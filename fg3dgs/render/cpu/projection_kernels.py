"""Numba kernels of the fused EWA projection (forward and its vector-Jacobian product).

Same function as :func:`fg3dgs.render.projection.project_gaussians` (gsplat 1.5's classic
pinhole projection), one Gaussian x camera per iteration instead of dozens of small PyTorch
ops over [C, N, 3, 3] tensors. Computed in float64, stored in float32.

Notation: q = (w, x, y, z) quaternion, Rg its rotation, M = Rg diag(s), Sigma = M M^T;
viewmat = [R | t]; camera-space mean m = R mu + t, Sigma_c = R Sigma R^T; J the 2x3
projection Jacobian with x/z, y/z clamped; cov2d = J Sigma_c J^T + eps I = [[a, b], [b, c]];
conic = inverse = (c, -b, a) / det.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ..projection import ALPHA_THRESHOLD, EPS2D, FAR_PLANE, FOV_MARGIN, NEAR_PLANE, RADIUS_EXTEND


@njit(cache=True, inline="always")
def _rotmat(w, x, y, z):
    return (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y))


@njit(cache=True, inline="always")
def _limits(K, c, width, height):
    fx, fy, cx, cy = K[c, 0, 0], K[c, 1, 1], K[c, 0, 2], K[c, 1, 2]
    tan_x = 0.5 * width / fx
    tan_y = 0.5 * height / fy
    return (fx, fy, cx, cy, (width - cx) / fx + FOV_MARGIN * tan_x,
            cx / fx + FOV_MARGIN * tan_x, (height - cy) / fy + FOV_MARGIN * tan_y,
            cy / fy + FOV_MARGIN * tan_y)


@njit(cache=True)
def _camera_mean(V, px, py, pz):
    return (V[0, 0] * px + V[0, 1] * py + V[0, 2] * pz + V[0, 3],
            V[1, 0] * px + V[1, 1] * py + V[1, 2] * pz + V[1, 3],
            V[2, 0] * px + V[2, 1] * py + V[2, 2] * pz + V[2, 3])


@njit(cache=True)
def _covariance_chain(V, rg, s0, s1, s2, mx, my, mz, fx, fy, lxp, lxn, lyp, lyn):
    """A = R_view Rg diag(s) (so Sigma_c = A A^T), the clamped Jacobian J and B = J A.

    Returns A (9, row-major), rz, x/z, y/z, J's non-zero entries (j00, j02, j11, j12),
    B (6, row-major) and cov2d + eps I as (a, b, c).
    """
    r00, r01, r02, r10, r11, r12, r20, r21, r22 = rg
    m00, m01, m02 = r00 * s0, r01 * s1, r02 * s2
    m10, m11, m12 = r10 * s0, r11 * s1, r12 * s2
    m20, m21, m22 = r20 * s0, r21 * s1, r22 * s2
    a00 = V[0, 0] * m00 + V[0, 1] * m10 + V[0, 2] * m20
    a01 = V[0, 0] * m01 + V[0, 1] * m11 + V[0, 2] * m21
    a02 = V[0, 0] * m02 + V[0, 1] * m12 + V[0, 2] * m22
    a10 = V[1, 0] * m00 + V[1, 1] * m10 + V[1, 2] * m20
    a11 = V[1, 0] * m01 + V[1, 1] * m11 + V[1, 2] * m21
    a12 = V[1, 0] * m02 + V[1, 1] * m12 + V[1, 2] * m22
    a20 = V[2, 0] * m00 + V[2, 1] * m10 + V[2, 2] * m20
    a21 = V[2, 0] * m01 + V[2, 1] * m11 + V[2, 2] * m21
    a22 = V[2, 0] * m02 + V[2, 1] * m12 + V[2, 2] * m22
    rz = 1.0 / mz
    ux = mx * rz
    vy = my * rz
    u = min(lxp, max(-lxn, ux))
    v = min(lyp, max(-lyn, vy))
    j00 = fx * rz
    j02 = -fx * u * rz
    j11 = fy * rz
    j12 = -fy * v * rz
    b00 = j00 * a00 + j02 * a20
    b01 = j00 * a01 + j02 * a21
    b02 = j00 * a02 + j02 * a22
    b10 = j11 * a10 + j12 * a20
    b11 = j11 * a11 + j12 * a21
    b12 = j11 * a12 + j12 * a22
    ca = b00 * b00 + b01 * b01 + b02 * b02 + EPS2D
    cb = b00 * b10 + b01 * b11 + b02 * b12
    cc = b10 * b10 + b11 * b11 + b12 * b12 + EPS2D
    return ((a00, a01, a02, a10, a11, a12, a20, a21, a22), rz, ux, vy,
            (j00, j02, j11, j12), (b00, b01, b02, b10, b11, b12), ca, cb, cc)


@njit(parallel=True, cache=True, nogil=True)
def project_fwd(means, quats, scales, opacities, viewmats, Ks, width, height,
                means2d, conics, depths, radii, bbox, valid):
    """Forward projection.

    Args:
        means [N, 3], quats [N, 4], scales [N, 3] shared by the cameras, or [C * N, .]:
        camera c's own Gaussians in rows c * N ... (frames of a deformed set);
        opacities [N], viewmats [C, 4, 4], Ks [C, 3, 3] (float32).
    Writes:
        means2d [C, N, 2], conics [C, N, 3], depths [C, N] (float32); radii [C, N, 2],
        bbox [C, N, 4] (int32); valid [C, N] (bool). See ``Projection`` for their meaning.
    """
    C = viewmats.shape[0]
    N = opacities.shape[0]
    own = means.shape[0] != N      # each camera its own Gaussians
    for i in prange(C * N):
        c = i // N
        n = i - c * N
        g = c * N + n if own else n
        fx, fy, cx, cy, lxp, lxn, lyp, lyn = _limits(Ks, c, width, height)
        V = viewmats[c]
        mx, my, mz = _camera_mean(V, np.float64(means[g, 0]), np.float64(means[g, 1]),
                                  np.float64(means[g, 2]))
        depths[c, n] = mz
        radii[c, n, 0] = 0
        radii[c, n, 1] = 0
        bbox[c, n, 0] = 0
        bbox[c, n, 1] = 0
        bbox[c, n, 2] = -1
        bbox[c, n, 3] = -1
        valid[c, n] = False
        means2d[c, n, 0] = 0.0
        means2d[c, n, 1] = 0.0
        conics[c, n, 0] = 0.0
        conics[c, n, 1] = 0.0
        conics[c, n, 2] = 0.0
        op = opacities[n]
        if mz < NEAR_PLANE or mz > FAR_PLANE or op < ALPHA_THRESHOLD:
            continue
        qw, qx, qy, qz = (np.float64(quats[g, 0]), np.float64(quats[g, 1]),
                          np.float64(quats[g, 2]), np.float64(quats[g, 3]))
        inv = 1.0 / math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
        rg = _rotmat(qw * inv, qx * inv, qy * inv, qz * inv)
        _, rz, _, _, _, _, ca, cb, cc = _covariance_chain(
            V, rg, np.float64(scales[g, 0]), np.float64(scales[g, 1]),
            np.float64(scales[g, 2]), mx, my, mz, fx, fy, lxp, lxn, lyp, lyn)
        det = ca * cc - cb * cb
        if det <= 0.0:
            continue
        u2 = fx * mx * rz + cx
        v2 = fy * my * rz + cy
        log_ratio = math.log(op / ALPHA_THRESHOLD)
        extend = min(RADIUS_EXTEND, math.sqrt(2.0 * log_ratio))
        rx = math.ceil(extend * math.sqrt(ca))
        ry = math.ceil(extend * math.sqrt(cc))
        if u2 + rx <= 0 or u2 - rx >= width or v2 + ry <= 0 or v2 - ry >= height:
            continue
        radii[c, n, 0] = np.int32(rx)
        radii[c, n, 1] = np.int32(ry)
        means2d[c, n, 0] = u2
        means2d[c, n, 1] = v2
        conics[c, n, 0] = cc / det
        conics[c, n, 1] = -cb / det
        conics[c, n, 2] = ca / det
        # Tight box of alpha >= 1/255 around pixel centres (i + 0.5), with a rounding margin.
        ex = math.sqrt(2.0 * log_ratio * ca) * (1 + 1e-4) + 1e-3
        ey = math.sqrt(2.0 * log_ratio * cc) * (1 + 1e-4) + 1e-3
        x0 = max(0, int(math.ceil(u2 - ex - 0.5)))
        x1 = min(width - 1, int(math.floor(u2 + ex - 0.5)))
        y0 = max(0, int(math.ceil(v2 - ey - 0.5)))
        y1 = min(height - 1, int(math.floor(v2 + ey - 0.5)))
        if x0 > x1 or y0 > y1:
            continue
        bbox[c, n, 0] = x0
        bbox[c, n, 1] = y0
        bbox[c, n, 2] = x1
        bbox[c, n, 3] = y1
        valid[c, n] = True


@njit(parallel=True, cache=True, nogil=True)
def project_bwd(means, quats, scales, viewmats, Ks, width, height, valid, v_means2d, v_conics,
                v_means, v_quats, v_scales):
    """Gradients of the projection with respect to means, quats and scales.

    Args: forward inputs, its ``valid`` [C, N], incoming v_means2d [C, N, 2] and
        v_conics [C, N, 3].
    Writes: v_means [N, 3], v_quats [N, 4], v_scales [N, 3] (float32, summed over cameras).
    """
    C = viewmats.shape[0]
    N = means.shape[0]
    for n in prange(N):
        gm0 = gm1 = gm2 = 0.0
        gq0 = gq1 = gq2 = gq3 = 0.0
        gs0 = gs1 = gs2 = 0.0
        qw, qx, qy, qz = (np.float64(quats[n, 0]), np.float64(quats[n, 1]),
                          np.float64(quats[n, 2]), np.float64(quats[n, 3]))
        inv = 1.0 / math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
        w, x, y, z = qw * inv, qx * inv, qy * inv, qz * inv
        rg = _rotmat(w, x, y, z)
        r00, r01, r02, r10, r11, r12, r20, r21, r22 = rg
        s0, s1, s2 = np.float64(scales[n, 0]), np.float64(scales[n, 1]), np.float64(scales[n, 2])
        px, py, pz = np.float64(means[n, 0]), np.float64(means[n, 1]), np.float64(means[n, 2])
        for c in range(C):
            if not valid[c, n]:
                continue
            fx, fy, cx, cy, lxp, lxn, lyp, lyn = _limits(Ks, c, width, height)
            V = viewmats[c]
            mx, my, mz = _camera_mean(V, px, py, pz)
            A, rz, ux, vy, J, B, ca, cb, cc = _covariance_chain(
                V, rg, s0, s1, s2, mx, my, mz, fx, fy, lxp, lxn, lyp, lyn)
            a00, a01, a02, a10, a11, a12, a20, a21, a22 = A
            j00, j02, j11, j12 = J
            b00, b01, b02, b10, b11, b12 = B
            u = min(lxp, max(-lxn, ux))
            v = min(lyp, max(-lyn, vy))
            det = ca * cc - cb * cb
            # conic = P = inv(S2). With G the symmetric matrix of d L / d P (the off-diagonal
            # conic entry appears twice in P), d L / d S2 = -P G P.
            p00, p01, p11 = cc / det, -cb / det, ca / det
            g00 = np.float64(v_conics[c, n, 0])
            g01 = 0.5 * np.float64(v_conics[c, n, 1])
            g11 = np.float64(v_conics[c, n, 2])
            t00 = g00 * p00 + g01 * p01
            t01 = g00 * p01 + g01 * p11
            t10 = g01 * p00 + g11 * p01
            t11 = g01 * p01 + g11 * p11
            h00 = -(p00 * t00 + p01 * t10)
            h01 = -(p00 * t01 + p01 * t11)
            h11 = -(p01 * t01 + p11 * t11)
            # cov2d = B B^T, B = J A: dL/dB = 2 H B.
            e00 = 2.0 * (h00 * b00 + h01 * b10)
            e01 = 2.0 * (h00 * b01 + h01 * b11)
            e02 = 2.0 * (h00 * b02 + h01 * b12)
            e10 = 2.0 * (h01 * b00 + h11 * b10)
            e11 = 2.0 * (h01 * b01 + h11 * b11)
            e12 = 2.0 * (h01 * b02 + h11 * b12)
            # dL/dJ = dL/dB A^T (only the non-zero entries of J matter).
            vj00 = e00 * a00 + e01 * a01 + e02 * a02
            vj02 = e00 * a20 + e01 * a21 + e02 * a22
            vj11 = e10 * a10 + e11 * a11 + e12 * a12
            vj12 = e10 * a20 + e11 * a21 + e12 * a22
            # dL/dA = J^T dL/dB.
            va00 = j00 * e00
            va01 = j00 * e01
            va02 = j00 * e02
            va10 = j11 * e10
            va11 = j11 * e11
            va12 = j11 * e12
            va20 = j02 * e00 + j12 * e10
            va21 = j02 * e01 + j12 * e11
            va22 = j02 * e02 + j12 * e12
            # Camera-space mean: from means2d and from J.
            gx = np.float64(v_means2d[c, n, 0])
            gy = np.float64(v_means2d[c, n, 1])
            vmx = gx * fx * rz
            vmy = gy * fy * rz
            vmz = -(gx * fx * mx + gy * fy * my) * rz * rz
            vmz += -fx * rz * rz * vj00 - fy * rz * rz * vj11
            # j02 = -fx u / z with u = x / z unless clamped (then u is constant).
            if -lxn <= ux <= lxp:
                vmx += -fx * rz * rz * vj02
                vmz += 2.0 * fx * ux * rz * rz * vj02
            else:
                vmz += fx * u * rz * rz * vj02
            if -lyn <= vy <= lyp:
                vmy += -fy * rz * rz * vj12
                vmz += 2.0 * fy * vy * rz * rz * vj12
            else:
                vmz += fy * v * rz * rz * vj12
            gm0 += V[0, 0] * vmx + V[1, 0] * vmy + V[2, 0] * vmz
            gm1 += V[0, 1] * vmx + V[1, 1] * vmy + V[2, 1] * vmz
            gm2 += V[0, 2] * vmx + V[1, 2] * vmy + V[2, 2] * vmz
            # A = R_view M: dL/dM = R_view^T dL/dA.
            vm00 = V[0, 0] * va00 + V[1, 0] * va10 + V[2, 0] * va20
            vm01 = V[0, 0] * va01 + V[1, 0] * va11 + V[2, 0] * va21
            vm02 = V[0, 0] * va02 + V[1, 0] * va12 + V[2, 0] * va22
            vm10 = V[0, 1] * va00 + V[1, 1] * va10 + V[2, 1] * va20
            vm11 = V[0, 1] * va01 + V[1, 1] * va11 + V[2, 1] * va21
            vm12 = V[0, 1] * va02 + V[1, 1] * va12 + V[2, 1] * va22
            vm20 = V[0, 2] * va00 + V[1, 2] * va10 + V[2, 2] * va20
            vm21 = V[0, 2] * va01 + V[1, 2] * va11 + V[2, 2] * va21
            vm22 = V[0, 2] * va02 + V[1, 2] * va12 + V[2, 2] * va22
            # M = Rg diag(s).
            gs0 += vm00 * r00 + vm10 * r10 + vm20 * r20
            gs1 += vm01 * r01 + vm11 * r11 + vm21 * r21
            gs2 += vm02 * r02 + vm12 * r12 + vm22 * r22
            q00, q01, q02 = vm00 * s0, vm01 * s1, vm02 * s2
            q10, q11, q12 = vm10 * s0, vm11 * s1, vm12 * s2
            q20, q21, q22 = vm20 * s0, vm21 * s1, vm22 * s2
            # d Rg / d (w, x, y, z) of the normalised quaternion.
            dw = 2 * (-z * q01 + y * q02 + z * q10 - x * q12 - y * q20 + x * q21)
            dx = 2 * (y * q01 + z * q02 + y * q10 - 2 * x * q11 - w * q12 + z * q20
                      + w * q21 - 2 * x * q22)
            dy = 2 * (-2 * y * q00 + x * q01 + w * q02 + x * q10 + z * q12 - w * q20
                      + z * q21 - 2 * y * q22)
            dz = 2 * (-2 * z * q00 - w * q01 + x * q02 + w * q10 - 2 * z * q11 + y * q12
                      + x * q20 + y * q21)
            gq0 += dw
            gq1 += dx
            gq2 += dy
            gq3 += dz
        # Through the normalisation q / |q|.
        dot = gq0 * w + gq1 * x + gq2 * y + gq3 * z
        v_quats[n, 0] = (gq0 - dot * w) * inv
        v_quats[n, 1] = (gq1 - dot * x) * inv
        v_quats[n, 2] = (gq2 - dot * y) * inv
        v_quats[n, 3] = (gq3 - dot * z) * inv
        v_means[n, 0] = gm0
        v_means[n, 1] = gm1
        v_means[n, 2] = gm2
        v_scales[n, 0] = gs0
        v_scales[n, 1] = gs1
        v_scales[n, 2] = gs2
