"""Vizgen MERSCOPE output directories, one per slice, into a brain store.

A MERSCOPE region directory holds ``detected_transcripts.csv`` (columns ``barcode_id, global_x,
global_y, global_z, x, y, fov, gene, transcript_id``; ``global_x``/``global_y`` in micrometres),
``images/micron_to_mosaic_pixel_transform.csv`` (a 3 x 3 affine, micrometres to mosaic pixels)
and the mosaics ``images/mosaic_DAPI_z{k}.tif`` and ``images/mosaic_PolyT_z{k}.tif``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from napari_teramind.store import GenePanel

from . import registration as reg
from .pipeline import (
    IngestOptions,
    SliceInput,
    check_output,
    make_progress,
    plan_panel,
    run_ingest,
)
from .report import IngestReport
from .resume import file_identity
from .tables import TableColumns, scan

TRANSCRIPTS = "detected_transcripts.csv"
TRANSFORM = "images/micron_to_mosaic_pixel_transform.csv"
MERSCOPE_COLUMNS = TableColumns(gene="gene", x="global_x", y="global_y")


def _find_table(d: Path) -> Path:
    for name in (TRANSCRIPTS, TRANSCRIPTS + ".gz", "detected_transcripts.parquet"):
        if (d / name).is_file():
            return d / name
    raise FileNotFoundError(
        f"{d} has no {TRANSCRIPTS}: is it a MERSCOPE region directory (the one holding "
        f"{TRANSCRIPTS} and images/)?"
    )


def mosaic_path(d: Path, stain: str, z_plane: int | None) -> Path | None:
    """``images/mosaic_{stain}_z{k}.tif`` of a directory (the middle plane by default)."""
    pat = re.compile(rf"mosaic_{stain}_z(\d+)\.tiff?$", re.IGNORECASE)
    found = {}
    for p in (d / "images").glob("mosaic_*"):
        m = pat.match(p.name)
        if m:
            found[int(m.group(1))] = p
    if not found:
        return None
    if z_plane is None:
        planes = sorted(found)
        return found[planes[len(planes) // 2]]
    if z_plane not in found:
        raise FileNotFoundError(
            f"{d / 'images'} has no mosaic_{stain}_z{z_plane}.tif (planes: {sorted(found)})"
        )
    return found[z_plane]


def _image_shape(path: Path) -> tuple[int, int]:
    from .images import ImageSource

    with ImageSource.open(path) as src:
        return src.shape


def ingest_merscope(
    directories: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    slice_spacing_um: float = 100.0,
    canvas: tuple[int, int] | None = None,
    registration: Mapping[int, np.ndarray] | None = None,
    panel: GenePanel | None = None,
    panel_mode: str = "same",
    orthologs: Mapping[str, str] | None = None,
    case_sensitive: bool = True,
    z_plane: int | None = None,
    images: bool = True,
    options: IngestOptions | None = None,
    overwrite: bool = False,
) -> IngestReport:
    """Ingest MERSCOPE region directories (slice ``i`` = ``directories[i]``) into a brain store.

    Parameters
    ----------
    directories
        One MERSCOPE output directory per slice, in slice order.
    out
        The brain store to write (resumed when it holds an interrupted ingest of the same
        inputs).
    slice_spacing_um
        Distance between slices, recorded in the store.
    canvas
        ``(height, width)`` of the shared canvas in pixels; by default the largest mosaic,
        rounded up to whole 16-px blocks.
    registration
        Slice to a 3 x 3 affine from that slice's mosaic pixels to the canvas (see
        :func:`~napari_teramind.ingest.registration.load_registration`); identity otherwise.
    panel
        A fixed panel (for example a model's genes); otherwise the slices' genes combined by
        ``panel_mode``.
    panel_mode
        ``same``, ``union`` or ``intersection`` (ignored with ``panel``).
    orthologs
        Panel symbol to sample symbol, to align a sample of another species to ``panel``.
    case_sensitive
        Match gene names exactly.
    z_plane
        Which ``mosaic_*_z{k}.tif`` plane to ingest (the middle one by default).
    images
        Ingest the DAPI and PolyT mosaics.
    options
        Shared options (chunk size, memory budget, progress, intensity ranges).
    overwrite
        Replace an existing ingested store (never an input, a file or a directory this
        project did not write).

    Returns
    -------
    IngestReport
        Also saved as ``ingest_report.json`` in the store.
    """
    options = options or IngestOptions()
    options.columns = MERSCOPE_COLUMNS
    dirs = [Path(d) for d in directories]
    if not dirs:
        raise ValueError("give at least one MERSCOPE directory")
    read = [("MERSCOPE directory", d) for d in dirs]
    check_output(out, overwrite, read)  # before reading anything
    registration = dict(registration or {})
    unknown = sorted(set(registration) - set(range(len(dirs))))
    if unknown:
        raise ValueError(f"registration names slices {unknown} but only {len(dirs)} were given")
    slices: list[SliceInput] = []
    shapes = []
    pixel_sizes = []
    for z, d in enumerate(dirs):
        if not d.is_dir():
            raise FileNotFoundError(f"MERSCOPE directory {d} does not exist")
        table = _find_table(d)
        m2p = reg.read_matrix_file(d / TRANSFORM) if (d / TRANSFORM).is_file() else None
        if m2p is None:
            raise FileNotFoundError(
                f"{d} lacks {TRANSFORM}, the micron-to-mosaic-pixel transform MERSCOPE writes; "
                "without it transcripts cannot be placed on the images"
            )
        pixel_sizes.append(reg.pixel_size_of(m2p))
        r = reg.as_affine(registration.get(z, np.eye(3)), what=f"registration of slice {z}")
        imgs: dict[str, Path] = {}
        if images:
            for stain in ("DAPI", "PolyT"):
                p = mosaic_path(d, stain, z_plane)
                if p is not None:
                    imgs[stain] = p
            if imgs:
                shapes.append(_image_shape(next(iter(imgs.values()))))
        slices.append(
            SliceInput(
                z=z,
                source=str(d),
                tables=(table,),
                table_to_canvas=r @ m2p,
                images=imgs,
                image_to_canvas=r,
            )
        )
    if canvas is None:
        if not shapes:
            raise ValueError(
                "no mosaic images found: give the canvas size (canvas=(h, w), --canvas)"
            )
        canvas = (max(s[0] for s in shapes), max(s[1] for s in shapes))
    height, width = (-(-int(n) // 16) * 16 for n in canvas)
    if max(pixel_sizes) - min(pixel_sizes) > 1e-3 * max(pixel_sizes):
        raise ValueError(
            f"the slices' micron-to-pixel transforms imply different pixel sizes ({pixel_sizes}); "
            "resample them to one pixel size in the registration"
        )
    bars = make_progress(options.progress)
    slice_genes = None
    if panel is None:
        slice_genes = {}
        from .transcripts import GeneCoder

        ctl = GeneCoder({}, options.control_pattern)
        for s in slices:
            bar = bars(desc=f"scanning genes of slice {s.z}", unit="row")
            counts = scan(s.tables, options.columns, options.chunk_rows, bar)
            bar.close()
            names = counts.get("", {})
            slice_genes[s.z] = [g for g in names if g and ctl.code(g) != -2]
    plan = plan_panel(slice_genes, panel_mode, panel, orthologs, case_sensitive)
    config = {
        "layout": "merscope",
        "inputs": [file_identity(s.tables[0]) for s in slices],
        "images": {s.z: {k: file_identity(v) for k, v in s.images.items()} for s in slices},
        "registration": {z: np.asarray(m).tolist() for z, m in registration.items()},
        "panel_mode": panel_mode,
        "orthologs": dict(orthologs or {}),
        "options": {
            "control": options.control_pattern,
            "intensity": options.intensity_range,
            "channel": options.image_channel,
        },
    }
    provenance = {
        "source": "MERSCOPE",
        "directories": [str(d.resolve()) for d in dirs],
        "z_plane": z_plane,
        "registration": {str(z): np.asarray(m).tolist() for z, m in registration.items()},
        "panel_mode": "fixed" if panel is not None else panel_mode,
    }
    return run_ingest(
        out,
        slices,
        plan,
        height=height,
        width=width,
        pixel_size_um=float(np.mean(pixel_sizes)),
        slice_spacing_um=slice_spacing_um,
        kind="merscope",
        provenance=provenance,
        options=options,
        config=config,
        overwrite=overwrite,
        inputs=read,
    )
