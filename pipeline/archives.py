"""Listing and streaming the members of image archives, as users download them.

Sources are zip archives (DOTA ``part1.zip``, ``UCMerced_LandUse.zip``), tar archives
(uncompressed, read by offset; or gzip/bzip2/xz-compressed, read in one streaming pass),
plain folders and single image files (Gaofen GeoTIFF scenes), on local disks or in object
storage (``s3://``, ``gs://``, ``https://``: :mod:`pipeline.remote`). Nothing is unpacked to disk:
a zip member is read through :mod:`zipfile`, an uncompressed tar member by seeking to its data,
so any member can be read without touching the others.

Member names are checked before anything else looks at them: an absolute path, a ``..``
component, a link or a device node is refused and reported, never read. The pipeline never
writes a member name to disk, but a name that could escape an extraction root marks an
archive that was crafted or damaged, and its other members are still used.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import re
import stat
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import IO, Any, BinaryIO, cast

from pipeline.remote import apply_gdal_env, is_url, url_fs
from pipeline.remote import gdal_path as remote_gdal_path

__all__ = [
    "IMAGE_SUFFIXES",
    "LAYOUTS",
    "SIDECAR_SUFFIXES",
    "ArchiveError",
    "Listing",
    "Member",
    "MemberError",
    "MemberReader",
    "UnsafeMemberError",
    "check_member_name",
    "detect_layout",
    "file_sha256",
    "image_identity",
    "list_source",
    "member_sha256",
    "require_present",
]

LAYOUTS = ("dota", "ucmerced", "gaofen", "folder")
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".jp2"}
)
RASTER_SUFFIXES = frozenset({".tif", ".tiff", ".jp2"})
# Annotations and georeferencing sidecars that ship beside images (DOTA labelTxt, Gaofen
# .xml/.rpb): expected, counted, not reported one by one.
SIDECAR_SUFFIXES = frozenset(
    {
        ".txt", ".xml", ".json", ".csv", ".geojson", ".kml", ".prj", ".rpb", ".rpc", ".tfw",
        ".jgw", ".pgw", ".aux", ".ovr", ".md", ".html", ".htm", ".shp", ".shx", ".dbf",
        ".cpg", ".qml", ".pdf", ".yaml", ".yml", ".ini", ".dat",
    }
)  # fmt: skip

_DRIVE = re.compile(r"^[A-Za-z]:")
_UCM = re.compile(r"(?:^|/)Images/([^/]+)/\1\d+\.tiff?$", re.IGNORECASE)
_DOTA = re.compile(r"(?:^|/)images/(?:[^/]+/)*P\d+[^/]*\.(?:png|jpe?g|tiff?|bmp)$", re.IGNORECASE)
_DOTA_LABELS = re.compile(r"(?:^|/)labelTxt[^/]*/", re.IGNORECASE)
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


class ArchiveError(RuntimeError):
    """A source that cannot be used at all (missing, corrupt, truncated beyond use)."""


class MemberError(RuntimeError):
    """One member that cannot be read; the rest of its archive is still usable."""


class UnsafeMemberError(ValueError):
    """A member name that would escape an extraction root."""


@dataclass(frozen=True)
class Member:
    """One file inside a source.

    ``name`` is the name exactly as stored (used to look the member up), ``path`` its
    normalised relative POSIX path (used for ids and reports).
    """

    source: str  # absolute path or URL of the archive, folder or file
    kind: str  # "zip" | "tar" | "tar-stream" | "folder" | "file"
    name: str
    path: str
    size: int
    offset: int | None = None  # start of the data in an uncompressed tar
    crc: int | None = None  # zip CRC-32

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.path).suffix.lower()

    @property
    def is_image(self) -> bool:
        return self.suffix in IMAGE_SUFFIXES

    @property
    def is_sidecar(self) -> bool:
        return self.suffix in SIDECAR_SUFFIXES or bool(_DOTA_LABELS.search(self.path))

    @property
    def local_path(self) -> Path | None:
        """The member's own file on disk (local folders and single files), else None."""
        if is_url(self.source):
            return None
        if self.kind == "folder":
            return Path(self.source) / self.name
        if self.kind == "file":
            return Path(self.source)
        return None

    @property
    def gdal_path(self) -> str:
        """A path GDAL opens without unpacking (``/vsizip/``, ``/vsitar/``, ``/vsis3/``, ...)
        or a plain path."""
        source = self.source
        if is_url(source):
            apply_gdal_env()
            source = remote_gdal_path(source)
            if self.kind == "folder":
                return f"{source}/{self.name}"
            if self.kind == "file":
                return source
        if self.kind == "zip":
            return f"/vsizip/{source}/{self.name}"
        if self.kind in ("tar", "tar-stream"):
            return f"/vsitar/{source}/{self.name}"
        return str(self.local_path)


@dataclass
class Listing:
    """The members of one source, the members refused, and notes on the source itself."""

    path: PurePath  # a local Path; for a URL, its bucket/key path (names it in reports)
    kind: str
    members: list[Member] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (member name, reason)
    notes: list[str] = field(default_factory=list)


def check_member_name(name: str) -> str:
    """The normalised relative POSIX path of a member name; raises for escaping names."""
    if not name or "\x00" in name:
        raise UnsafeMemberError("empty name or NUL byte in the name")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or _DRIVE.match(posix):
        raise UnsafeMemberError("absolute path")
    parts = [p for p in posix.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeMemberError("'..' in the path escapes the archive root (path traversal)")
    if not parts:
        raise UnsafeMemberError("empty path")
    return "/".join(parts)


def _open_source(source: str) -> BinaryIO:
    """A seekable binary file of a local path or a URL; the caller closes it."""
    if is_url(source):
        fs, path = url_fs(source)
        return cast(BinaryIO, fs.open(path, "rb"))
    return open(source, "rb")


def _source_size(source: str) -> int:
    if is_url(source):
        fs, path = url_fs(source)
        return int(fs.size(path))
    return os.path.getsize(source)


def _source_kind(path: Path | str) -> str:
    source = str(path)
    remote = is_url(source)
    if remote:
        fs, key = url_fs(source)
        try:
            isdir, exists = fs.isdir(key), fs.exists(key)
        except Exception as exc:  # every fsspec backend has its own errors
            raise ArchiveError(f"{source}: cannot reach it ({exc})") from None
    else:
        isdir, exists = Path(source).is_dir(), Path(source).exists()
    if isdir:
        return "folder"
    if not exists:
        raise ArchiveError(f"{source}: no such file or folder")
    if not remote and not Path(source).is_file():
        raise ArchiveError(f"{source}: not a regular file or folder")
    with _open_source(source) as f:
        head = f.read(512)
        # Check tar first: a tar whose last member is a zip looks like a zip to is_zipfile().
        if len(head) == 512 and head[257:262] == b"ustar":
            return "tar"
        if any(head.startswith(m) for m in _COMPRESSED_MAGIC):
            return "tar-stream"
        if zipfile.is_zipfile(f):
            return "zip"
    suffix = PurePosixPath(source).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "file"
    if head.startswith(b"PK") or suffix == ".zip":
        raise ArchiveError(
            f"{source}: corrupt or truncated zip archive (its central directory is "
            "unreadable); download it again"
        )
    with _open_source(source) as f:
        try:
            with tarfile.open(fileobj=f, mode="r:"):  # pre-POSIX tars without the ustar magic
                return "tar"
        except (tarfile.TarError, OSError, EOFError):
            pass
    raise ArchiveError(f"{source}: not a zip or tar archive, a folder, or an image file")


def _add(listing: Listing, seen: set[str], member: Member) -> None:
    if member.path in seen:
        listing.refused.append((member.name, "duplicate member name (the first one is used)"))
        return
    seen.add(member.path)
    listing.members.append(member)


def _list_zip(path: str, listing: Listing) -> None:
    f = _open_source(path)
    try:
        zf = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        f.close()
        raise ArchiveError(f"{path}: corrupt zip archive ({exc})") from None
    seen: set[str] = set()
    with f, zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            try:
                norm = check_member_name(info.filename)
            except UnsafeMemberError as exc:
                listing.refused.append((info.filename, f"unsafe member name: {exc}"))
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                listing.refused.append((info.filename, "symbolic link (links are refused)"))
                continue
            if info.flag_bits & 0x1:
                listing.refused.append((info.filename, "encrypted member"))
                continue
            member = Member(str(path), "zip", info.filename, norm, info.file_size, crc=info.CRC)
            _add(listing, seen, member)


def _list_tar(path: str, listing: Listing, stream: bool) -> None:
    size = _source_size(path)
    seen: set[str] = set()
    count = 0
    kind = "tar-stream" if stream else "tar"
    try:
        # "r:" seeks over member data (cheap listing); compressed tars can only be streamed.
        with _open_source(path) as f, tarfile.open(fileobj=f, mode="r|*" if stream else "r:") as tf:
            for info in tf:
                count += 1
                try:
                    norm = check_member_name(info.name)
                except UnsafeMemberError as exc:
                    listing.refused.append((info.name, f"unsafe member name: {exc}"))
                    continue
                if info.isdir():
                    continue
                if not info.isreg():
                    what = "link" if (info.issym() or info.islnk()) else "special file"
                    listing.refused.append((info.name, f"{what} (only regular files are read)"))
                    continue
                if not stream and info.offset_data + info.size > size:
                    listing.refused.append((info.name, "truncated: the archive ends inside it"))
                    listing.notes.append(f"truncated archive: it ends inside member {info.name!r}")
                    continue
                offset = None if stream else info.offset_data
                _add(listing, seen, Member(path, kind, info.name, norm, info.size, offset))
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError) as exc:
        if count == 0:
            raise ArchiveError(f"{path}: not a readable tar archive ({exc})") from None
        listing.notes.append(
            f"truncated or corrupt archive: reading stopped after {count} members ({exc}); "
            "members after that point are missing"
        )


def _list_folder(path: Path, listing: Listing) -> None:
    root = path.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            file = Path(dirpath) / fname
            rel = file.relative_to(root).as_posix()
            if file.is_symlink():
                target = file.resolve()
                if not target.is_relative_to(root):
                    listing.refused.append((rel, "symbolic link pointing outside the folder"))
                    continue
            if not file.is_file():
                listing.refused.append((rel, "not a regular file"))
                continue
            listing.members.append(Member(str(root), "folder", rel, rel, file.stat().st_size))
    listing.members.sort(key=lambda m: m.path)


def _list_remote_folder(url: str, listing: Listing) -> None:
    fs, root = url_fs(url)
    root = root.rstrip("/")
    for key, info in sorted(fs.find(root, detail=True).items()):
        rel = key[len(root) :].lstrip("/")
        if not rel or any(part.startswith(".") for part in rel.split("/")):
            continue
        try:
            check_member_name(rel)
        except UnsafeMemberError as exc:
            listing.refused.append((rel, f"unsafe member name: {exc}"))
            continue
        listing.members.append(Member(url.rstrip("/"), "folder", rel, rel, int(info["size"])))


def list_source(path: str | os.PathLike[str]) -> Listing:
    """List a zip/tar archive, a folder (recursively) or one image file, local or a URL.

    Raises:
        ArchiveError: the source is missing or unusable; the message names it.
    """
    if is_url(path):
        source = os.fspath(path)
        name: PurePath = PurePosixPath(source.split("://", 1)[1].rstrip("/"))
    else:
        name = Path(path).resolve()
        source = str(name)
    kind = _source_kind(source)
    listing = Listing(name, kind)
    if kind == "zip":
        _list_zip(source, listing)
    elif kind in ("tar", "tar-stream"):
        _list_tar(source, listing, stream=kind == "tar-stream")
    elif kind == "folder" and is_url(source):
        _list_remote_folder(source, listing)
    elif kind == "folder":
        _list_folder(Path(source), listing)
    else:
        size = _source_size(source)
        listing.members.append(Member(source, "file", name.name, name.name, size))
    return listing


def _looks_like_scene(member: Member) -> bool:
    """Whether a raster member is a satellite scene (georeferenced, >8-bit or >4 bands)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(member.gdal_path) as ds:
                return ds.crs is not None or ds.dtypes[0] != "uint8" or ds.count > 4
    except RasterioIOError:
        return False


def detect_layout(listing: Listing) -> str:
    """``"ucmerced"``, ``"dota"``, ``"gaofen"`` or ``"folder"`` from the member names.

    UC-Merced: ``.../Images/<class>/<class>NN.tif``. DOTA (v1.0/1.5/2.0 parts, train/val/test):
    ``P<number>`` images under an ``images/`` folder, or ``labelTxt*`` annotations beside them.
    Gaofen: GeoTIFF scenes (one file, or rasters that are georeferenced, >8-bit or >4 bands).
    Anything else is a plain folder of images.
    """
    paths = [m.path for m in listing.members]
    if any(_UCM.search(p) for p in paths):
        return "ucmerced"
    if any(_DOTA.search(p) for p in paths) or any(_DOTA_LABELS.search(p) for p in paths):
        return "dota"
    images = [m for m in listing.members if m.is_image]
    rasters = [m for m in images if m.suffix in RASTER_SUFFIXES]
    if listing.kind == "file" and rasters:
        return "gaofen"
    if rasters and len(rasters) == len(images) and _looks_like_scene(rasters[0]):
        return "gaofen"
    return "folder"


def image_identity(path: str, layout: str) -> tuple[str, str | None]:
    """``(image id, class label or None)`` of an image member in a layout.

    DOTA, UC-Merced and Gaofen ids are file stems: DOTA's ``P0001`` is the same image in the
    v1.0, v1.5 and v2.0 parts, so it lands in the same split in all of them. A plain folder
    uses the relative path without suffix (subfolders may repeat file names).
    """
    p = PurePosixPath(path)
    if layout in ("dota", "gaofen"):
        return p.stem, None
    if layout == "ucmerced":
        return p.stem, p.parent.name
    if layout == "folder":
        return str(p.with_suffix("")), None
    raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")


class MemberReader:
    """Reads member bytes; keeps archives open across reads within one task.

    Zip and uncompressed tar members are read on demand. Members of compressed tars must be
    announced with :meth:`prefetch`, which decompresses the archive once and keeps the
    requested members' bytes: gzip has no random access, so each shard task pays one pass.
    """

    def __init__(self) -> None:
        self._zips: dict[str, zipfile.ZipFile] = {}
        self._files: dict[str, BinaryIO] = {}
        self._cache: dict[tuple[str, str], bytes] = {}
        self._stream_errors: dict[str, str] = {}

    def __enter__(self) -> MemberReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for zf in self._zips.values():
            zf.close()
        for f in self._files.values():
            f.close()
        self._zips.clear()
        self._files.clear()
        self._cache.clear()

    def prefetch(self, members: Iterable[Member]) -> None:
        """Read the wanted members of each compressed tar in one streaming pass."""
        wanted: dict[str, set[str]] = {}
        for m in members:
            if m.kind == "tar-stream" and (m.source, m.name) not in self._cache:
                wanted.setdefault(m.source, set()).add(m.name)
        for source, names in wanted.items():
            require_present(source)
            try:
                with _open_source(source) as raw, tarfile.open(fileobj=raw, mode="r|*") as tf:
                    for info in tf:
                        if info.name in names and info.isreg():
                            f = tf.extractfile(info)
                            if f is not None:
                                self._cache[(source, info.name)] = f.read()
                            names.discard(info.name)
                            if not names:
                                break
            except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
                self._stream_errors[source] = str(exc)

    def read(self, member: Member) -> bytes:
        """The member's bytes. Raises :class:`MemberError` when they cannot be read whole."""
        with self.open(member) as f:
            data = f.read()
        if member.kind == "tar" and len(data) != member.size:
            raise MemberError(f"truncated: {len(data)} of {member.size} bytes present")
        return data

    @contextmanager
    def open(self, member: Member) -> Iterator[IO[bytes]]:
        """A stream of the member's bytes: the one way members are opened (reads, checksums).

        Raises :class:`MemberError` when they cannot be read (while opening or reading).
        """
        try:
            with self._open(member) as f:
                yield f
        except (MemberError, ArchiveError):
            raise
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
            raise MemberError(f"cannot read member: {exc}") from None
        except (tarfile.TarError, lzma.LZMAError) as exc:
            raise MemberError(f"cannot read member from compressed tar: {exc}") from None
        except KeyError:
            raise MemberError("member missing from the archive (changed since listing?)") from None

    @contextmanager
    def _open(self, member: Member) -> Iterator[IO[bytes]]:
        if member.kind == "zip":
            zf = self._zips.get(member.source)
            if zf is None:
                require_present(member.source)
                raw = self._files[member.source] = _open_source(member.source)
                try:
                    zf = self._zips[member.source] = zipfile.ZipFile(raw)
                except (zipfile.BadZipFile, OSError) as exc:
                    raise ArchiveError(f"{member.source}: cannot open zip ({exc})") from None
            # ZipExtFile checks the CRC-32 at the end of the read: corrupt data raises.
            with zf.open(member.name) as zipped:
                yield zipped
        elif member.kind == "tar":
            tar = self._files.get(member.source)
            if tar is None:
                require_present(member.source)
                tar = self._files[member.source] = _open_source(member.source)
            assert member.offset is not None
            tar.seek(member.offset)
            yield cast(IO[bytes], _Slice(tar, member.size))
        elif member.kind == "tar-stream":
            key = (member.source, member.name)
            if key in self._cache:  # prefetched with others of its archive
                yield io.BytesIO(self._cache.pop(key))
                return
            if member.source in self._stream_errors:
                why = self._stream_errors[member.source]
                raise MemberError(f"cannot read member from compressed tar: {why}")
            # not prefetched (a large scene, say): streamed, never held whole in memory
            require_present(member.source)
            with _open_source(member.source) as raw, tarfile.open(fileobj=raw, mode="r|*") as tf:
                for info in tf:
                    if info.name == member.name and info.isreg():
                        stream = tf.extractfile(info)
                        assert stream is not None
                        yield stream
                        return
            raise MemberError("cannot read member from compressed tar: not found in the archive")
        else:
            path = member.local_path
            where = str(path) if path is not None else member.source
            if path is None and member.kind == "folder":
                where = f"{member.source}/{member.name}"
            require_present(where)
            with _open_source(where) as f:
                yield f


class _Slice(io.RawIOBase):
    """``size`` bytes of an open file from its current position (an uncompressed tar member)."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self._f, self._left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        n = self._left if size is None or size < 0 else min(size, self._left)
        data = self._f.read(n)
        self._left -= len(data)
        return data


def member_sha256(member: Member, chunk: int = 1 << 22) -> str:
    """sha256 of a member's bytes, streamed through :meth:`MemberReader.open`."""
    h = hashlib.sha256()
    with MemberReader() as reader, reader.open(member) as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (local or a URL), streamed."""
    source = os.fspath(path) if is_url(path) else str(Path(path))
    name = PurePosixPath(source).name
    return member_sha256(Member(source, "file", name, name, _source_size(source)))


def require_present(path: str | Path) -> None:
    """Raise :class:`ArchiveError` if a planned source is not there (on this node).

    A source that vanished since planning, or that a Ray node cannot see, is not a bad member
    to skip: every member of it would be "skipped" and the job would look fine.
    """
    if is_url(path):
        fs, key = url_fs(os.fspath(path))
        if not fs.exists(key):
            raise ArchiveError(f"{path}: not found (deleted or moved since planning?)")
        return
    if not os.path.exists(path):
        raise ArchiveError(
            f"{path}: not found on this node (moved since planning? inputs must be on storage "
            "that every Ray node sees)"
        )
