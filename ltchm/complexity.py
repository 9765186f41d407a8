"""``ltchm complexity``: parameters, FLOPs and thop-style MACs beside the paper's figures.

The paper's Tables 4-6 were measured with ``thop`` at N=128 on a 1x3x256x256 input. Its
"FLOPs" are multiply-accumulates, and thop (the version the paper used) counts only modules
of the types it has rules for, so parameters held directly by other modules (GDN, IDConv's
kernels and biases, the relative-position tables, masked convolutions, the entropy
bottleneck) are missing from its totals. We print three counts:

* params (all): every registered parameter;
* params (thop rule): only those of modules thop has a rule for, i.e. what the paper counted;
* MACs (thop) and FLOPs (``torch.utils.flop_counter``, 2 per MAC, includes the dynamic
  depth-wise convolutions and attention products that thop cannot see).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ltchm.layers import DAM, GCA, HPHAM, HybridAttentionStage, IDConv, WindowAttention
from ltchm.models.ltchm import LTCHM
from ltchm.zoo import get_model

__all__ = ["Complexity", "measure", "report"]

# The paper's figures (Tables 4, 5, 6), all at N=128 except DAM (8x192x128x128).
PAPER_PARAMS_M = {
    "ltchm-baseline": 7.43,
    "ltchm-dam": 8.41,
    "ltchm-hpham": 11.36,
    "ltchm-hpham-nogca": 11.24,
    "ltchm": 12.34,
    "cheng2020-attn": 8.78,
    "tcm": 75.90,  # Tab. 6's Liu2023
}
# Models whose papers print no figure we have: their released code's parameter count at
# N=128, measured by running it (marked "*" in the paper column).
RELEASED_PARAMS_M = {"fdegcnet": 14.26}
PAPER_MACS_G = {"ltchm": 24.91, "cheng2020-attn": 27.41, "tcm": 116.78}
# TCM's released code (github.com/jmliu206/LIC_TCM at 6c6d7a3), run through measure() here:
# params (all) at N = 64 / 96 / 128, as TCM's paper prints them; at N = 128 thop-rule params
# 75.90M, thop MACs 118.27G, FLOPs 242.02G on 1x3x256x256.
TCM_RELEASED_PARAMS_M = {64: 45.18, 96: 59.13, 128: 76.57}
TCM_RELEASED_MACS_G = {128: 118.27}
PAPER_DAM = (0.54, 5.30)  # params (M), MACs (G) at 8x192x128x128
ABLATIONS = ("ltchm-baseline", "ltchm-dam", "ltchm-hpham", "ltchm-hpham-nogca", "ltchm")


@dataclass
class Complexity:
    params_all: int
    params_thop: int
    macs_thop: float
    flops: float


# The parameterised module types of thop 0.1.x, the version behind the paper's figures. It
# matches on the exact type, so subclasses (CompressAI's MaskedConv2d) and modules holding raw
# parameters (GDN, IDConv, window attention, the entropy bottleneck) go uncounted.
# ultralytics-thop, which we use for MACs, matches base classes and counts every parameter.
THOP_PARAM_TYPES: frozenset[type] = frozenset(
    {
        nn.Conv1d,
        nn.Conv2d,
        nn.Conv3d,
        nn.ConvTranspose1d,
        nn.ConvTranspose2d,
        nn.ConvTranspose3d,
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.BatchNorm3d,
        nn.InstanceNorm1d,
        nn.InstanceNorm2d,
        nn.InstanceNorm3d,
        nn.LayerNorm,
        nn.PReLU,
        nn.Linear,
    }
)


def thop_counted_params(model: nn.Module) -> int:
    """Parameters the paper's thop would count: those of modules with a thop rule."""
    return sum(
        p.numel()
        for m in model.modules()
        if type(m) in THOP_PARAM_TYPES
        for p in m.parameters(recurse=False)
    )


def uncounted_params(model: nn.Module) -> dict[str, int]:
    """Parameters thop misses, grouped by the type of module that holds them."""
    out: dict[str, int] = defaultdict(int)
    for m in model.modules():
        if type(m) in THOP_PARAM_TYPES:
            continue
        n = sum(p.numel() for p in m.parameters(recurse=False))
        if n:
            out[type(m).__name__] += n
    return dict(out)


@torch.no_grad()
def measure(model: nn.Module, shape: tuple[int, ...]) -> Complexity:
    """Count parameters, thop MACs and torch FLOPs of ``model`` on a random input."""
    from thop import profile

    model = model.eval()
    x = torch.rand(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs, _ = profile(model, inputs=(x,), verbose=False)
    # thop leaves its counters as buffers on every module; strip them again.
    for m in model.modules():
        for name in ("total_ops", "total_params"):
            m._buffers.pop(name, None)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    return Complexity(
        params_all=sum(p.numel() for p in model.parameters()),
        params_thop=thop_counted_params(model),
        macs_thop=float(macs),
        flops=float(counter.get_total_flops()),
    )


def _count(model: nn.Module, cls: type) -> int:
    return sum(isinstance(m, cls) for m in model.modules())


def _thop_params_of(model: nn.Module, cls: type) -> int:
    return sum(thop_counted_params(m) for m in model.modules() if isinstance(m, cls))


def _fmt_m(n: float) -> str:
    return f"{n / 1e6:7.2f}M"


def _fmt_g(n: float) -> str:
    return f"{n / 1e9:7.2f}G"


def explain(model: nn.Module, c: Complexity, name: str) -> list[str]:
    """Why our counts differ from the paper's, computed from the model at hand."""
    lines = []
    missing = uncounted_params(model)
    if missing:
        parts = ", ".join(f"{k} {v / 1e6:.3f}M" for k, v in sorted(missing.items()))
        lines.append(
            f"params (all) - params (thop rule) = {(c.params_all - c.params_thop) / 1e6:.2f}M "
            f"held outside thop's rules: {parts}."
        )
    lines.append(
        f"FLOPs / 2 = {c.flops / 2e9:.2f}G vs thop's {c.macs_thop / 1e9:.2f}G MACs: the "
        "flop counter also sees the dynamic depth-wise convolutions, the attention products "
        "and masked convolutions; it skips elementwise ops that thop counts (ReLU, BN)."
    )
    if name == "fdegcnet":
        lines.append(
            f"{c.params_all / 1e6:.2f}M against the released code's 14.26M (*, measured): its "
            "FGM registers a 3x3 convolution (0.30M at N=128) that its forward never calls, "
            "left out here. Neither count includes MCAM's FFTs (on z, at 1/64 of the image)."
        )
    if name == "tcm":
        released = TCM_RELEASED_PARAMS_M.get(getattr(model, "N", 0))
        if released:
            macs = TCM_RELEASED_MACS_G.get(getattr(model, "N", 0))
            lines.append(
                f"the authors' released TCM has {released:.2f}M parameters at this N"
                + (f" and {macs:.2f}G thop MACs" if macs else "")
                + f" under the same counters (ours: {c.params_all / 1e6:.2f}M, "
                f"{c.macs_thop / 1e9:.2f}G). Tab. 6 of the LTCHM paper prints Liu2023's thop-rule "
                "parameters (the thop it used ignores GDN, the relative-position tables and the "
                "bottleneck) and 116.78G MACs, 1.3 % below this counter's count of the released "
                "code (thop versions differ)."
            )
        return lines
    if not isinstance(model, LTCHM):
        lines.append(
            "CompressAI's Cheng2020 up-samples with 3x3 sub-pixel convolutions (main path and "
            "skip), 4x the parameters of a transposed convolution; the paper's 8.78M Cheng2020 "
            "is not CompressAI's implementation."
        )
        return lines
    n_dam = _count(model, DAM)
    if n_dam:
        one = _thop_params_of(model, DAM) / n_dam
        lines.append(
            f"Table 1 places {n_dam} DAMs ({n_dam} x {one / 1e6:.3f}M = {n_dam * one / 1e6:.2f}M "
            f"by thop's rule); Table 4's +0.98M for DAM equals 4 of them "
            f"({4 * one / 1e6:.2f}M), so the authors' ablation model evidently had 4. We follow "
            "Table 1."
        )
    n_hpham = _count(model, HPHAM)
    if n_hpham:
        stages = [
            st
            for hp in model.modules()
            if isinstance(hp, HPHAM)
            for st in hp.stages
            if isinstance(st, HybridAttentionStage)
        ]
        layers: list[nn.Module] = [
            layer
            for st in stages
            for layer in (
                st.conv_in,
                st.conv_out,
                st.attn.qkv,
                st.attn.proj,
                st.ffn.fc1,
                st.ffn.fc2,
            )
        ]
        pointwise = sum(thop_counted_params(layer) for layer in layers)
        hp_params = _thop_params_of(model, HPHAM)
        lines.append(
            f"{n_hpham} HPHAMs hold {hp_params / 1e6:.2f}M (thop rule) against Table 4's 3.93M; "
            f"their 1x1 and linear layers alone (fusion convs, qkv and output projections, "
            f"MSB-FFN 2N -> 8N -> 2N as the authors' code has it) hold {pointwise / 1e6:.2f}M, "
            "so the paper's figure is not reachable with that structure at these widths."
        )
        n_gca = _count(model, GCA)
        if n_gca:
            gca = _thop_params_of(model, GCA)
            lines.append(
                f"{n_gca} GCAs hold {gca / 1e6:.3f}M; Table 4 implies 0.12M (11.36 - 11.24), "
                "which GCA branches C -> C/32 would reach only at 256 channels, not on the "
                "C-channel half HPHAM gives them."
            )
        tables = sum(
            m.relative_position_bias_table.numel()
            for m in model.modules()
            if isinstance(m, WindowAttention)
        )
        lines.append(f"relative-position tables: {tables / 1e6:.4f}M (not counted by thop).")
    n_id = _count(model, IDConv)
    if n_id:
        lines.append(
            f"{n_id} IDConvs' mixed kernels and biases are raw parameters "
            f"({missing.get('IDConv', 0) / 1e6:.3f}M, not counted by thop), and their dynamic "
            "convolutions are functional calls thop cannot see."
        )
    lines.append(
        "Decoder stride-2 layers are transposed convolutions (Table 1's 'Conv K1 C S2' skip "
        "can only be one); thop counts them like the sub-pixel convolutions they replace."
    )
    return lines


def report(name: str = "ltchm", N: int = 128, ablations: bool = True) -> str:
    """The full text report for model ``name`` at channel width ``N``."""
    shape = (1, 3, 256, 256)
    names = [name]
    if ablations and name.startswith("ltchm"):
        names = [n for n in ABLATIONS if n != name] + [name]
    if name != "cheng2020-attn":
        names.append("cheng2020-attn")
    rows = []
    measured: dict[str, tuple[nn.Module, Complexity]] = {}
    for n in names:
        model = get_model(n, N=N)
        c = measure(model, shape)
        measured[n] = (model, c)
        paper_p = PAPER_PARAMS_M.get(n) if N == 128 else None
        paper_m = PAPER_MACS_G.get(n) if N == 128 else None
        released = RELEASED_PARAMS_M.get(n) if N == 128 else None
        paper_col = f"{paper_p:7.2f}M" if paper_p else f"{released:6.2f}M*" if released else "-"
        rows.append(
            f"{n:<18} {_fmt_m(c.params_all)} {_fmt_m(c.params_thop)} {paper_col:>8} "
            f"{_fmt_g(c.macs_thop)} {(f'{paper_m:7.2f}G' if paper_m else '       -'):>8} "
            f"{_fmt_g(c.flops)}"
        )
    dam = DAM(192)
    dc = measure(dam, (8, 192, 128, 128))
    head = (
        f"{'model':<18} {'params':>8} {'thop-rule':>8} {'paper':>8} "
        f"{'thop MACs':>8} {'paper':>8} {'FLOPs':>8}"
    )
    out = [
        f"Complexity at N={N}, input {'x'.join(map(str, shape))} "
        "(params: all registered / as thop counts them; MACs: thop; FLOPs: torch flop counter)",
        head,
        "-" * len(head),
        *rows,
        "",
        f"DAM alone at 8x192x128x128: params {_fmt_m(dc.params_all)} (thop rule "
        f"{_fmt_m(dc.params_thop)}, paper {PAPER_DAM[0]:.2f}M); MACs {_fmt_g(dc.macs_thop)} "
        f"(paper {PAPER_DAM[1]:.2f}G); FLOPs {_fmt_g(dc.flops)}",
        "",
        f"Why {name} differs from the paper:",
    ]
    model, c = measured[name]
    out += [f"  - {line}" for line in explain(model, c, name)]
    return "\n".join(out)
