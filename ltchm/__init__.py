"""LTCHM: learned compression of remote-sensing imagery."""

import warnings

# CompressAI 1.2.8 imports torch_geometric, whose import calls torch.jit.script; torch 2.15
# warns about that in every process (each Ray worker included) although nothing here uses it.
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
)
