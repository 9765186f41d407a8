"""Per-image quality metrics of the paper: PSNR, MS-SSIM (and in dB), LPIPS (AlexNet), VIFp.

PSNR and MS-SSIM are the implementations of :mod:`ltchm.metrics`; this module adds VIFp
(``piq.vif_p``) and LPIPS (the ``lpips`` package, AlexNet trunk, inputs scaled to [-1, 1]).

Where a metric is undefined for an image it is ``nan`` and the reason goes into the notes:

* MS-SSIM with the standard 5 scales and 11x11 window needs both sides > 160 px; we do not
  silently drop scales (the values would not be comparable with the paper's), so smaller
  images get ``nan`` for ``ms_ssim`` and ``ms_ssim_db``.
* VIFp (piq) needs both sides >= 41 px; LPIPS' AlexNet needs >= 32 px.

LPIPS needs AlexNet's ImageNet weights. They are never downloaded and never random: they come
from an explicit file or from the torch hub cache (where torchvision would have put them), else
:class:`LpipsWeightsError` says how to provide them.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ltchm.imageio import Image8
from ltchm.metrics import ms_ssim, ms_ssim_db, psnr

__all__ = [
    "ALEXNET_CHECKPOINT",
    "LPIPS_MIN_SIZE",
    "METRICS",
    "MS_SSIM_MIN_SIZE",
    "VIFP_MIN_SIZE",
    "LpipsWeightsError",
    "alexnet_weights_path",
    "image_metrics",
    "load_lpips",
    "lpips_distance",
    "to_tensor",
    "vifp",
]

METRICS = ("psnr", "ms_ssim", "ms_ssim_db", "lpips", "vifp")
MS_SSIM_MIN_SIZE = 161  # pytorch_msssim: 5 scales of an 11 px window need > (11 - 1) * 2**4
VIFP_MIN_SIZE = 41
LPIPS_MIN_SIZE = 32
# torchvision's AlexNet ImageNet weights, as torch.hub caches them.
ALEXNET_CHECKPOINT = "alexnet-owt-7be5be79.pth"


class LpipsWeightsError(RuntimeError):
    """AlexNet's weights for LPIPS are missing or unusable."""


def to_tensor(img: Image8) -> Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [0, 1]."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {img.shape} {img.dtype}")
    return torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).float().div_(255.0)


def alexnet_weights_path(weights: str | os.PathLike[str] | None = None) -> Path:
    """The AlexNet checkpoint LPIPS will use: ``weights`` if given, else the hub cache's."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise LpipsWeightsError(
                f"LPIPS: AlexNet weights file not found: {path} (from --lpips-weights / "
                "evaluate.lpips_weights)"
            )
        return path
    path = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_CHECKPOINT
    if not path.is_file():
        raise LpipsWeightsError(
            "LPIPS needs torchvision's ImageNet AlexNet weights and they are not here: no "
            f"{path} in the torch hub cache and no --lpips-weights / evaluate.lpips_weights "
            f"given. Fetch https://download.pytorch.org/models/{ALEXNET_CHECKPOINT} on a "
            "machine with internet access and pass its path with --lpips-weights (or copy it "
            f"into {path.parent}); or run without LPIPS (--no-lpips). LPIPS is never computed "
            "with random weights."
        )
    return path


def _backbone_state(path: Path) -> dict[str, Tensor]:
    """AlexNet ``features`` weights keyed by layer index, from a full or features-only file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LpipsWeightsError(f"LPIPS: cannot read AlexNet weights from {path}: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise LpipsWeightsError(f"LPIPS: {path} is not a state dict of AlexNet weights")
    # torchvision's checkpoint has "features.N.*" and "classifier.*"; a features-only state
    # dict (alexnet().features.state_dict()) has "N.*". LPIPS uses the features only.
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("classifier."):
            continue
        out[key.removeprefix("features.")] = value
    return out


def load_lpips(weights: str | os.PathLike[str] | None = None) -> nn.Module:
    """LPIPS v0.1 with an AlexNet trunk whose ImageNet weights come from a local file.

    The ``lpips`` package ships its calibrated linear layers; its trunk would be downloaded by
    torchvision, so we build it with random weights (``pnet_rand=True``, no network access)
    and overwrite every one of them from ``weights`` (strictly: a missing or misshapen tensor
    is an error, so no random weight survives).
    """
    import lpips

    path = alexnet_weights_path(weights)
    features = _backbone_state(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's "pretrained is deprecated"
        model = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    # lpips splits alexnet.features into slice1..5 keeping the layer indices as names.
    index_to_slice = {
        name: f"slice{k}"
        for k in range(1, model.net.N_slices + 1)
        for name in getattr(model.net, f"slice{k}")._modules
    }
    trunk = {}
    for key, value in features.items():
        index, _, param = key.partition(".")
        if index not in index_to_slice:
            raise LpipsWeightsError(f"LPIPS: {path} has {key!r}, not an AlexNet features layer")
        trunk[f"{index_to_slice[index]}.{index}.{param}"] = value
    try:
        model.net.load_state_dict(trunk, strict=True)
    except RuntimeError as exc:
        raise LpipsWeightsError(f"LPIPS: {path} does not hold AlexNet weights: {exc}") from None
    evaluated: nn.Module = model.eval()
    return evaluated


@torch.no_grad()
def lpips_distance(model: nn.Module, ref: Tensor, dec: Tensor) -> float:
    """LPIPS between two (3, H, W) images in [0, 1] (scaled to [-1, 1] as LPIPS expects)."""
    return float(model(ref[None] * 2 - 1, dec[None] * 2 - 1).flatten()[0])


@torch.no_grad()
def vifp(ref: Tensor, dec: Tensor) -> float:
    """Pixel-domain VIF (piq), on luminance, of two (3, H, W) images in [0, 1]."""
    import piq

    # float32: much faster than float64 on CPU, the same values to ~1e-5
    # (benchmarks/RESULTS.md, "Implementation choices")
    return float(piq.vif_p(ref[None], dec[None], data_range=1.0))


def image_metrics(
    ref: Image8, dec: Image8, lpips_model: nn.Module | None
) -> tuple[dict[str, float], list[str]]:
    """All metrics of one decoded (H, W, 3) uint8 image; ``nan`` where undefined, with notes.

    PSNR is computed on the 8-bit values in float64 (exact: a constant error of k levels gives
    20 log10(255 / k)); the others on float32 images in [0, 1]. ``lpips_model=None`` leaves
    LPIPS out (``nan``), for runs asked not to compute it.
    """
    if ref.shape != dec.shape:
        raise ValueError(f"decoded image is {dec.shape}, original {ref.shape}")
    H, W = ref.shape[:2]
    side = min(H, W)
    notes = []
    out = {"psnr": psnr(torch.tensor(ref), torch.tensor(dec), data_range=255.0)}
    x, y = to_tensor(ref), to_tensor(dec)
    if side >= MS_SSIM_MIN_SIZE:
        out["ms_ssim"] = ms_ssim(x, y)
        out["ms_ssim_db"] = ms_ssim_db(out["ms_ssim"])
    else:
        out["ms_ssim"] = out["ms_ssim_db"] = math.nan
        notes.append(f"ms_ssim: undefined for {W}x{H} (5 scales need sides > 160 px)")
    if lpips_model is None:
        out["lpips"] = math.nan
    elif side >= LPIPS_MIN_SIZE:
        out["lpips"] = lpips_distance(lpips_model, x, y)
    else:
        out["lpips"] = math.nan
        notes.append(f"lpips: undefined for {W}x{H} (AlexNet needs sides >= 32 px)")
    if side >= VIFP_MIN_SIZE:
        out["vifp"] = vifp(x, y)
    else:
        out["vifp"] = math.nan
        notes.append(f"vifp: undefined for {W}x{H} (needs sides >= 41 px)")
    return out, notes
