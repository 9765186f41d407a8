"""Inputs in object storage or on the web: ``s3://``, ``gs://``, ``https://`` (any fsspec URL).

Archives are read through fsspec file objects (random access by range requests, so a zip's
members are read without downloading the archive); rasters through GDAL's own ``/vsis3/``,
``/vsigs/`` and ``/vsicurl/`` readers. Credentials and endpoints come from the usual
environment of each service (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL`` for an
S3-compatible server, ``GOOGLE_APPLICATION_CREDENTIALS``, ...); ``gs://`` needs ``gcsfs``.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit

__all__ = ["apply_gdal_env", "gdal_env", "gdal_path", "is_url", "storage_env", "url_fs"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
# fsspec protocol -> GDAL virtual file system
_VSI = {"s3": "/vsis3/", "s3a": "/vsis3/", "gs": "/vsigs/", "gcs": "/vsigs/", "az": "/vsiaz/"}


def is_url(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names remote storage (a URL other than ``file://``)."""
    text = os.fspath(path)
    return bool(_SCHEME.match(text)) and not text.startswith("file://")


def url_fs(url: str) -> tuple[Any, str]:
    """(fsspec file system, path within it) of a URL; ``ValueError`` in one line when the
    protocol's library is missing."""
    import fsspec.core

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"{url}: cannot read this URL ({exc})") from None


def gdal_path(url: str) -> str:
    """The GDAL virtual path of a URL (``s3://b/k`` -> ``/vsis3/b/k``)."""
    parts = urlsplit(url)
    vsi = _VSI.get(parts.scheme)
    if vsi is not None:
        return f"{vsi}{parts.netloc}{parts.path}"
    return f"/vsicurl/{url}"


def gdal_env() -> dict[str, str]:
    """GDAL settings for an S3-compatible endpoint given the way boto3 and s3fs take it.

    Written here because GDAL does not read ``AWS_ENDPOINT_URL``: it wants the host in
    ``AWS_S3_ENDPOINT``, plain HTTP as ``AWS_HTTPS=NO`` and path-style addressing. Settings
    the user made for GDAL themselves are kept.
    """
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint or "AWS_S3_ENDPOINT" in os.environ:
        return {}
    parts = urlsplit(endpoint)
    return {
        "AWS_S3_ENDPOINT": parts.netloc or parts.path,
        "AWS_HTTPS": "NO" if parts.scheme == "http" else "YES",
        "AWS_VIRTUAL_HOSTING": "FALSE",
    }


def apply_gdal_env() -> None:
    """Put :func:`gdal_env` into this process's environment (GDAL reads it at each open;
    Ray workers started from this process inherit it)."""
    for key, value in gdal_env().items():
        os.environ.setdefault(key, value)


# Environment variables that say how to reach object storage (credentials, endpoints,
# GDAL's network settings).
_STORAGE_PREFIXES = ("AWS_", "GOOGLE_", "GS_", "GCS_", "AZURE_", "FSSPEC_", "GDAL_HTTP_", "CPL_VSI")


def storage_env() -> dict[str, str]:
    """This process's object-storage settings, for Ray workers on other nodes: a job whose
    inputs are URLs gives them to its tasks (``runtime_env``) so that a worker reads what
    the driver can. They are visible to whoever can read the cluster's job details, as any
    runtime environment is; use instance roles where that matters."""
    env = {k: v for k, v in os.environ.items() if k.startswith(_STORAGE_PREFIXES)}
    return {**gdal_env(), **env}
