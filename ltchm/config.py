"""The one configuration schema of the platform.

Every stage reads its settings from one :class:`Config`: the model, the loss, training,
DeepSpeed, tracking, the data pipeline and the jobs. Files are YAML; a file may name others
under ``extends`` (paths relative to it) whose values it overrides. Unknown keys and wrong
types are errors that name the offending key.

Example::

    cfg = load_config("configs/lambda_512.yaml", overrides={"train.steps": 1000})
    cfg.model.N, cfg.loss.lmbda
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "DeepSpeedConfig",
    "EvaluateConfig",
    "LossConfig",
    "ModelConfig",
    "PreprocessConfig",
    "ScenesConfig",
    "TrackingConfig",
    "TrainConfig",
    "config_hash",
    "dump_config",
    "load_config",
    "yaml_value",
]

LAMBDAS = (128, 256, 512, 1024, 2048, 4096)


class ConfigError(ValueError):
    """A configuration that does not fit the schema; the message names the key."""


class _Section(BaseModel):
    # strict: "N: '192'" or "steps: true" are errors, not silent coercions.
    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)


class ModelConfig(_Section):
    """Architecture: a registry name plus the keys that model takes (see ``ltchm.zoo``)."""

    name: str = "ltchm"
    N: int = Field(192, ge=8, description="channels of y and z (192 low rates, 256 high)")
    mixture: Literal["gaussian", "laplace"] = "gaussian"
    K: int = Field(3, ge=1, le=8, description="mixture components")
    context: Literal["autoregressive", "checkerboard"] = "autoregressive"
    window_size: int = Field(4, ge=1)
    head_dim: int = Field(32, ge=1)
    dam_layout: Literal["authors", "table1"] = Field(
        "authors",
        description="LTCHM's module placement: authors (the released code behind the paper's "
        "tables: 4 DAMs, 2 HPHAMs) or table1 (Tables 1-2 as printed: 7 DAMs, 4 HPHAMs)",
    )

    # Keys added after configs were first recorded, with the value a recorded config without
    # them stands for: left out of the identity hash at that value, so files and checkpoints
    # of older models keep their identity (see ltchm.zoo.recorded_model_config).
    LEGACY_VALUES: ClassVar[dict[str, Any]] = {"dam_layout": "table1"}


class LossConfig(_Section):
    """Rate-distortion loss: ``lmbda * D + bpp`` with D = MSE on [0, 1] or 1 - MS-SSIM."""

    lmbda: float = Field(512.0, gt=0)
    metric: Literal["mse", "ms-ssim"] = "mse"


class TrainConfig(_Section):
    """The paper's recipe by default (Sec. 3.2)."""

    steps: int = Field(200_000, ge=1)
    batch_size: int = Field(8, ge=1, description="per step, over all workers")
    patch_size: int = Field(256, ge=64)
    lr: float = Field(1e-4, gt=0)
    lr_final: float = Field(1e-5, gt=0)
    lr_drop_at: float = Field(
        0.5, gt=0, le=1, description="step schedule: fraction of steps at which lr drops"
    )
    lr_schedule: Literal["step", "cosine"] = Field(
        "step",
        description="step: lr, then lr_final from lr_drop_at (the paper); cosine: from lr down "
        "to lr_final over the steps after the warm-up",
    )
    lr_warmup_steps: int = Field(0, ge=0, description="linear warm-up from 0 to lr")
    fine_tune_lr: float | None = Field(
        None,
        gt=0,
        description="the peak learning rate instead of lr when training starts from init_from "
        "(a trained model: a rate point fine-tuned from another); None: lr",
    )
    aux_lr: float = Field(1e-3, gt=0)
    clip_grad_norm: float | None = Field(1.0, gt=0)
    workers: int = Field(1, ge=1, description="Ray Train workers (one DeepSpeed rank each)")
    use_gpu: bool = False
    cpus_per_worker: int | None = Field(
        1,
        ge=1,
        description="CPUs (torch threads) per worker; None: each node's CPUs shared by the "
        "workers (CPU training)",
    )
    seed: int = 0
    log_every: int = Field(10, ge=1)
    val_every: int = Field(5000, ge=1)
    val_images: int = Field(16, ge=1)
    checkpoint_every: int = Field(5000, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    init_from: str | None = Field(
        None,
        description="start from this model's weights (a checkpoint file or models:/ URI of the "
        "same architecture, e.g. another rate point's): fine-tuning instead of a random start",
    )
    snapshot_every: int | None = Field(
        None,
        ge=1,
        description="also write a codec checkpoint (ready to encode/evaluate) every this many "
        "steps, into {out}/lambda_{L}/snapshots/",
    )
    loader_workers: int = Field(2, ge=0)
    compile: bool = Field(
        False,
        description="torch.compile (Inductor) the training forward of the model's compile "
        "units (LTCHM: its DAMs): faster steps after a one-off compilation of a few minutes "
        "(needs a C++ compiler on CPU workers); validation and coding stay eager",
    )
    out: str = "runs"

    def peak_lr(self) -> float:
        """The schedule's peak: ``fine_tune_lr`` when fine-tuning from ``init_from``, else
        ``lr``."""
        if self.init_from and self.fine_tune_lr is not None:
            return self.fine_tune_lr
        return self.lr


class DeepSpeedConfig(_Section):
    """DeepSpeed settings; ``extra`` is merged verbatim into the generated ds_config."""

    zero_stage: int = Field(1, ge=0, le=3)
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="auto: bf16 on GPUs, fp32 on CPUs; bf16 is torch.autocast over float32 "
        "weights (GDN and the entropy models stay float32)",
    )
    extra: dict[str, Any] = Field(default_factory=dict)


class TrackingConfig(_Section):
    """MLflow: an embedded SQLite store by default, any tracking URI by config."""

    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI; default $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db",
    )
    artifact_location: str | None = None
    experiment: str = "ltchm"
    registered_model: str = "ltchm"
    system_metrics: bool = True


class PreprocessConfig(_Section):
    """Archive -> WebDataset shards (``jobs.preprocess``)."""

    layout: Literal["auto", "dota", "ucmerced", "gaofen", "folder"] = "auto"
    tile_size: int = Field(256, ge=16)
    stride: int = Field(256, ge=1)
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_seed: int = 0
    tile_splits: tuple[Literal["train", "val", "test"], ...] = ("train",)
    image_format: Literal["png", "webp"] = "png"
    shard_max_bytes: int = Field(256 * 1024**2, ge=1024)
    skip_nodata_fraction: float = Field(0.95, ge=0, le=1)
    skip_constant_std: float = Field(1.0, ge=0)
    stretch_percentiles: tuple[float, float] = (2.0, 98.0)
    small_image: Literal["pad", "skip"] = "pad"
    pad_mode: Literal["symmetric", "edge", "constant"] = Field(
        "symmetric", description="numpy.pad mode filling train tiles of images smaller than a tile"
    )
    rgb_bands: tuple[int, int, int] | None = Field(
        None,
        description="1-based bands read as R,G,B; None: colour interpretation, else B,G,R,NIR "
        "for Gaofen, else the first three",
    )
    png_compress_level: int = Field(
        1, ge=0, le=9, description="zlib level; on aerial tiles 1 is faster than 6 and as small"
    )
    max_image_pixels: int = Field(2**30, ge=1, description="larger images are skipped, reported")
    max_worker_memory: int = Field(
        2 * 2**30,
        ge=2**26,
        description="bytes one worker may use to decode an image: larger rasters are tiled by "
        "windowed reads, other formats over it are skipped and reported",
    )
    window_reads_above: int = Field(
        2**26,
        ge=0,
        description="train-split images whose whole decode would need more bytes than this "
        "are read by windows (GeoTIFF, JPEG2000) or row strips (8-bit PNG) instead, "
        "so a worker's memory stays flat whatever the image size",
    )

    @model_validator(mode="after")
    def _ratios(self) -> PreprocessConfig:
        if abs(sum(self.split_ratios) - 1.0) > 1e-6:
            raise ValueError(f"split_ratios must sum to 1, got {self.split_ratios}")
        lo, hi = self.stretch_percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(
                f"stretch_percentiles must satisfy 0 <= lo < hi <= 100, got {lo}, {hi}"
            )
        if self.rgb_bands is not None and min(self.rgb_bands) < 1:
            raise ValueError(f"rgb_bands are 1-based band numbers, got {self.rgb_bands}")
        return self


class DataConfig(_Section):
    """The training loader over the shards."""

    shards: str | None = None
    shuffle_buffer: int = Field(1000, ge=0)
    epoch_length: int = Field(
        10_000, ge=1, description="samples per resampled epoch per training process (rank)"
    )
    verify_shards: bool = Field(
        True,
        description="check every shard's sha256 against the manifest before training starts "
        "(about 2 s per GB on one core); false: sizes, and the sha256 of the first and last "
        "shard of each split",
    )


class ScenesConfig(_Section):
    """Scene codec (``jobs.compress_scenes``, ``pipeline.scenes``)."""

    tile_size: int = Field(512, ge=64, description="tile side in pixels, a multiple of 64")
    overlap: int = Field(
        16,
        ge=0,
        description="pixels neighbouring tiles share (<= tile / 2); 16 blended removes the seams "
        "that independent tiles show, for 1 % more bytes (benchmarks/scene.py)",
    )
    blend_width: int | None = Field(
        None,
        ge=0,
        description="linear ramp across each overlap, centred in it; 0: hard cut at the "
        "midline (cropped centres); None: the whole overlap",
    )
    output_format: Literal["cog", "gtiff"] = "cog"
    output_compress: Literal["zstd", "deflate"] = "zstd"
    overview_resampling: Literal["average", "nearest", "bilinear", "cubic", "mode"] = "average"
    bit_mapping: Literal["scene-linear", "tile-linear"] = Field(
        "tile-linear",
        description="non-8-bit bands -> [0, 1] by their valid min/max per tile or over the "
        "scene (stored, reversible); per tile measured as good or better (benchmarks/scene.py)",
    )
    band_groups: tuple[tuple[int, ...], ...] | None = Field(
        None,
        description="1-based bands coded together as 3-channel images, e.g. [[3, 2, 1], [4]]; "
        "None: R,G,B by colour interpretation first, then the rest in threes",
    )
    chunk_tiles: int = Field(
        1,
        ge=1,
        description="tiles per Ray task (the unit of work): 1 to 4 measured equal, more "
        "slower (workers idle at the end of a scene); 1 holds the least in memory",
    )
    verify: bool = Field(True, description="decode each file and report PSNR per band")
    max_error: float | None = Field(
        None,
        ge=0,
        description="error-bounded layer: every valid pixel within this many native units of "
        "its source (0: lossless); with psnr_floor, only where the floor is not met",
    )
    target_psnr: float | None = Field(
        None,
        gt=0,
        description="dB: each tile coded by the rate point of the model family that gives every "
        "band this PSNR (native range) with the fewest bytes",
    )
    target_bpp: float | None = Field(
        None,
        gt=0,
        description="bits per pixel: each tile coded by the best rate point of the family that "
        "fits this rate",
    )
    psnr_floor: float | None = Field(
        None,
        gt=0,
        description="dB: tiles/bands whose PSNR (native range) falls below get the "
        "error-bounded layer (E = max_error, else the E that guarantees the floor)",
    )
    workers: int | None = Field(None, ge=1, description="Ray workers (None: the cluster's CPUs)")
    cpus_per_worker: int = Field(1, ge=1, description="CPUs (torch threads) per worker")

    def blend(self) -> int:
        """The effective ramp width in pixels."""
        return self.overlap if self.blend_width is None else self.blend_width

    @model_validator(mode="after")
    def _geometry(self) -> ScenesConfig:
        if self.tile_size % 64:
            raise ValueError(f"tile_size must be a multiple of 64, got {self.tile_size}")
        if 2 * self.overlap > self.tile_size:
            raise ValueError(f"overlap must be at most tile_size / 2, got {self.overlap}")
        if self.blend() > self.overlap:
            raise ValueError(f"blend_width {self.blend_width} exceeds the overlap {self.overlap}")
        if self.target_psnr is not None and self.target_bpp is not None:
            raise ValueError("give target_psnr or target_bpp, not both")
        for g in self.band_groups or ():
            if not 1 <= len(g) <= 3 or min(g) < 1:
                raise ValueError(f"band_groups hold 1 to 3 band numbers >= 1, got {list(g)}")
        return self


class EvaluateConfig(_Section):
    """Rate-distortion evaluation (``jobs.evaluate``); see ``ltchm.evaluation.classical``."""

    codecs: tuple[str, ...] = ("jpeg2000", "webp", "avif", "hevc", "jpeg")
    jpeg2000_ratios: tuple[float, ...] = (20, 30, 40, 60, 110, 160)
    webp_qualities: tuple[int, ...] = (1, 4, 20, 35, 60, 80)
    webp_method: int = Field(6, ge=0, le=6, description="cwebp -m (6: slowest, best)")
    avif_qualities: tuple[int, ...] = (10, 20, 30, 40, 50, 60)
    avif_speed: int = Field(6, ge=0, le=10, description="avifenc -s (6: its default)")
    hevc_qps: tuple[int, ...] = (25, 30, 35, 40, 43, 46)
    hevc_preset: str = Field("veryslow", description="x265 preset (bpgenc's level 8)")
    hevc_chroma: Literal["444", "420"] = "444"
    jpeg_qualities: tuple[int, ...] = (5, 10, 20, 40, 60, 80)
    lpips: bool = Field(True, description="compute LPIPS (needs AlexNet's ImageNet weights)")
    lpips_weights: str | None = None
    anchor: str = Field("jpeg2000", description="the BD-rate anchor codec")
    bd_method: Literal["akima", "pchip", "cubic"] = "akima"
    workers: int | None = Field(None, ge=1, description="worker processes (default: CPUs)")
    complexity: bool = Field(True, description="time encode/decode per 256x256 image")
    complexity_repeats: int = Field(3, ge=1)

    @model_validator(mode="after")
    def _ladders(self) -> EvaluateConfig:
        checks = {
            "jpeg2000_ratios": (self.jpeg2000_ratios, 1, float("inf")),
            "webp_qualities": (self.webp_qualities, 0, 100),
            "avif_qualities": (self.avif_qualities, 0, 100),
            "hevc_qps": (self.hevc_qps, 0, 51),
            "jpeg_qualities": (self.jpeg_qualities, 1, 100),
        }
        for key, (values, lo, hi) in checks.items():
            if not values:
                raise ValueError(f"{key} must not be empty")
            if len(set(values)) != len(values) or not all(lo <= v <= hi for v in values):
                raise ValueError(f"{key} must be distinct values in [{lo}, {hi}], got {values}")
        return self


class Config(_Section):
    """The root of the schema."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    deepspeed: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    scenes: ScenesConfig = Field(default_factory=ScenesConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)


# PyYAML follows YAML 1.1, where "1e-4" is a string; accept it as the float users mean.
class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_value(text: str) -> Any:
    """A value written as in a config file (``1e-4`` is a float here, as users mean it)."""
    return yaml.load(text, Loader=_Loader)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _resolve(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"config 'extends' cycle: {chain}")
    data = _read_yaml(path)
    parents = data.pop("extends", [])
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise ConfigError(f"{path}: 'extends' must be a path or a list of paths")
    merged: dict[str, Any] = {}
    for parent in parents:
        merged = _deep_merge(merged, _resolve(path.parent / parent, (*seen, path)))
    return _deep_merge(merged, data)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
    node[keys[-1]] = value


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key")
        else:
            lines.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
    return f"{source}: invalid configuration: " + "; ".join(lines)


def _to_tuples(data: Any) -> Any:
    # YAML has no tuples; the schema uses them for fixed-length settings.
    if isinstance(data, dict):
        return {k: _to_tuples(v) for k, v in data.items()}
    if isinstance(data, list):
        return tuple(_to_tuples(v) for v in data)
    return data


def config_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Config:
    """Validate a plain mapping against the schema."""
    try:
        return Config.model_validate(_to_tuples(dict(data)))
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def config_path(name: str | Path) -> Path:
    """A config file by path, or a shipped one by name from any folder (``lambda_512``,
    ``cpu``, ``configs/demo.yaml``): the path if it exists, else the repository's
    ``configs/`` entry of that name."""
    from ltchm.paths import REPO_ROOT

    path = Path(name)
    if path.exists() or path.is_absolute():
        return path
    shipped = REPO_ROOT / "configs"
    for candidate in (shipped / path.name, shipped / f"{path.name}.yaml"):
        if path.parent in (Path(), Path("configs")) and candidate.is_file():
            return candidate
    return path


def load_config(
    paths: str | Path | Iterable[str | Path] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load YAML files (later ones win), apply dotted ``overrides``, validate.

    Args:
        paths: one file or several; ``None`` gives the defaults.
        overrides: e.g. ``{"train.steps": 100, "model.N": 64}``.
    """
    if paths is None:
        paths = []
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    merged: dict[str, Any] = {}
    names = []
    for p in paths:
        merged = _deep_merge(merged, _resolve(config_path(p)))
        names.append(str(p))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(merged, dotted, value)
    return config_from_dict(merged, ", ".join(names) or "<defaults>")


def dump_config(cfg: Config) -> dict[str, Any]:
    """A JSON/YAML-ready mapping that :func:`config_from_dict` turns back into ``cfg``."""
    dumped: dict[str, Any] = json.loads(cfg.model_dump_json())
    return dumped


def config_hash(section: BaseModel) -> str:
    """A stable sha256 hex digest of one section (e.g. the model architecture)."""
    dumped = json.loads(section.model_dump_json())
    for key, legacy in getattr(section, "LEGACY_VALUES", {}).items():
        if dumped.get(key) == legacy:
            del dumped[key]
    canonical = json.dumps(dumped, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
