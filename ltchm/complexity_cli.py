"""``ltchm complexity``: its options need nothing heavy; the counting loads torch once parsed."""

from __future__ import annotations

import argparse

from ltchm.zoo import list_models

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``ltchm complexity``"""
    parser = argparse.ArgumentParser(
        prog="ltchm complexity",
        description="Parameters, thop MACs and FLOPs beside the paper's Tables 4-6.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", default="ltchm", choices=list_models(), help="registry name")
    parser.add_argument("--N", type=int, default=128, help="channels (the paper reports N=128)")
    parser.add_argument("--no-ablations", action="store_true", help="skip the Table 4 variants")
    parser.add_argument(
        "--dam-layout",
        choices=["authors", "table1"],
        help="measure LTCHM in this layout only (default: both, beside the paper)",
    )
    args = parser.parse_args(argv)
    from ltchm.complexity import LAYOUTS, report

    layouts = [args.dam_layout] if args.dam_layout else list(LAYOUTS)
    print(report(args.model, args.N, ablations=not args.no_ablations, layouts=layouts))
    return 0
