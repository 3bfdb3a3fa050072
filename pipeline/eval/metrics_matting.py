"""Alpha-matting errors: SAD, MSE, gradient and connectivity (alphamatting.com definitions).

Definitions follow Rhemann et al., "A Perceptually Motivated Online Benchmark for Image
Matting" (CVPR 2009) as implemented in the Deep Image Matting MATLAB evaluation code
(``compute_gradient_loss.m``, ``compute_connectivity_error.m``, Xu et al. 2017) and its common
Python ports (OpenMMLab mmediting/mmeval ``GradientError`` and ``ConnectivityError``).

Inputs are ``H×W float`` alphas in [0, 1] (prediction and ground truth) and an ``H×W bool``
region mask: the pixels the error is summed over (the trimap's unknown region, or the whole
image). Units, chosen once and used everywhere in reports:

- ``sad``: Σ|α_pred − α_gt| over the region, **divided by 1000** (as the benchmark reports it).
- ``mse``: mean of (α_pred − α_gt)² over the region's pixels, **multiplied by 1000**.
- ``grad``: Σ(|∇α_pred| − |∇α_gt|)² over the region with Gaussian-derivative filters of
  sigma 1.4 px, **divided by 1000**.
- ``conn``: Σ|φ(α_pred) − φ(α_gt)| over the region with threshold step 0.1 and θ = 0.15,
  **divided by 1000**.

Lower is better for all four. An empty region gives 0 for the sums and ``None`` for the MSE
(a mean over no pixels is undefined).
"""

from __future__ import annotations

import cv2
import numpy as np

GRAD_SIGMA_PX = 1.4
CONN_STEP = 0.1
CONN_THETA = 0.15
SUM_SCALE = 1000.0  # sad, grad, conn are reported in thousands
MSE_SCALE = 1000.0  # mse is reported ×1000
DEFAULT_UNKNOWN_DILATE_PX = 3


def _check_pair(pred: np.ndarray, gt: np.ndarray, region: np.ndarray | None) -> None:
    for name, arr in (("pred alpha", pred), ("gt alpha", gt)):
        if not isinstance(arr, np.ndarray) or arr.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array, got shape {getattr(arr, 'shape', None)}")
    if pred.shape != gt.shape:
        raise ValueError(f"pred alpha shape {pred.shape} differs from gt alpha shape {gt.shape}")
    if region is not None and (region.shape != gt.shape or region.dtype != np.bool_):
        raise ValueError(f"region must be {gt.shape} bool, got {region.shape} {region.dtype}")


def _region(gt: np.ndarray, region: np.ndarray | None) -> np.ndarray:
    return np.ones(gt.shape, bool) if region is None else region


def sad(pred: np.ndarray, gt: np.ndarray, region: np.ndarray | None = None) -> float:
    """Sum of absolute alpha differences over ``region`` (whole image if None), in thousands."""
    _check_pair(pred, gt, region)
    diff = np.abs(pred.astype(np.float64) - gt.astype(np.float64))
    return float(diff[_region(gt, region)].sum() / SUM_SCALE)


def mse(pred: np.ndarray, gt: np.ndarray, region: np.ndarray | None = None) -> float | None:
    """Mean squared alpha difference over ``region`` ×1000; ``None`` for an empty region."""
    _check_pair(pred, gt, region)
    sel = _region(gt, region)
    count = int(sel.sum())
    if count == 0:
        return None
    diff = pred.astype(np.float64) - gt.astype(np.float64)
    return float((diff[sel] ** 2).sum() / count * MSE_SCALE)


def _gauss_derivative_kernels(sigma: float, epsilon: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """(kx, ky) ``float64`` kernels: Gaussian in one axis times its derivative in the other,
    L2-normalised, with the half size of the MATLAB ``gaussgradient`` (truncation ``epsilon``)."""
    half = int(np.ceil(sigma * np.sqrt(-2.0 * np.log(np.sqrt(2.0 * np.pi) * sigma * epsilon))))
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    gauss = np.exp(-(offsets**2) / (2.0 * sigma**2)) / (sigma * np.sqrt(2.0 * np.pi))
    dgauss = -offsets * gauss / sigma**2
    kx = np.outer(gauss, dgauss)  # rows vary as the Gaussian, columns as its derivative
    kx /= np.sqrt((kx**2).sum())
    return kx, kx.T.copy()


def gradient_magnitude(alpha: np.ndarray, sigma: float = GRAD_SIGMA_PX) -> np.ndarray:
    """``H×W float64`` magnitude of the Gaussian-derivative gradient (replicated borders)."""
    kx, ky = _gauss_derivative_kernels(sigma)
    src = alpha.astype(np.float64)
    gx = cv2.filter2D(src, cv2.CV_64F, kx, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.filter2D(src, cv2.CV_64F, ky, borderType=cv2.BORDER_REPLICATE)
    return np.sqrt(gx**2 + gy**2)


def _stretch(alpha: np.ndarray) -> np.ndarray:
    """MATLAB ``mat2gray``: min-max stretch to [0, 1]; a constant map is left as it is (its
    gradient is zero either way)."""
    a = alpha.astype(np.float64)
    low, high = float(a.min()), float(a.max())
    return (a - low) / (high - low) if high > low else a


def grad(
    pred: np.ndarray, gt: np.ndarray, region: np.ndarray | None = None, sigma=GRAD_SIGMA_PX
) -> float:
    """Gradient error over ``region``, in thousands (both mattes min-max stretched first, as
    ``compute_gradient_loss.m`` does with ``mat2gray``)."""
    _check_pair(pred, gt, region)
    diff = gradient_magnitude(_stretch(pred), sigma) - gradient_magnitude(_stretch(gt), sigma)
    return float((diff**2)[_region(gt, region)].sum() / SUM_SCALE)


def _largest_component(binary: np.ndarray) -> np.ndarray:
    """``H×W bool``: the largest 4-connected component of ``binary`` (empty if none)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        binary.astype(np.uint8), connectivity=4
    )
    if count <= 1:
        return np.zeros(binary.shape, bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == largest


def connectivity_phi(
    pred: np.ndarray, gt: np.ndarray, step: float = CONN_STEP, theta: float = CONN_THETA
) -> tuple[np.ndarray, np.ndarray]:
    """(φ_pred, φ_gt) ``H×W float64`` connectivity degrees of the two mattes.

    For thresholds t = step, 2·step … 1, Ω_t is the largest 4-connected component of
    ``(pred ≥ t) & (gt ≥ t)``; ``l`` is, per pixel, the threshold just below the first t whose
    Ω_t lost the pixel (1 if it never did). With d = α − l, φ = 1 − d where d ≥ θ, else 1.
    """
    # integer steps avoid 0.30000000000000004-style thresholds
    count = int(round(1.0 / step))
    thresholds = np.arange(count + 1, dtype=np.float64) * step
    level = np.full(gt.shape, -1.0)
    p = pred.astype(np.float64)
    g = gt.astype(np.float64)
    for i in range(1, len(thresholds)):
        omega = _largest_component((p >= thresholds[i]) & (g >= thresholds[i]))
        lost = (level == -1.0) & ~omega
        level[lost] = thresholds[i - 1]
    level[level == -1.0] = 1.0
    d_pred = p - level
    d_gt = g - level
    phi_pred = 1.0 - d_pred * (d_pred >= theta)
    phi_gt = 1.0 - d_gt * (d_gt >= theta)
    return phi_pred, phi_gt


def conn(pred: np.ndarray, gt: np.ndarray, region: np.ndarray | None = None) -> float:
    """Connectivity error over ``region``, in thousands."""
    _check_pair(pred, gt, region)
    phi_pred, phi_gt = connectivity_phi(pred, gt)
    return float(np.abs(phi_pred - phi_gt)[_region(gt, region)].sum() / SUM_SCALE)


def unknown_region(
    gt_alpha: np.ndarray,
    trimap: np.ndarray | None = None,
    dilate_px: int = DEFAULT_UNKNOWN_DILATE_PX,
) -> np.ndarray:
    """``H×W bool`` region the matting errors are measured on.

    With a trimap (``H×W uint8``, 0 = bg, 255 = fg, anything else unknown) it is the trimap's
    unknown pixels. Without one it is the pixels with 0 < α_gt < 1, dilated by ``dilate_px``
    (a square of side 2·dilate_px+1) so that a prediction that is too hard right at the edge is
    still measured.
    """
    if trimap is not None:
        if trimap.shape != gt_alpha.shape:
            raise ValueError(f"trimap shape {trimap.shape} differs from alpha {gt_alpha.shape}")
        return (trimap != 0) & (trimap != 255)
    soft = ((gt_alpha > 0) & (gt_alpha < 1)).astype(np.uint8)
    if dilate_px > 0:
        kernel = np.ones((2 * dilate_px + 1, 2 * dilate_px + 1), np.uint8)
        soft = cv2.dilate(soft, kernel)
    return soft.astype(bool)


def matting_metrics(
    pred: np.ndarray, gt: np.ndarray, unknown: np.ndarray
) -> dict[str, float | None]:
    """All four errors on the unknown region (``sad`` …) and on the whole image (``sad_image`` …).

    ``pred`` and ``gt``: ``H×W`` alphas in [0, 1]; ``unknown``: ``H×W bool``.
    """
    _check_pair(pred, gt, unknown)
    p = pred.astype(np.float64)
    g = gt.astype(np.float64)
    abs_diff = np.abs(p - g)
    sq_diff = (p - g) ** 2
    grad_sq = (gradient_magnitude(_stretch(p)) - gradient_magnitude(_stretch(g))) ** 2
    phi_pred, phi_gt = connectivity_phi(p, g)
    conn_diff = np.abs(phi_pred - phi_gt)
    n_unknown = int(unknown.sum())
    return {
        "sad": float(abs_diff[unknown].sum() / SUM_SCALE),
        "mse": float(sq_diff[unknown].sum() / n_unknown * MSE_SCALE) if n_unknown else None,
        "grad": float(grad_sq[unknown].sum() / SUM_SCALE),
        "conn": float(conn_diff[unknown].sum() / SUM_SCALE),
        "sad_image": float(abs_diff.sum() / SUM_SCALE),
        "mse_image": float(sq_diff.mean() * MSE_SCALE),
        "grad_image": float(grad_sq.sum() / SUM_SCALE),
        "conn_image": float(conn_diff.sum() / SUM_SCALE),
        "unknown_frac": float(n_unknown / unknown.size),
    }
