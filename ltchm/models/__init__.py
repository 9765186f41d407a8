"""Model definitions; build them through :mod:`ltchm.zoo`."""

from typing import Any, TypeAlias

from ltchm.models.ltchm import LTCHM, Variant

# A compression model as the codec uses it: an ``nn.Module`` with CompressAI's coding API
# (``compress``, ``decompress``, ``update``, ``entropy_bottleneck``, ``aux_loss``) and the
# attributes the platform sets on it (``model_config``, ``lmbda``, ``checkpoint_metadata``).
# CompressAI's models carry no type information, so to mypy this is ``Any``.
CodingModel: TypeAlias = Any

__all__ = ["LTCHM", "CodingModel", "Variant"]
