from ltchm.cli import main
from ltchm.complexity import measure, thop_counted_params
from ltchm.layers import DAM
from ltchm.zoo import get_model


def test_dam_agrees_with_table_5() -> None:
    c = measure(DAM(192), (8, 192, 128, 128))
    assert round(c.params_thop / 1e6, 2) == 0.54  # paper: 0.54M
    assert abs(c.macs_thop / 1e9 - 5.30) < 0.05  # paper: 5.30G
    assert c.params_all > c.params_thop  # IDConv kernels are raw parameters


def test_thop_rule_skips_raw_parameters() -> None:
    model = get_model("ltchm-baseline", N=16)
    gdn = sum(p.numel() for n, p in model.named_parameters() if "gdn" in n)
    masked = model.context_model.conv.weight.numel() + model.context_model.conv.bias.numel()
    assert gdn > 0
    assert thop_counted_params(model) <= sum(p.numel() for p in model.parameters()) - gdn - masked


def test_complexity_command(capsys) -> None:
    assert main(["complexity", "--N", "128", "--no-ablations"]) == 0
    out = capsys.readouterr().out
    assert "24.91G" in out and "12.34M" in out and "DAM alone at 8x192x128x128" in out
    assert "Why ltchm (authors layout) differs from the paper" in out
    assert "4 DAMs, as the authors' released code does" in out
    assert "7 DAMs, as Table 1 prints" in out
    # the default layout is the released code's: its parameters within 5 % of 13.34M
    assert "vs the released code's 13.34M forward-used" in out


def test_fdegcnet_beside_its_released_code(capsys) -> None:
    assert main(["complexity", "--model", "fdegcnet"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("fdegcnet"))
    assert row.split()[2] == "13.96M" and row.split()[3] == "14.26M"  # ours, released
    assert "cheng2020-attn" in out and "never calls" in out


def test_tcm_beside_its_published_figures() -> None:
    from ltchm.complexity import PAPER_MACS_G, PAPER_PARAMS_M, TCM_RELEASED_PARAMS_M, explain

    model = get_model("tcm", N=128)
    c = measure(model, (1, 3, 256, 256))
    assert round(c.params_thop / 1e6, 2) == PAPER_PARAMS_M["tcm"]  # Tab. 6's Liu2023: 75.90M
    assert abs(c.params_all / 1e6 / TCM_RELEASED_PARAMS_M[128] - 1) < 0.05
    assert abs(c.macs_thop / 1e9 / PAPER_MACS_G["tcm"] - 1) < 0.02  # 116.78G
    lines = " ".join(explain(model, c, "tcm"))
    assert "released TCM has 76.57M" in lines and "118.27G" in lines
