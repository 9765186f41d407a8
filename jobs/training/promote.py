"""``ltchm promote NAME VERSION``: point a rate point's ``champion`` alias at a version."""

from __future__ import annotations

import argparse
import sys

from jobs.training.tracking import CHAMPION, promote
from ltchm.cli_options import add_tracking_uri
from ltchm.tracking import TrackingError, check_tracking, resolve_tracking_uri

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ltchm promote",
        description="Move the 'champion' alias of a registered model to a version.",
    )
    parser.add_argument("name", help="registered model, e.g. ltchm-lambda512")
    parser.add_argument("version", help="the version to make champion, e.g. 3")
    add_tracking_uri(parser)
    args = parser.parse_args(argv)
    uri = resolve_tracking_uri(args.tracking_uri)
    try:
        check_tracking(uri)
        previous = promote(uri, args.name, args.version)
    except TrackingError as exc:
        print(f"ltchm promote: {exc}", file=sys.stderr)
        return 1
    was = f" (was version {previous})" if previous else ""
    print(f"{args.name}@{CHAMPION} -> version {args.version}{was}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
