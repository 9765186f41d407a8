"""Real entropy coding: round trips, any size, determinism, errors, actual vs estimated."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ltchm.codec import ContainerError, ImageCodec, ModelMismatchError, load_checkpoint
from ltchm.codec.container import VERSION, pack, unpack
from ltchm.entropy.latent import YStreamError
from ltchm.imageio import read_image
from ltchm.losses import bpp_from_likelihoods


def forward_x_hat(codec: ImageCodec, x: torch.Tensor) -> torch.Tensor:
    H, W = x.shape[-2:]
    with torch.no_grad():
        out = codec.model(codec.pad(x)[None])["x_hat"]
    return out.clamp(0, 1)[0, :, :H, :W]


def test_decoded_equals_eval_forward(model, dev_images) -> None:
    codec = ImageCodec(model)
    x = dev_images[0]
    data = codec.encode(x)
    assert torch.equal(codec.decode(data), forward_x_hat(codec, x))


def _rgba_as_rgb(dev_dir: Path) -> torch.Tensor:
    rgba = Image.open(dev_dir / "dota" / "P0004__1__0___0.png")
    assert rgba.mode == "RGBA"
    arr = np.asarray(rgba.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


@pytest.mark.parametrize("case", ["1x1", "7x300", "P1888", "P0004-rgba"])
def test_any_size(model, case: str, dev_dir: Path) -> None:
    torch.manual_seed(0)
    if case == "1x1":
        x = torch.rand(3, 1, 1)
    elif case == "7x300":
        x = torch.rand(3, 7, 300)
    elif case == "P1888":
        x = read_image(dev_dir / "dota" / "P1888.png")
        assert x.shape == (3, 557, 712)
    else:
        x = _rgba_as_rgb(dev_dir)
    codec = ImageCodec(model)
    out = codec.decode(codec.encode(x))
    assert out.shape == x.shape
    assert torch.equal(out, forward_x_hat(codec, x))


def test_large_images_are_coded_in_tiles(checkpoints, dev_images) -> None:
    model = load_checkpoint(checkpoints["checkerboard"])
    x = torch.cat([torch.cat(dev_images[i : i + 2], dim=2) for i in (0, 2)], dim=1)[:, :300]
    codec = ImageCodec(model, tile_size=128)
    f = unpack(codec.encode(x))
    assert f.tile_size == 128 and len(f.tiles) == 3 * 4
    out = codec.decode(pack(f))
    assert out.shape == x.shape
    # each tile is the model's reconstruction of that tile
    tile = x[:, 128:256, 256:384]
    assert torch.equal(out[:, 128:256, 256:384], forward_x_hat(codec, tile))


def test_8bit_pixels_code_and_decode_as_floats_do(checkpoints, dev_images) -> None:
    """encode/decode keep 8-bit pixels (a quarter of the memory) and convert tile by tile:
    the same bytes, and the float decode rounded."""
    model = load_checkpoint(checkpoints["checkerboard"])
    x8 = (dev_images[0][:, :200, :150] * 255).round().to(torch.uint8)
    codec = ImageCodec(model, tile_size=128)
    data = codec.encode(x8)
    assert data == codec.encode(x8.float() / 255)
    out = codec.decode(data, dtype=torch.uint8)
    assert out.dtype == torch.uint8
    assert torch.equal(out, codec.decode(data).clamp(0, 1).mul(255).round().to(torch.uint8))


def _y_of(codec: ImageCodec, data: bytes) -> torch.Tensor:
    f = unpack(data)
    t = f.tiles[0]
    return codec.model.decompress([[s] for s in t.streams], t.shape)["y_hat"]


def test_decoding_is_independent_of_thread_count(model, dev_images) -> None:
    codec = ImageCodec(model)
    x = dev_images[1]
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        data = codec.encode(x)
        with torch.no_grad():
            y_enc = torch.round(codec.model.g_a(x[None])).double()
        torch.set_num_threads(1)
        y_dec = _y_of(codec, data)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(y_dec, y_enc)


def test_decoding_is_independent_of_batch_composition(model, dev_images) -> None:
    m = model
    batch = torch.stack(dev_images[:4])
    out = m.compress(batch)
    ys, zs = out["strings"]
    together = m.decompress([ys, zs], out["shape"])["y_hat"]
    for i in range(4):
        alone = m.decompress([[ys[i]], [zs[i]]], out["shape"])["y_hat"]
        assert torch.equal(alone[0], together[i])
    # a file encoded alone decodes identically inside a batch of four
    single = m.compress(batch[2:3])
    mixed = [list(ys), list(zs)]
    mixed[0][2], mixed[1][2] = single["strings"][0][0], single["strings"][1][0]
    inside = m.decompress(mixed, out["shape"])["y_hat"][2]
    assert torch.equal(inside, m.decompress(single["strings"], single["shape"])["y_hat"][0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_encode_gpu_decode_and_back(checkpoints, dev_images) -> None:
    for ckpt in checkpoints.values():
        cpu = ImageCodec(load_checkpoint(ckpt), device="cpu")
        gpu = ImageCodec(load_checkpoint(ckpt), device="cuda")
        x = dev_images[2]
        a, b = cpu.encode(x), gpu.encode(x)
        assert torch.equal(_y_of(gpu, a).cpu(), _y_of(cpu, a))
        assert torch.equal(_y_of(cpu, b), _y_of(gpu, b).cpu())
        # the serial steps on the GPU itself (not the CPU copy) decode the same
        gpu.model.serial_decoding_on_cpu = False
        assert torch.equal(_y_of(gpu, a).cpu(), _y_of(cpu, a))


def test_corruption_is_a_clear_error(model, dev_images) -> None:
    codec = ImageCodec(model)
    data = codec.encode(dev_images[3])
    bad = [b"", b"LTC", b"\x89PNG\r\n\x1a\n" + data[8:], data[:-1], data[: len(data) // 2]]
    for pos in (0, 9, 20, len(data) // 2, len(data) - 5, len(data) - 1):
        flipped = bytearray(data)
        flipped[pos] ^= 0x10
        bad.append(bytes(flipped))
    for corrupt in bad:
        with pytest.raises(ContainerError):
            codec.decode(corrupt)


def test_tampered_y_stream_with_valid_checksum_is_caught(model, dev_images) -> None:
    """Even a consistent-looking container whose y stream differs never decodes silently."""
    codec = ImageCodec(model)
    f = unpack(codec.encode(dev_images[4]))
    y = bytearray(f.tiles[0].streams[0])
    y[len(y) // 2] ^= 0xFF
    f.tiles[0].streams[0] = bytes(y)
    with pytest.raises((YStreamError, ValueError)):
        codec.decode(pack(f))


def test_wrong_model_is_a_clear_error(checkpoints, dev_images) -> None:
    ar = ImageCodec(load_checkpoint(checkpoints["autoregressive"]))
    cb = ImageCodec(load_checkpoint(checkpoints["checkerboard"]))
    with pytest.raises(ModelMismatchError, match="encoded with ltchm"):
        cb.decode(ar.encode(dev_images[0]))


def test_format_version_and_crc(model, dev_images) -> None:
    codec = ImageCodec(model)
    data = bytearray(codec.encode(dev_images[0]))
    data[8] = 99  # version
    data[-4:] = zlib.crc32(bytes(data[:-4])).to_bytes(4, "little")
    with pytest.raises(ContainerError, match="version 99"):
        codec.decode(bytes(data))


def test_the_file_records_its_source_and_version_1_still_reads(model, dev_images) -> None:
    source = "models:/ltchm-lambda512/3 (sqlite:////data/mlruns.db; alias champion when encoded)"
    codec = ImageCodec(model, source=source)
    data = codec.encode(dev_images[0])
    assert data[8] == VERSION == 2 and unpack(data).source == source
    # a version-1 file (no source field) of the same image: re-pack without the field
    plain = ImageCodec(model).encode(dev_images[0])
    name_len = plain[13]
    at = 13 + 1 + name_len + 8 + 16  # magic, version, header length, name, lambda, hashes
    assert plain[at : at + 2] == b"\x00\x00"  # the empty source's length
    head_len = int.from_bytes(plain[9:13], "little") - 2
    v1 = bytearray(plain[:8] + b"\x01" + head_len.to_bytes(4, "little") + plain[13:at])
    v1 += plain[at + 2 : -4]
    v1 += zlib.crc32(bytes(v1)).to_bytes(4, "little")
    f = unpack(bytes(v1))
    assert f.source == "" and f.identity == unpack(plain).identity
    assert torch.equal(codec.decode(bytes(v1)), codec.decode(plain))


def test_a_latent_larger_than_the_image_is_refused_before_allocating(model, dev_images) -> None:
    """A crafted file with a consistent container (CRC recomputed) whose tile announces a
    2000 x 2000 latent: refused from the header, nothing of that size allocated."""
    codec = ImageCodec(model)
    f = unpack(codec.encode(dev_images[0]))
    f.tiles[0].shape = (2000, 2000)
    with pytest.raises(ValueError, match=r"corrupt file: .* announces a 2000x2000 latent"):
        codec.decode(pack(f))


def test_actual_bytes_match_the_estimate(checkpoints, dev_images) -> None:
    """File bytes against the entropy model's estimate over the dev images."""
    for ckpt in checkpoints.values():
        codec = ImageCodec(load_checkpoint(ckpt))
        actual = estimated = 0.0
        for x in dev_images:
            data = codec.encode(x)
            f = unpack(data)
            payload = sum(len(s) for t in f.tiles for s in t.streams)
            actual += 8 * payload
            with torch.no_grad():
                out = codec.model(x[None])
            estimated += float(bpp_from_likelihoods(out["likelihoods"], 1))
        ratio = actual / estimated
        # per image: 8 bytes of y-stream header and up to 4 bytes of ANS word padding
        overhead = 8 * 12 * len(dev_images)
        assert actual <= 1.01 * estimated + overhead, (ratio, actual, estimated)
        assert actual >= 0.97 * estimated, (ratio, actual, estimated)
