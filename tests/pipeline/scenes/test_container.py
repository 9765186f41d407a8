"""The ``.ltcs`` container: round trip, random access, and clear errors on damaged files."""

from __future__ import annotations

import json
import struct

import pytest

from ltchm.codec.container import ContainerError
from pipeline.scenes.container import (
    MAGIC,
    MappingInfo,
    MaskInfo,
    ModelInfo,
    SceneHeader,
    SceneReader,
    SceneWriter,
    SourceInfo,
    TileRecord,
    TilingInfo,
    pack_tile,
    unpack_tile,
)


def _header(**update) -> SceneHeader:
    fields = dict(
        width=700,
        height=300,
        count=4,
        dtype="uint16",
        crs_wkt='PROJCS["x"]',
        transform=[30.0, 0.0, 225000.0, 0.0, -30.0, -1095000.0],
        nodata=[None, 0.0, "nan", -10000.0],
        colorinterp=["red", "green", "blue", "undefined"],
        descriptions=[None, None, None, "nir"],
        units=[None] * 4,
        scales=[1.0] * 4,
        offsets=[0.0] * 4,
        tags={"AREA_OR_POINT": "Area"},
        band_tags=[{}, {}, {}, {"WAVELENGTH": "842"}],
        groups=[[1, 2, 3], [4]],
        mask=MaskInfo(mode="nodata", bands=[2, 4]),
        mapping=MappingInfo(mode="scene-linear", lo=[1.0, 2, 3, 4], hi=[9.0, 9, 9, 9]),
        tiling=TilingInfo(tile_size=256, overlap=16, blend=16),
        model=ModelInfo(name="ltchm", lmbda=512.0, config_hash="ab" * 32, weights_hash="cd" * 32),
        source=SourceInfo(name="a.tif", sha256="ef" * 32, bytes=123),
    )
    return SceneHeader(**(fields | update))


def _records(n: int) -> list[TileRecord]:
    return [
        TileRecord(
            shape=(4, 4 + i),
            groups=[[b"y" * (10 + i), b"z" * 3], [] if i % 2 else [b"Y" * i, b"Z"]],
            mapping=[(float(i), 100.0 + i), (0.0, 1.0)] if i % 3 == 0 else None,
            mask=bytes([i]) * 5 if i % 2 else b"",
            alpha=b"alpha" if i == 1 else b"",
        )
        for i in range(n)
    ]


def _file_records(n: int) -> list[TileRecord]:
    """Records that fit :func:`_file_header`: a range per coded band in every tile."""
    return [
        TileRecord(
            shape=(4, 4 + i),
            groups=[[b"y" * (10 + i), b"z" * 3], [] if i % 2 else [b"Y" * i, b"Z"]],
            mapping=[(float(i), 100.0 + i)] * 4,
            mask=bytes([i]) * 5 if i % 2 else b"",
        )
        for i in range(n)
    ]


def _file_header() -> SceneHeader:
    return _header(mapping=MappingInfo(mode="tile-linear"))


def _write(path, header, records) -> None:
    with SceneWriter(path, header, len(records)) as w:
        for r in records:
            w.add(pack_tile(r))
        w.close()


def test_tile_record_round_trip():
    for rec in _records(6):
        assert unpack_tile(pack_tile(rec)) == rec


def test_file_round_trip_and_random_access(tmp_path):
    header, records = _file_header(), _file_records(8)
    path = tmp_path / "s.ltcs"
    _write(path, header, records)
    with SceneReader(path) as r:
        assert r.header == header
        assert r.header.coded_bands == [1, 2, 3, 4]
        assert len(r) == 8
        assert r.tile(5) == records[5]
        assert r.tiles_read == 1  # one tile read, not the file
        assert [r.tile(i) for i in range(8)] == records
    # the header is plain JSON between the prefix and its CRC
    raw = path.read_bytes()
    (n,) = struct.unpack_from("<I", raw, 9)
    assert json.loads(raw[13 : 13 + n])["groups"] == [[1, 2, 3], [4]]


def test_writer_refuses_a_wrong_tile_count(tmp_path):
    with SceneWriter(tmp_path / "s.ltcs", _header(), 2) as w:
        w.add(pack_tile(_records(1)[0]))
        with pytest.raises(ValueError, match="1 of 2 tiles"):
            w.close()


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.ltcs"
    _write(path, _file_header(), _file_records(6))
    return path


def _damaged(good, tmp_path, edit) -> object:
    data = bytearray(good.read_bytes())
    data = edit(data)
    path = tmp_path / "bad.ltcs"
    path.write_bytes(bytes(data))
    return path


def _flip(pos):
    def edit(d):
        d[pos] ^= 0x40
        return d

    return edit


def test_corrupted_tile_is_a_clear_error_naming_the_tile(good, tmp_path):
    with SceneReader(good) as r:
        off, length, _ = r.index[3]
    bad = _damaged(good, tmp_path, _flip(off + length // 2))
    with SceneReader(bad) as r:  # header and index are fine: opening works
        assert r.tile(2) == _file_records(6)[2]  # other tiles still read
        with pytest.raises(ContainerError, match=r"tile 3: checksum mismatch"):
            r.tile(3)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d[: len(d) - 10], "no end marker: the file is truncated"),
        (lambda d: d[:40], "truncated"),
        (lambda d: b"GIF89a" + d[6:], "not an .ltcs file"),
        (lambda d: d[:8] + b"\x07" + d[9:], "unsupported .ltcs version 7"),
        (_flip(30), "header checksum mismatch"),
        (_flip(-30), "tile index checksum mismatch"),
    ],
)
def test_damaged_files_are_clear_errors(good, tmp_path, edit, message):
    with pytest.raises(ContainerError, match=message):
        SceneReader(_damaged(good, tmp_path, edit))


def test_invalid_header_names_the_key(tmp_path):
    raw = _header().model_dump()
    del raw["transform"]
    body = json.dumps(raw).encode()
    import zlib

    data = MAGIC + struct.pack("<BI", 1, len(body)) + body + struct.pack("<I", zlib.crc32(body))
    index_off = len(data)
    data += struct.pack("<QII8s", index_off, 0, zlib.crc32(b""), b"LTCSEND\x00")
    path = tmp_path / "h.ltcs"
    path.write_bytes(data)
    with pytest.raises(ContainerError, match=r"invalid \.ltcs header: transform"):
        SceneReader(path)


def test_tile_table_inconsistent_with_payload():
    data = pack_tile(_records(2)[1])
    with pytest.raises(ContainerError, match="payload bytes"):
        unpack_tile(data + b"extra")
    with pytest.raises(ContainerError, match="truncated"):
        unpack_tile(data[:3])


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"count": 3}, "nodata lists 4 bands, the scene has 3"),
        ({"groups": [[1, 2, 3], [5]]}, "band 5 does not exist"),
        ({"alpha_band": 9}, "band 9 does not exist"),
        ({"groups": [[1, 2, 3, 4]]}, "more than 3 bands"),
    ],
)
def test_a_header_inconsistent_with_its_band_count_is_named(update, message) -> None:
    """A crafted header used to fail deep in the decoder ("list index out of range")."""
    raw = _header().model_dump() | update
    with pytest.raises(ContainerError, match=message):
        SceneHeader.from_json(json.dumps(raw).encode())


def test_records_that_do_not_fit_the_header_are_refused(tmp_path):
    header = _file_header()
    good = _file_records(1)[0]
    bad = {
        "tile ranges do not fit": TileRecord(good.shape, good.groups),
        "5 tile ranges for 4": TileRecord(good.shape, good.groups, [(0.0, 1.0)] * 5),
        "1 band groups": TileRecord(good.shape, good.groups[:1], good.mapping),
        "an alpha band in a scene without one": TileRecord(
            good.shape, good.groups, good.mapping, alpha=b"a"
        ),
        "rate point 3 of a family of 0": TileRecord(good.shape, good.groups, good.mapping, model=3),
    }
    for says, rec in bad.items():
        with pytest.raises(ContainerError, match=says):
            header.check_record(rec)
    with pytest.raises(ValueError, match="lists 2 / 2 ranges for 4 coded bands"):
        _header(mapping=MappingInfo(mode="scene-linear", lo=[1.0, 2.0], hi=[3.0, 4.0]))
