import pytest
import torch
import torch.nn.functional as F

from ltchm.layers import DAM, GCA, HPHAM, MSBFFN, IDConv, WindowAttention


@pytest.mark.parametrize("k", [1, 3])
def test_idconv_batch_equals_each_sample_alone(k: int) -> None:
    torch.manual_seed(0)
    conv = IDConv(16, k).eval()
    x = torch.randn(4, 16, 9, 11)
    batched = conv(x)
    alone = torch.cat([conv(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [1, 3])
def test_idconv_matches_its_definition(k: int) -> None:
    """Softmax over G mixes the G kernels and biases; a depth-wise conv applies them."""
    torch.manual_seed(1)
    conv = IDConv(8, k, groups=2).eval()
    x = torch.randn(2, 8, 6, 7)
    logits = conv.expand(conv.act(conv.norm(conv.reduce(F.adaptive_avg_pool2d(x, k)))))
    kernel = (logits.reshape(2, 2, 8, k, k).softmax(1) * conv.weight).sum(1)
    blogits = conv.expand(conv.act(conv.norm(conv.reduce(x.mean((2, 3), keepdim=True)))))
    bias = (blogits.reshape(2, 2, 8).softmax(1) * conv.bias).sum(1)
    ref = torch.cat(
        [
            F.conv2d(x[i : i + 1], kernel[i][:, None], bias[i], padding=k // 2, groups=8)
            for i in range(2)
        ]
    )
    torch.testing.assert_close(conv(x), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [1, 3])
def test_idconv_trains_at_batch_size_one(k: int) -> None:
    conv = IDConv(8, k).train()
    x = torch.randn(1, 8, 5, 5, requires_grad=True)
    conv(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def _trained_like(conv: IDConv) -> IDConv:
    # fresh BatchNorm statistics are the identity: give the folding something to fold
    conv.norm.running_mean.normal_()
    conv.norm.running_var.uniform_(0.5, 2.0)
    torch.nn.init.normal_(conv.norm.weight)
    torch.nn.init.normal_(conv.norm.bias)
    torch.nn.init.normal_(conv.expand.weight, std=0.3)
    torch.nn.init.normal_(conv.weight)
    return conv.eval()


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_idconv_inference_path_matches_the_module_path(
    k: int, bias: bool, channels_last: bool
) -> None:
    """Without grad, IDConv folds BatchNorm and the two-group softmax: the same output."""
    torch.manual_seed(2)
    conv = _trained_like(IDConv(16, k, bias=bias))
    x = torch.randn(3, 16, 9, 11)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    reference = conv(x)  # grad enabled: the modules of its definition
    with torch.no_grad():
        folded = conv(x)
    assert conv._fold is not None  # the no-grad call took the folded path
    torch.testing.assert_close(folded, reference, rtol=1e-5, atol=1e-5)
    assert folded.is_contiguous(memory_format=torch.channels_last) == channels_last
    with torch.no_grad():
        alone = torch.cat([conv(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(folded, alone, rtol=1e-5, atol=1e-6)


def test_idconv_folding_follows_its_parameters() -> None:
    torch.manual_seed(3)
    conv = _trained_like(IDConv(8, 3))
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        before = conv(x)
        conv.weight.add_(1.0)  # an optimizer step, in place
        stepped = conv(x)
    assert not torch.allclose(before, stepped)
    torch.testing.assert_close(stepped, conv(x), rtol=1e-5, atol=1e-5)
    conv.load_state_dict(_trained_like(IDConv(8, 3)).state_dict())
    with torch.no_grad():
        loaded = conv(x)
    torch.testing.assert_close(loaded, conv(x), rtol=1e-5, atol=1e-5)
    conv.train()
    with torch.no_grad():
        conv(x)  # batch statistics, and the running ones move: the folding must follow
    conv.eval()
    with torch.no_grad():
        folded = conv(x)
    torch.testing.assert_close(folded, conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 2])
def test_dam_inference_matches_training_arithmetic_and_keeps_the_format(batch: int) -> None:
    """DAM infers channels-last inside; its output has the input's format and values."""
    torch.manual_seed(4)
    dam = DAM(16).eval()
    for m in dam.modules():
        if isinstance(m, IDConv):
            _trained_like(m)
    x = torch.randn(batch, 16, 10, 10)
    reference = dam(x)
    with torch.inference_mode():
        out = dam(x)
        out_cl = dam(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)
    assert out.is_contiguous()
    torch.testing.assert_close(out_cl, reference, rtol=1e-4, atol=1e-5)
    assert out_cl.is_contiguous(memory_format=torch.channels_last)


def test_dam_is_residual_attention_and_trains_at_batch_one() -> None:
    dam = DAM(16).train()
    x = torch.randn(1, 16, 8, 8)
    out = dam(x)
    assert out.shape == x.shape
    out.sum().backward()
    assert all(p.grad is not None for p in dam.parameters())
    # with the attention mask shut (sigmoid -> 0), DAM is the identity
    dam.eval()
    torch.nn.init.zeros_(dam.mask[-1].weight)
    torch.nn.init.constant_(dam.mask[-1].bias, -1e4)
    with torch.no_grad():
        torch.testing.assert_close(dam(x), x)


def test_gca_gates_channels() -> None:
    gca = GCA(64)
    x = torch.randn(3, 64, 5, 5)
    gate = gca.gate(x)
    assert gate.shape == (3, 64, 1, 1) and (gate > 0).all() and (gate < 1).all()
    torch.testing.assert_close(gca(x), x * gate)
    assert len(gca.branches) == 4 and gca.branches[0][0].out_channels == 2


def test_msbffn_cascade() -> None:
    ffn = MSBFFN(8, expansion=4)
    assert [c.kernel_size[0] for c in ffn.branches] == [1, 3, 5, 7]
    assert ffn.fc1.out_channels == 32 and ffn.fc2.in_channels == 32
    x = torch.randn(2, 8, 9, 9)
    assert ffn(x).shape == x.shape
    # the last branch sees the earlier ones: zeroing the first branch changes every output
    base = ffn(x)
    torch.nn.init.zeros_(ffn.branches[0].weight)
    torch.nn.init.zeros_(ffn.branches[0].bias)
    assert not torch.allclose(ffn(x), base)


def _naive_window_attention(m: WindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Swin semantics spelled out token by token: keys must be real and in the query's
    region of the rolled, padded map."""
    B, C, H, W = x.shape
    ws = m.window_size
    Hp, Wp = -(-H // ws) * ws, -(-W // ws) * ws
    shift = m.shift if not (Hp <= ws and Wp <= ws) else 0
    real = torch.zeros(Hp, Wp, dtype=torch.bool)
    real[:H, :W] = True
    xp = F.pad(x, (0, Wp - W, 0, Hp - H))

    def region(i: int, size: int) -> int:
        if not shift:
            return 0
        return 0 if i < size - ws else (1 if i < size - shift else 2)

    out = torch.zeros(B, C, Hp, Wp)
    d = C // m.heads
    bias = m.relative_position_bias()
    for wi in range(0, Hp, ws):
        for wj in range(0, Wp, ws):
            # window coordinates in the rolled map -> positions in the original map
            pos = [
                ((wi + a + shift) % Hp, (wj + b + shift) % Wp) for a in range(ws) for b in range(ws)
            ]
            reg = [(region(wi + a, Hp), region(wj + b, Wp)) for a in range(ws) for b in range(ws)]
            tokens = torch.stack([xp[:, :, i, j] for i, j in pos], dim=1)  # B, N, C
            q, k, v = m.qkv(tokens).reshape(B, ws * ws, 3, m.heads, d).permute(2, 0, 3, 1, 4)
            logits = (q * m.scale) @ k.transpose(-2, -1) + bias
            allowed = torch.tensor(
                [
                    [real[pos[kk]] and reg[kk] == reg[qq] for kk in range(ws * ws)]
                    for qq in range(ws * ws)
                ]
            )
            logits = logits.masked_fill(~allowed, float("-inf"))
            o = m.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(B, ws * ws, C))
            for n, (i, j) in enumerate(pos):
                out[:, :, i, j] = o[:, n]
    return out[:, :, :H, :W]


@pytest.mark.parametrize("shift", [0, 2])
@pytest.mark.parametrize("size", [(8, 8), (6, 10), (5, 3), (12, 7)])
def test_window_attention_matches_naive_reference(shift: int, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    m = WindowAttention(64, window_size=4, head_dim=32, shift=shift).eval()
    x = torch.randn(2, 64, *size)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _naive_window_attention(m, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (5, 7), (16, 16)])
def test_hpham_any_size(size: tuple[int, int]) -> None:
    hp = HPHAM(64, window_size=4, head_dim=32)
    x = torch.randn(2, 64, *size, requires_grad=True)
    out = hp(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert torch.isfinite(x.grad).all()
    assert hp.stages[0].attn.shift == 0 and hp.stages[1].attn.shift == 2
    assert hp.stages[0].attn.heads == 1  # head dimension 32 on the 32-channel half


def test_window_attention_traces_without_a_recompile_for_its_mask_cache() -> None:
    """Under torch.compile the shifted-window masks are traced constants: the eager cache (a
    dict filled on the first call) would otherwise fail a guard and recompile on the second."""
    import torch._dynamo

    torch.manual_seed(0)
    m = WindowAttention(32, window_size=4, head_dim=16, shift=2).eval()
    x = torch.randn(1, 32, 8, 8)
    counts = torch._dynamo.utils.counters["stats"]
    torch._dynamo.reset()
    before = counts["unique_graphs"]
    traced = torch.compile(m, backend="eager")
    with torch.no_grad():
        first, second = traced(x), traced(x)
    assert counts["unique_graphs"] - before == 1
    assert torch.equal(first, second) and torch.equal(first, m(x))
