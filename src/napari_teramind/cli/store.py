"""``teramind info`` and ``teramind validate``: inspect a brain store."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``info`` and ``validate`` sub-commands."""
    p = subparsers.add_parser(
        "info",
        help="print what a brain store holds",
        description="Print the geometry, gene panel, levels and provenance of a brain store.",
    )
    p.add_argument("store", help="path of the brain store (a .zarr directory)")
    p.set_defaults(func=_info)

    p = subparsers.add_parser(
        "validate",
        help="check a brain store for missing or inconsistent data",
        description=(
            "Check that a brain store's arrays exist and agree in shape. With --deep, also list "
            "every chunk that was never written. Exit status 1 when problems are found."
        ),
    )
    p.add_argument("store", help="path of the brain store (a .zarr directory)")
    p.add_argument("--deep", action="store_true", help="also check every chunk (slower)")
    p.set_defaults(func=_validate)


def _info(args: argparse.Namespace) -> int:
    from napari_teramind.store import BrainStore

    store = BrainStore.open(args.store, allow_incomplete=True)
    z, h, w = store.shape
    print(store)
    print(f"  canvas       {z} slices x {h} x {w} px")
    print(f"  pixel size   {store.pixel_size_um} um, slice spacing {store.slice_spacing_um} um")
    print(f"  gene blocks  {store.gene_block_px} px, {len(store.panel)} genes: {store.panel}")
    print(f"  levels       images {store.n_levels('images')}, genes {store.n_levels('genes')}")
    if store.has_regions:
        print(f"  regions      {len(store.region_names)} named regions")
    if store.attention_names():
        print(f"  attention    {', '.join(store.attention_names())}")
    print(f"  complete     {store.complete}")
    if store.coverage is None:
        print("  covers       the whole canvas")
    elif not store.coverage:
        print("  covers       nothing yet (no generated region finished)")
    for c in store.coverage or ():
        y0, y1, x0, x1 = c.region
        print(f"  covers       y {y0}:{y1}, x {x0}:{x1} px of slices {list(c.slices)}")
    for k, v in store.provenance.items():
        print(f"  {k:<12} {v}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from napari_teramind.store import BrainStore, BrainStoreError

    try:
        store = BrainStore.open(args.store, allow_incomplete=True)
    except BrainStoreError as exc:  # damaged metadata, a lost edge chunk: a finding, not a crash
        problems = [str(exc)]
    else:
        problems = store.validate(deep=args.deep)
    for p in problems:
        print(f"problem: {p}")
    if not problems:
        print(f"{args.store}: ok")
    return 1 if problems else 0
