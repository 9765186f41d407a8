"""The plan: which source image goes to which split and which shard, decided before writing.

Planning reads only archive listings (zip central directories, tar headers, folder entries),
never pixels. From them it fixes, deterministically:

* the images (image members, deduplicated by dataset + image id: DOTA parts of several
  versions repeat images), what is skipped (unsafe, non-image, duplicate) and why;
* each image's split (:func:`pipeline.split.assign_split`);
* the order of images within a split (by the same hash, so shards mix classes, datasets and
  archives instead of holding one class each) and their packing into shards of about
  ``shard_max_bytes`` by source size;
* a hash per shard of everything its bytes depend on, so a re-run can recognise a shard it
  already wrote and a changed input or config is never mistaken for a finished shard.

The shard bytes are then a pure function of the plan entry and the source bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Any

from ltchm.config import PreprocessConfig
from pipeline.archives import LAYOUTS, Member, detect_layout, image_identity, list_source
from pipeline.split import SPLITS, assign_split, split_fraction

__all__ = ["FORMAT", "ImageEntry", "Plan", "ShardPlan", "config_dict", "make_plan", "shard_name"]

FORMAT = "ltchm-shards/1"
_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_-]")
_MAX_KEY = 72


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


@dataclass(frozen=True)
class ImageEntry:
    """One source image and where it goes."""

    dataset: str
    layout: str
    image_id: str
    key: str  # WebDataset key prefix: no dots, no slashes
    label: str | None
    split: str
    archive: str  # the source's file or folder name, as recorded in the metadata
    member: Member

    def fingerprint(self) -> dict[str, Any]:
        """What the samples of this image depend on (paths excluded: moving archives is ok)."""
        m = self.member
        return {
            "dataset": self.dataset,
            "layout": self.layout,
            "image_id": self.image_id,
            "key": self.key,
            "label": self.label,
            "split": self.split,
            "archive": self.archive,
            "member": m.path,
            "size": m.size,
            "crc": m.crc,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageEntry:
        return cls(**{**d, "member": Member(**d["member"])})


@dataclass
class ShardPlan:
    """The images of one shard, in writing order."""

    name: str
    split: str
    images: list[ImageEntry]
    est_bytes: int
    plan_hash: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "split": self.split,
                "est_bytes": self.est_bytes,
                "plan_hash": self.plan_hash,
                "images": [e.to_dict() for e in self.images],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ShardPlan:
        d = json.loads(text)
        images = [ImageEntry.from_dict(e) for e in d.pop("images")]
        return cls(images=images, **d)


@dataclass
class Plan:
    config: PreprocessConfig
    sources: list[dict[str, Any]]
    shards: list[ShardPlan]
    skipped: list[dict[str, str]] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)
    fingerprint: str = ""

    @property
    def images(self) -> list[ImageEntry]:
        return [e for s in self.shards for e in s.images]


def _sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _keys(entries: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Dot-free, slash-free, unique sample keys for (dataset, image id)."""

    def digest(image_id: str) -> str:
        return hashlib.sha1(image_id.encode()).hexdigest()[:8]

    base = {}
    for de in entries:
        k = _UNSAFE_KEY.sub("_", f"{de[0]}_{de[1]}")
        # Keys stay short enough for plain ustar names with the "_x00000_y00000.json" suffix.
        base[de] = k if len(k) <= _MAX_KEY else f"{k[: _MAX_KEY - 9]}_{digest(de[1])}"
    clashes = Counter(base.values())
    # WebDataset splits a file name at its first dot, so "a.b" ids are sanitised; where two
    # ids sanitise alike, a short hash of the true id keeps them apart.
    return {de: k if clashes[k] == 1 else f"{k}_{digest(de[1])}" for de, k in base.items()}


def _display_names(paths: list[PurePath]) -> dict[PurePath, str]:
    """How sources are named in metadata: the file name, with parent folders where needed.

    DOTA ships ``train/part1.zip`` and ``val/part1.zip``; absolute paths would make the shards
    depend on where the archives are mounted.
    """
    names: dict[PurePath, str] = {}
    for depth in range(1, max(len(p.parts) for p in paths) + 1):
        pending = [p for p in paths if p not in names]
        if not pending:
            break
        candidates = {p: "/".join(p.parts[-depth:]) for p in pending}
        counts = Counter(candidates.values())
        names.update({p: n for p, n in candidates.items() if counts[n] == 1})
    return names


def make_plan(inputs: Sequence[str | Path], cfg: PreprocessConfig) -> Plan:
    """Plan the shards for ``inputs`` (archives, folders, image files) under ``cfg``.

    Raises:
        pipeline.archives.ArchiveError: an input is missing or unusable (named).
        ValueError: no inputs, or no image at all in them.
    """
    if not inputs:
        raise ValueError("no input archives or folders given")
    listings = []
    seen_paths = set()
    for p in inputs:
        listing = list_source(p)
        if listing.path not in seen_paths:
            seen_paths.add(listing.path)
            listings.append(listing)
    # Input order must not matter: the first of duplicate images is taken in sorted order.
    listings.sort(key=lambda li: (li.path.name, str(li.path)))
    names = _display_names([li.path for li in listings])

    sources: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    ignored: Counter[str] = Counter()
    candidates: list[tuple[str, str, str | None, str, str, Member]] = []
    for listing in listings:
        layout = cfg.layout if cfg.layout != "auto" else detect_layout(listing)
        assert layout in LAYOUTS
        archive = names[listing.path]
        n_images = 0
        for name, reason in listing.refused:
            skipped.append({"archive": archive, "member": name, "reason": reason})
        for m in listing.members:
            if m.is_image:
                image_id, label = image_identity(m.path, layout)
                candidates.append((layout, image_id, label, archive, layout, m))
                n_images += 1
            elif m.is_sidecar:
                ignored[f"{m.suffix} (annotation/sidecar)"] += 1
            else:
                reason = f"not an image (suffix {m.suffix or 'none'!r})"
                skipped.append({"archive": archive, "member": m.path, "reason": reason})
        sources.append(
            {
                "name": archive,
                "kind": listing.kind,
                "layout": layout,
                "members": len(listing.members) + len(listing.refused),
                "images": n_images,
                "notes": list(listing.notes),
            }
        )

    # Deduplicate by (dataset, image id); dataset == layout name.
    candidates.sort(key=lambda c: (c[0], c[1], c[3], c[5].path))
    chosen: dict[tuple[str, str], tuple[str, str | None, str, Member]] = {}
    for dataset, image_id, label, archive, layout, m in candidates:
        first = chosen.get((dataset, image_id))
        if first is not None:
            reason = f"duplicate of {first[2]}:{first[3].path} (same {dataset} image id)"
            skipped.append({"archive": archive, "member": m.path, "reason": reason})
            continue
        chosen[(dataset, image_id)] = (layout, label, archive, m)
    if not chosen:
        given = ", ".join(s["name"] for s in sources)
        raise ValueError(f"no image members found in {given}")

    keys = _keys(list(chosen))
    by_split: dict[str, list[tuple[float, ImageEntry]]] = defaultdict(list)
    for (dataset, image_id), (layout, label, archive, m) in chosen.items():
        split = assign_split(dataset, image_id, cfg.split_seed, cfg.split_ratios)
        u = split_fraction(dataset, image_id, cfg.split_seed)
        entry = ImageEntry(dataset, layout, image_id, keys[(dataset, image_id)], label, split,
                           archive, m)  # fmt: skip
        by_split[split].append((u, entry))

    config = config_dict(cfg)
    shards: list[ShardPlan] = []
    for split in SPLITS:
        entries = [e for _, e in sorted(by_split[split], key=lambda t: (t[0], t[1].key))]
        current: list[ImageEntry] = []
        size = 0
        index = 0
        for e in entries:
            if current and size + e.member.size > cfg.shard_max_bytes:
                shards.append(ShardPlan(shard_name(split, index), split, current, size))
                index += 1
                current, size = [], 0
            current.append(e)
            size += e.member.size
        if current:
            shards.append(ShardPlan(shard_name(split, index), split, current, size))
    for s in shards:
        s.plan_hash = _sha256_json(
            {
                "format": FORMAT,
                "config": config,
                "shard": s.name,
                "images": [e.fingerprint() for e in s.images],
            }
        )
    skipped.sort(key=lambda d: (d["archive"], d["member"]))
    fingerprint = _sha256_json({"config": config, "shards": [s.plan_hash for s in shards]})
    return Plan(cfg, sources, shards, skipped, dict(sorted(ignored.items())), fingerprint)


def config_dict(cfg: PreprocessConfig) -> dict[str, Any]:
    """The ``preprocess`` section as plain JSON values (recorded in hashes and the manifest)."""
    return json.loads(cfg.model_dump_json())
