"""Model definitions; build them through :mod:`ltchm.zoo`."""

from ltchm.models.ltchm import LTCHM, Variant

__all__ = ["LTCHM", "Variant"]
