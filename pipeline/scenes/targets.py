"""Quality and rate targets: each tile coded by the rate point of a family that meets them.

A *family* is a set of models of the same kind at different rate points, e.g. the six
registered ``ltchm-lambda{λ}`` at one alias (``models:/ltchm-lambda*@champion``), a
pretrained set (``pretrained:<set>``), or specs joined by commas. For every tile,
:class:`FamilyCoder` codes it with each rate point, decodes it as the decoder will, and keeps:

* ``--target-psnr DB``: among the rate points whose every band reaches DB (native range,
  valid pixels of the region the tile owns; the peak is 255 for 8-bit data, else the band's
  range in the tile, which is at most its range in the scene: a conservative judge), the
  one with the fewest bytes;
* ``--target-bpp B``: among those whose record fits B bits per owned pixel, the one with the
  highest lowest-band PSNR (the scene then fits B, but for its header and index).

The tile record names its rate point (an index into the header's ``family``). A PSNR target
no rate point meets is handled by the error-bounded layer when the batch allows one
(``--max-error`` / ``--psnr-floor``: the tile's bands below the target get a residual);
otherwise, and for a rate no rate point fits, the scene fails with the reason (the batch
goes on). Every tile's choice is reported (:attr:`FamilyCoder.notes`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ltchm.codec.identity import ModelIdentity
from pipeline.scenes.container import ModelInfo, SceneHeader, TileRecord, pack_tile
from pipeline.scenes.grid import SceneGrid
from pipeline.scenes.source import SourceTile
from pipeline.scenes.tiles import DecodedTile, TileCoder, _owned_slice

__all__ = ["FamilyCoder", "TargetError", "resolve_family"]


class TargetError(ValueError):
    """No rate point meets a tile's target and nothing may bound it instead."""


def resolve_family(spec: str, tracking_uri: str | None = None) -> list[str]:
    """The model specs of a family SPEC (see the module docstring), ordered by λ when known."""
    if "," in spec:
        return [s.strip() for s in spec.split(",") if s.strip()]
    from ltchm.codec.pretrained import PREFIX, pretrained_sets

    if spec.startswith(PREFIX) and "/" not in spec:
        name = spec.removeprefix(PREFIX)
        sets = pretrained_sets()
        if name not in sets:
            raise ValueError(f"no pretrained set {name!r} ({', '.join(sets) or 'none'})")
        return [f"{PREFIX}{name}/{lm:g}" for lm in sets[name]]
    if spec.startswith("models:/") and "*" in spec:
        from mlflow import MlflowClient

        from ltchm.tracking import resolve_tracking_uri

        pattern, _, alias = spec.removeprefix("models:/").partition("@")
        if not alias:
            raise ValueError(f"{spec!r}: a family of registered models needs an @alias")
        client = MlflowClient(resolve_tracking_uri(tracking_uri))
        like = pattern.replace("*", "%")
        found: list[tuple[float, str]] = []
        for rm in client.search_registered_models(filter_string=f"name LIKE '{like}'"):
            if alias not in (rm.aliases or {}):
                continue
            v = client.get_model_version_by_alias(rm.name, alias)
            lm = float(v.tags.get("lmbda", "nan")) if v.tags else math.nan
            found.append((lm, f"models:/{rm.name}@{alias}"))
        if not found:
            raise ValueError(f"no registered model matches {pattern!r} with alias {alias!r}")
        return [s for _, s in sorted(found, key=lambda t: (math.isnan(t[0]), t[0], t[1]))]
    return [spec]


def _band_psnr(
    header: SceneHeader,
    src: SourceTile,
    dec: DecodedTile,
    own: tuple[slice, slice],
    lo: Any,
    hi: Any,
) -> list[float]:
    """PSNR per coded band over the owned valid pixels (inf for an exact band or none)."""
    out = []
    for c in range(len(header.coded_bands)):
        valid = src.valid[c][own]
        if not valid.any():
            out.append(math.inf)
            continue
        got = dec.exact[c] if c in dec.exact else dec.values[c][own]
        d = got[valid].astype(np.float64) - src.data[c][own][valid].astype(np.float64)
        if header.dtype not in ("float32", "float64"):
            d = np.rint(d)  # what the integer output will hold, within rounding
        mse = float(np.dot(d, d)) / d.size
        peak = 255.0 if header.dtype == "uint8" else float(hi[c]) - float(lo[c])
        out.append(math.inf if mse == 0 else 10 * math.log10(max(peak, 1e-300) ** 2 / mse))
    return out


class FamilyCoder:
    """The rate points of a family, each held once; codes every tile to its target."""

    def __init__(
        self,
        coders: Sequence[TileCoder],
        target_psnr: float | None = None,
        target_bpp: float | None = None,
    ) -> None:
        if not coders:
            raise ValueError("a family needs at least one rate point")
        if (target_psnr is None) == (target_bpp is None):
            raise ValueError("give one target: a PSNR or a bpp")
        self.coders = list(coders)
        self.target_psnr, self.target_bpp = target_psnr, target_bpp
        self.notes: list[dict[str, Any]] = []

    # what a worker and the decoder ask of a coder
    @property
    def identity(self) -> ModelIdentity:
        return self.coders[0].identity

    @property
    def model(self) -> Any:
        return self.coders[0].model

    def infos(self, context: str | None, sources: Sequence[str | None]) -> list[ModelInfo]:
        from pipeline.scenes.tiles import model_info

        return [
            model_info(c.identity, context=getattr(c.model, "context", context), source=s)
            for c, s in zip(self.coders, sources, strict=True)
        ]

    def encode(self, header: SceneHeader, grid: SceneGrid, index: int, src: SourceTile) -> bytes:
        plain = header.model_copy(update={"error": None})
        ox, oy, ow, oh = _owned_slice(grid, index)
        own = (slice(oy, oy + oh), slice(ox, ox + ow))
        tried = []
        for k, coder in enumerate(self.coders):
            rec = coder.encode_record(plain, grid, index, src)
            rec.model = k
            size = len(pack_tile(rec))
            dec = coder.decode(plain, grid, index, rec)
            lo, hi = _ranges(header, rec)
            tried.append((k, rec, size, min(_band_psnr(header, src, dec, own, lo, hi))))
        pixels = max(1, ow * oh)
        if self.target_psnr is not None:
            met = [t for t in tried if t[3] >= self.target_psnr]
            pick = min(met, key=lambda t: t[2]) if met else max(tried, key=lambda t: t[3])
        else:
            assert self.target_bpp is not None
            met = [t for t in tried if 8 * t[2] / pixels <= self.target_bpp]
            pick = max(met, key=lambda t: (t[3], -t[2])) if met else min(tried, key=lambda t: t[2])
        k, rec, size, psnr = pick
        lm = self.coders[k].identity.lmbda
        note = {"tile": index, "model": None if math.isnan(lm) else lm, "psnr_min_db": psnr,
                "bpp": 8 * size / pixels, "met": bool(met), "bounded": False}  # fmt: skip
        if not met:
            what = (
                f"{psnr:.2f} dB at best, target {self.target_psnr} dB"
                if self.target_psnr is not None
                else f"{8 * size / pixels:.3f} bpp at least, target {self.target_bpp} bpp"
            )
            if self.target_psnr is None or header.error is None:
                how = (
                    "allow --max-error or --psnr-floor to bound it"
                    if self.target_psnr is not None
                    else "no rate point of the family codes it that small"
                )
                raise TargetError(f"tile {index}: no rate point meets the target ({what}); {how}")
            # the error-bounded layer takes over: the bands below the target get a residual
            floor = max(self.target_psnr, header.error.psnr_floor or 0.0)
            bounded = header.model_copy(
                update={"error": header.error.model_copy(update={"psnr_floor": floor})}
            )
            rec = self.coders[k].encode_record(bounded, grid, index, src)
            rec.model = k
            note["bounded"] = True
        elif header.error is not None:  # the batch's own bound applies on top of the choice
            rec = self.coders[k].encode_record(header, grid, index, src)
            rec.model = k
        self.notes.append(note)
        return pack_tile(rec)

    def decode(
        self, header: SceneHeader, grid: SceneGrid, index: int, record: TileRecord
    ) -> DecodedTile:
        return _dispatch(header, index, record, lambda k: self.coders[k]).decode(
            header, grid, index, record
        )


class FamilyDecoder:
    """Decodes a family file, loading each rate point the first time a tile needs it."""

    def __init__(self, header: SceneHeader, load: Callable[[ModelInfo], Any], device: Any = None):
        self.header, self._load, self.device = header, load, device
        self._coders: dict[int, TileCoder] = {}
        self.identity = self._coder(0).identity if header.family else None

    def _coder(self, k: int) -> TileCoder:
        if k not in self._coders:
            from pipeline.scenes.tiles import check_model

            info = self.header.family[k]
            coder = TileCoder(self._load(info), self.device)
            check_model(self.header.model_copy(update={"model": info}), coder.identity)
            self._coders[k] = coder
        return self._coders[k]

    def decode(
        self, header: SceneHeader, grid: SceneGrid, index: int, record: TileRecord
    ) -> DecodedTile:
        return _dispatch(header, index, record, self._coder).decode(header, grid, index, record)


def _dispatch(
    header: SceneHeader, index: int, record: TileRecord, get: Callable[[int], TileCoder]
) -> TileCoder:
    k = record.model
    if k is None or not 0 <= k < len(header.family):
        raise ValueError(
            f"tile {index} names rate point {k}, the file's family has {len(header.family)}: "
            "the file is corrupted"
        )
    coder = get(k)
    from pipeline.scenes.tiles import check_model

    check_model(header.model_copy(update={"model": header.family[k]}), coder.identity)
    return coder


def _ranges(header: SceneHeader, rec: TileRecord) -> tuple[list[float], list[float]]:
    from pipeline.scenes.tiles import scene_mapping

    if rec.mapping is not None:
        return [m[0] for m in rec.mapping], [m[1] for m in rec.mapping]
    return scene_mapping(header)
