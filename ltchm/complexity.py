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
from collections.abc import Sequence
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
# FDEGCNet's paper prints no figure we have: its released code's parameter count by N,
# measured by running it.
FDEGCNET_RELEASED_PARAMS_M = {128: 14.26}
PAPER_MACS_G = {"ltchm": 24.91, "cheng2020-attn": 27.41, "tcm": 116.78}
# TCM's released code (github.com/jmliu206/LIC_TCM at 6c6d7a3), run through measure() here:
# params (all) at N = 64 / 96 / 128, as TCM's paper prints them; at N = 128 thop-rule params
# 75.90M, thop MACs 118.27G, FLOPs 242.02G on 1x3x256x256.
TCM_RELEASED_PARAMS_M = {64: 45.18, 96: 59.13, 128: 76.57}
TCM_RELEASED_MACS_G = {128: 118.27}
PAPER_DAM = (0.54, 5.30)  # params (M), MACs (G) at 8x192x128x128
ABLATIONS = ("ltchm-baseline", "ltchm-dam", "ltchm-hpham", "ltchm-hpham-nogca", "ltchm")
# The authors' released code (github.com/jiahuiLiu11/LTCHM, ImageCompressor), run on a
# 1x3x256x256 input: parameters of the modules its forward uses (it also builds unused
# ones), by N; at N=128 thop's rule over those modules gives 12.34M (= the paper's), and
# ultralytics-thop 2.2.3 22.23G MACs. How they were measured: benchmarks/RESULTS.md,
# "Complexity: the authors' code".
RELEASED_PARAMS_M = {128: 13.34, 192: 28.54, 256: 49.55}
RELEASED_MACS_G = {128: 22.23}
LAYOUTS = ("authors", "table1")


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
    # Count the modules of the paper's definition, not IDConv's folded inference path.
    idconvs = [(m, m.fold_inference) for m in model.modules() if isinstance(m, IDConv)]
    for m, _ in idconvs:
        m.fold_inference = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            macs, _ = profile(model, inputs=(x,), verbose=False)
        # thop leaves its counters as buffers on every module; strip them again.
        for mod in model.modules():
            for name in ("total_ops", "total_params"):
                mod._buffers.pop(name, None)
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
    finally:
        for m, fold in idconvs:
            m.fold_inference = fold
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
            f"{c.params_all / 1e6:.2f}M against the released code's 14.26M (measured): its "
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
        where = (
            "as the authors' released code does"
            if model.dam_layout == "authors"
            else "as Table 1 prints; the released code has 4 (dam_layout: authors)"
        )
        lines.append(
            f"{n_dam} DAMs, {where}: {n_dam} x {one / 1e6:.3f}M = {n_dam * one / 1e6:.2f}M by "
            f"thop's rule; Table 4's +0.98M for DAM is 4 of them ({4 * one / 1e6:.2f}M)."
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
            f"{n_hpham} HPHAMs hold {hp_params / 1e6:.2f}M (thop rule); their 1x1 and linear "
            f"layers alone (fusion convs, qkv and output projections, MSB-FFN 2N -> 8N -> 2N as "
            f"the authors' code has it) hold {pointwise / 1e6:.2f}M. The released code's two "
            "HPHAMs also wrap each stage in one more 2N -> 2N 1x1 convolution (4 x (4N^2 + 2N) "
            "parameters), which we leave out."
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


def _row(
    label: str,
    layout: str,
    c: Complexity,
    paper_p: float | None,
    released: float | None,
    paper_m: float | None,
) -> str:
    def ref(v: float | None, unit: str) -> str:
        return f"{v:7.2f}{unit}" if v else "       -"

    return (
        f"{label:<18} {layout:<8} {_fmt_m(c.params_all)} {ref(released, 'M')} "
        f"{_fmt_m(c.params_thop)} {ref(paper_p, 'M')} {_fmt_g(c.macs_thop)} "
        f"{ref(paper_m, 'G')} {_fmt_g(c.flops)}"
    )


def report(
    name: str = "ltchm",
    N: int = 128,
    ablations: bool = True,
    layouts: Sequence[str] = LAYOUTS,
) -> str:
    """The full text report for model ``name`` at channel width ``N``.

    LTCHM and its ablations are measured in each of ``layouts`` (``model.dam_layout``) and
    set beside the paper's figures (at N=128) and the released code's parameter counts.
    """
    from ltchm.zoo import accepted_keys

    shape = (1, 3, 256, 256)
    names = [name]
    if ablations and name.startswith("ltchm"):
        names = [n for n in ABLATIONS if n != name] + [name]
    if name != "cheng2020-attn":
        names.append("cheng2020-attn")
    rows = []
    measured: dict[tuple[str, str], tuple[nn.Module, Complexity]] = {}
    for n in names:
        has_layout = "dam_layout" in accepted_keys(n)
        for layout in layouts if has_layout else ["-"]:
            kwargs = {"dam_layout": layout} if has_layout else {}
            model = get_model(n, N=N, **kwargs)
            c = measure(model, shape)
            measured[n, layout] = (model, c)
            # the paper's figures are the released code's: the authors layout's references
            authors = layout in ("authors", "-")
            paper_p = PAPER_PARAMS_M.get(n) if N == 128 and authors else None
            paper_m = PAPER_MACS_G.get(n) if N == 128 and authors else None
            released = {
                "tcm": TCM_RELEASED_PARAMS_M.get(N),
                "fdegcnet": FDEGCNET_RELEASED_PARAMS_M.get(N),
                "ltchm": RELEASED_PARAMS_M.get(N) if layout == "authors" else None,
            }.get(n)
            rows.append(_row(n, layout, c, paper_p, released, paper_m))
    dam = DAM(192)
    dc = measure(dam, (8, 192, 128, 128))
    head = (
        f"{'model':<18} {'layout':<8} {'params':>8} {'released':>8} {'thop-rule':>8} "
        f"{'paper':>8} {'thop MACs':>8} {'paper':>8} {'FLOPs':>8}"
    )
    out = [
        f"Complexity at N={N}, input {'x'.join(map(str, shape))} (params: all registered; "
        "released: the authors' code's forward-used parameters; thop-rule: as the paper's "
        "thop counts them; MACs: thop; FLOPs: torch flop counter; paper figures are set "
        "beside the authors layout, the one that produced them)",
        head,
        "-" * len(head),
        *rows,
        "",
        f"DAM alone at 8x192x128x128: params {_fmt_m(dc.params_all)} (thop rule "
        f"{_fmt_m(dc.params_thop)}, paper {PAPER_DAM[0]:.2f}M); MACs {_fmt_g(dc.macs_thop)} "
        f"(paper {PAPER_DAM[1]:.2f}G); FLOPs {_fmt_g(dc.flops)}",
    ]
    if name.startswith("ltchm") and "authors" in layouts:
        out += ["", *_against_released(measured, N)]
    for (n, layout), (model, c) in measured.items():
        if n != name:
            continue
        tag = f" ({layout} layout)" if layout != "-" else ""
        out += ["", f"Why {name}{tag} differs from the paper:"]
        out += [f"  - {line}" for line in explain(model, c, name)]
    return "\n".join(out)


def _against_released(
    measured: dict[tuple[str, str], tuple[nn.Module, Complexity]], N: int
) -> list[str]:
    """How the authors layout compares with the released code and with Table 4."""
    lines = ["The authors layout against the released code and Table 4:"]
    full = measured.get(("ltchm", "authors"))
    released = RELEASED_PARAMS_M.get(N)
    if full and released:
        ratio = full[1].params_all / (released * 1e6)
        lines.append(
            f"  - params {full[1].params_all / 1e6:.2f}M vs the released code's {released:.2f}M "
            f"forward-used: {ratio:.3f}x ({(ratio - 1) * 100:+.1f} %)."
        )
    if full and N in RELEASED_MACS_G:
        lines.append(
            f"  - thop MACs {full[1].macs_thop / 1e9:.2f}G vs the released code's "
            f"{RELEASED_MACS_G[N]:.2f}G under the same thop (ultralytics-thop); the paper's "
            f"{PAPER_MACS_G['ltchm']:.2f}G is not what this thop gives the released code either."
        )
    base = measured.get(("ltchm-baseline", "authors"))
    with_dam = measured.get(("ltchm-dam", "authors"))
    if N == 128 and full and base and with_dam:
        b, d, f = (m[1].params_thop / 1e6 for m in (base, with_dam, full))
        lines.append(
            f"  - Table 4 by thop's rule: +DAM {d - b:+.2f}M (paper +0.98M), full model "
            f"{f:.2f}M (paper 12.34M). Without DAM and HPHAM the released code's layout holds "
            f"{b:.2f}M, not the paper's 7.43M baseline: that baseline was a smaller model, and "
            f"Table 4's +3.93M for HPHAM (12.34 - 8.41) includes the {b - 7.43:.2f}M difference; "
            f"HPHAM itself adds {f - d:.2f}M here, {f - d + 4 * (4 * N * N + 2 * N) / 1e6:.2f}M "
            "with the one extra 1x1 convolution per stage that the released code has."
        )
    return lines
