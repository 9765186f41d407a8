import dataclasses
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from pipeline.archives import (
    ArchiveError,
    MemberError,
    MemberReader,
    UnsafeMemberError,
    check_member_name,
    detect_layout,
    file_sha256,
    image_identity,
    list_source,
    member_sha256,
)


def _tar_add(tf: tarfile.TarFile, name: str, data: bytes, **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tf.addfile(info, io.BytesIO(data))


def test_dota_zip_part(archives, dev):
    listing = list_source(archives["dota_zip"])
    assert listing.kind == "zip" and not listing.refused and not listing.notes
    paths = [m.path for m in listing.members]
    assert "part1/images/P0130.png" in paths and "part1/labelTxt/P0130.txt" in paths
    assert detect_layout(listing) == "dota"
    images = [m for m in listing.members if m.is_image]
    assert [image_identity(m.path, "dota") for m in images] == [
        ("P0004__1__0___0", None),
        ("P0130", None),
    ]
    assert all(m.is_sidecar for m in listing.members if not m.is_image)
    with MemberReader() as reader:
        for m in images:
            assert reader.read(m) == (dev / "dota" / Path(m.path).name).read_bytes()


def test_dota_tar_part_is_read_by_offset(archives, dev):
    listing = list_source(archives["dota_tar"])
    assert listing.kind == "tar"
    assert detect_layout(listing) == "dota"  # v2.0 layout: images/P0706.png
    images = [m for m in listing.members if m.is_image]
    assert [m.path for m in images] == ["images/P0706.png", "images/P1888.png"]
    assert all(m.offset is not None and m.offset % 512 == 0 for m in images)
    with MemberReader() as reader:
        # Out of archive order: random access, no unpacking.
        for m in reversed(images):
            assert reader.read(m) == (dev / "dota" / Path(m.path).name).read_bytes()


def test_compressed_tar_is_streamed(archives, dev):
    listing = list_source(archives["dota_tgz"])
    assert listing.kind == "tar-stream" and detect_layout(listing) == "dota"
    (image,) = [m for m in listing.members if m.is_image]
    with MemberReader() as reader:
        reader.prefetch(listing.members)
        assert reader.read(image) == (dev / "dota" / "P0004__1__0___0.png").read_bytes()


def test_ucmerced_and_gaofen_and_folder_layouts(archives, dev, tmp_path):
    ucm = list_source(archives["ucm_zip"])
    assert detect_layout(ucm) == "ucmerced"
    first = ucm.members[0]
    assert first.path == "UCMerced_LandUse/Images/agricultural/agricultural00.tif"
    assert image_identity(first.path, "ucmerced") == ("agricultural00", "agricultural")

    gaofen = list_source(archives["gaofen"])
    assert gaofen.kind == "folder" and detect_layout(gaofen) == "gaofen"
    scene = list_source(dev / "scenes" / "riocolor_rgb16.tif")
    assert scene.kind == "file" and detect_layout(scene) == "gaofen"

    plain = tmp_path / "photos"
    (plain / "sub").mkdir(parents=True)
    (plain / "sub" / "a.b.png").write_bytes((dev / "dota" / "P1888.png").read_bytes())
    (plain / ".hidden.png").write_bytes(b"x")
    listing = list_source(plain)
    assert [m.path for m in listing.members] == ["sub/a.b.png"]
    assert detect_layout(listing) == "folder"
    assert image_identity("sub/a.b.png", "folder") == ("sub/a.b", None)


@pytest.mark.parametrize(
    "name",
    ["../evil.png", "images/../../evil.png", "/etc/evil.png", "C:/evil.png", "..\\evil.png", ""],
)
def test_escaping_names_are_refused(name):
    with pytest.raises(UnsafeMemberError):
        check_member_name(name)


def test_safe_names_are_normalised():
    assert check_member_name("./images//P0001.png") == "images/P0001.png"
    assert check_member_name("images/./a..b.png") == "images/a..b.png"


def test_malicious_zip_members_are_refused_not_fatal(tmp_path, dev):
    path = tmp_path / "evil.zip"
    png = (dev / "dota" / "P1888.png").read_bytes()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images/P0001.png", png)
        zf.writestr("../../etc/P0002.png", png)
        zf.writestr("/abs/P0003.png", png)
        link = zipfile.ZipInfo("images/P0004.png")
        link.external_attr = (0o120777 << 16) | 0  # a symlink entry
        zf.writestr(link, "/etc/passwd")
    listing = list_source(path)
    assert [m.path for m in listing.members] == ["images/P0001.png"]
    reasons = dict(listing.refused)
    assert "path traversal" in reasons["../../etc/P0002.png"]
    assert "absolute" in reasons["/abs/P0003.png"]
    assert "symbolic link" in reasons["images/P0004.png"]


def test_malicious_tar_members_are_refused(tmp_path, dev):
    path = tmp_path / "evil.tar"
    png = (dev / "dota" / "P1888.png").read_bytes()
    with tarfile.open(path, "w") as tf:
        _tar_add(tf, "images/P0001.png", png)
        _tar_add(tf, "../P0002.png", png)
        _tar_add(tf, "images/P0003.png", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        _tar_add(tf, "images/P0004.png", b"", type=tarfile.LNKTYPE, linkname="images/P0001.png")
        _tar_add(tf, "images/P0005.png", b"", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        _tar_add(tf, "images/P0001.png", b"a second member of the same name")
    listing = list_source(path)
    assert [m.path for m in listing.members] == ["images/P0001.png"]
    reasons = dict(listing.refused)
    assert "path traversal" in reasons["../P0002.png"]
    assert "link" in reasons["images/P0003.png"] and "link" in reasons["images/P0004.png"]
    assert "special file" in reasons["images/P0005.png"]
    assert any("duplicate" in r for _, r in listing.refused)
    with MemberReader() as reader:
        assert reader.read(listing.members[0]) == png  # the first of the duplicates


def test_truncated_tar_keeps_complete_members(archives, tmp_path):
    data = archives["dota_tar"].read_bytes()
    full = list_source(archives["dota_tar"])
    last = [m for m in full.members if m.is_image][-1]
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: last.offset + last.size // 2])
    listing = list_source(cut)
    assert [m.path for m in listing.members if m.is_image] == ["images/P0706.png"]
    assert dict(listing.refused)[last.name].startswith("truncated")
    assert any("truncated" in n for n in listing.notes)


def test_truncated_tar_gz_is_reported(archives, tmp_path):
    data = archives["dota_tgz"].read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    listing = list_source(cut)
    assert any("truncated or corrupt" in n for n in listing.notes)
    # The header survived, the data did not: listed, then refused when read.
    (image,) = [m for m in listing.members if m.is_image]
    with MemberReader() as reader, pytest.raises(MemberError, match="end of data"):
        reader.read(image)


def test_unusable_sources_are_errors_naming_them(archives, tmp_path):
    truncated = tmp_path / "part9.zip"
    data = archives["dota_zip"].read_bytes()
    truncated.write_bytes(data[: len(data) - 200])  # the central directory is gone
    with pytest.raises(ArchiveError, match=r"part9\.zip.*corrupt or truncated zip"):
        list_source(truncated)
    garbage = tmp_path / "junk.tar"
    garbage.write_bytes(b"\x00\x01not a tar" * 100)
    with pytest.raises(ArchiveError, match=r"junk\.tar"):
        list_source(garbage)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ArchiveError, match=r"notes\.txt: not a zip or tar"):
        list_source(text)
    with pytest.raises(ArchiveError, match="no such file"):
        list_source(tmp_path / "missing.zip")


def test_corrupt_zip_member_is_a_member_error(tmp_path, dev):
    path = tmp_path / "crc.zip"
    png = (dev / "dota" / "P1888.png").read_bytes()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("images/P0001.png", png)
        zf.writestr("images/P0002.png", png)
    raw = bytearray(path.read_bytes())
    raw[5000] ^= 0xFF  # inside the first member's data
    path.write_bytes(bytes(raw))
    listing = list_source(path)
    with MemberReader() as reader:
        with pytest.raises(MemberError, match="CRC"):
            reader.read(listing.members[0])
        assert reader.read(listing.members[1]) == png


@pytest.mark.parametrize("source", ["dota_zip", "dota_tar", "dota_tgz", "gaofen"])
def test_checksums_stream_the_bytes_reads_return(archives, source):
    """One way to open a member: the streamed checksum is that of the bytes read whole."""
    members = [m for m in list_source(archives[source]).members if m.is_image]
    assert members
    with MemberReader() as reader:
        for m in members:
            data = reader.read(m)
            assert len(data) == m.size
            assert member_sha256(m, chunk=1000) == hashlib.sha256(data).hexdigest()
            with reader.open(m) as f:  # partial reads of a stream
                assert f.read(10) + f.read() == data
    path = archives["dota_zip"]
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_checksum_of_a_truncated_member_is_a_member_error(archives, tmp_path):
    data = archives["dota_tar"].read_bytes()
    members = [m for m in list_source(archives["dota_tar"]).members if m.is_image]
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: members[0].offset + 100])
    member = dataclasses.replace(members[0], source=str(cut))  # listed before the cut
    with pytest.raises(MemberError, match="truncated"), MemberReader() as reader:
        reader.read(member)
