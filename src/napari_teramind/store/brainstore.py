"""The brain store: one OME-Zarr (NGFF 0.5, zarr v3) group per brain, real or generated.

Layout::

    brain.zarr/                  attrs["teramind"]: format version, geometry, panel, provenance
      images/                    NGFF image (c = DAPI, PolyT; z; y; x), uint8, levels s0, s1, ...
        labels/regions/          NGFF label image (z, y, x), uint16 region ids (optional)
      genes/                     NGFF image (c = genes; z; y, x in gene blocks), uint16 counts
      attention/<name>/          derived NGFF images (gene-pair attention maps), float32

Every array carries coordinate transformations in micrometres, so images, genes, labels and
attention maps line up in any NGFF viewer. Writes go chunk by chunk (each chunk file is written
atomically by zarr); the store is marked complete only after its last write, and an incomplete
store is never opened as if it were done.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .chunks import (
    RECOVER,
    CheckedArray,
    ChunkRule,
    CoveredRegion,
    existing_chunk_keys,
    merge_coverage,
)
from .errors import BrainStoreError, DamagedStoreError
from .ngff import (
    Level,
    image_attrs,
    label_attrs,
    levels_from_multiscales,
    multiscales_metadata,
    omero_metadata,
    pyramid_levels,
    read_multiscales,
)
from .overwrite import Input, prepare_target
from .panel import GenePanel
from .pyramid import build_pyramid, n_level_chunks

FORMAT_NAME = "napari-teramind brain store"
FORMAT_VERSION = 1
CHANNELS = ("DAPI", "PolyT")
CHANNEL_COLORS = ("0000FF", "00FF00")
KINDS = ("real", "generated", "phantom")
#: Chunk edge of the gene arrays, in gene blocks, and genes per chunk (see docs/architecture.md).
GENE_CHUNK_BLOCKS = 128
GENE_CHUNK_GENES = 32


def _n_levels(size: int, chunk: int) -> int:
    """Levels needed until the larger side fits in one chunk (at least one)."""
    n = 1
    while size > chunk:
        size = -(-size // 2)
        n += 1
    return n


def _level_shape(base: tuple[int, ...], k: int) -> tuple[int, ...]:
    f = 2**k
    return base[:-2] + (-(-base[-2] // f), -(-base[-1] // f))


def _region_colors(ids: Sequence[int]) -> dict[int, list[int]]:
    """Distinct, stable RGBA colours for region ids (golden-angle hues)."""
    import colorsys

    out = {}
    for i in ids:
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.95)
        out[int(i)] = [int(r * 255), int(g * 255), int(b * 255), 255]
    return out


def _damaged_metadata(root: Path, node: str, exc: BaseException) -> DamagedStoreError:
    """The error for a ``zarr.json`` that exists but cannot be parsed."""
    file = root / node / "zarr.json" if node else root / "zarr.json"
    what = f"array or group {node}" if node else "the root group"
    return DamagedStoreError(
        f"{root}: the metadata of {what} ({file}) cannot be read ({type(exc).__name__}: "
        f"{exc}); the file is damaged (truncated or overwritten). {RECOVER.format(store=root)}",
        store=root,
        array=node,
        file=file,
    )


class BrainStore:
    """A brain on disk: images, gene counts, region labels and derived maps.

    Use :meth:`create` to make a new store and :meth:`open` to open one; do not call the
    constructor directly.

    Examples
    --------
    >>> store = BrainStore.open("brain.zarr")  # doctest: +SKIP
    >>> store.images(level=2)  # lazy dask array (c, z, y, x)  # doctest: +SKIP
    """

    def __init__(self, path: Path, group, meta: dict[str, Any], writable: bool):
        self.path = path
        self._group = group
        self._meta = meta
        self.writable = writable
        self._token = uuid.uuid4().hex[:8]

    def _node(self, name: str):
        """The zarr group or array ``name``.

        KeyError when absent; :class:`DamagedStoreError` naming the file when its
        ``zarr.json`` does not parse.
        """
        try:
            return self._group[name]
        except KeyError:
            if (self.path / name / "zarr.json").is_file():  # there, but not valid metadata
                raise _damaged_metadata(self.path, name, KeyError(name)) from None
            raise
        except Exception as exc:
            raise _damaged_metadata(self.path, name, exc) from exc

    def _has(self, name: str) -> bool:
        try:
            self._node(name)
        except KeyError:
            return False
        return True

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        n_slices: int,
        height: int,
        width: int,
        panel: GenePanel,
        pixel_size_um: float,
        slice_spacing_um: float,
        gene_block_px: int = 16,
        kind: str = "real",
        provenance: Mapping[str, Any] | None = None,
        region_names: Mapping[int, str] | None = None,
        overwrite: bool = False,
        image_chunk: int = 512,
        inputs: Sequence[Input] = (),
    ) -> BrainStore:
        """Create an empty brain store and return it open for writing.

        Parameters
        ----------
        path
            Directory of the new store (conventionally ending in ``.zarr``).
        n_slices, height, width
            Number of sections and their size in pixels. ``height`` and ``width`` must be
            multiples of ``gene_block_px``.
        panel
            Genes of the gene-count array, in order.
        pixel_size_um, slice_spacing_um
            Physical pixel size in the section plane and distance between sections.
        gene_block_px
            Edge of the square pixel block whose transcripts one gene-count element sums.
        kind
            ``"real"``, ``"generated"`` or ``"phantom"``.
        provenance
            JSON-able description of where the data came from.
        region_names
            Region id to name; when given, a ``labels/regions`` label image is created.
        overwrite
            Replace an existing store at ``path``; only a brain store of the same ``kind`` is
            replaced, never a file, another kind of store or a directory this project did not
            write (see :func:`~napari_teramind.store.overwrite.check_replaceable`).
        image_chunk
            Chunk edge of the image arrays in pixels (a multiple of ``gene_block_px``).
        inputs
            ``(what, path)`` pairs the writer reads; ``path`` may be none of them, nor a parent
            or a child of one.

        Raises
        ------
        OverwriteRefused
            When ``path`` holds something that may not be replaced, or is an input.
        """
        import zarr

        path = Path(path)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        if min(n_slices, height, width) <= 0:
            raise ValueError(f"store size must be positive, got {n_slices} x {height} x {width}")
        if height % gene_block_px or width % gene_block_px:
            raise ValueError(
                f"height and width ({height} x {width}) must be multiples of the gene block "
                f"({gene_block_px} px); crop or pad the canvas"
            )
        if image_chunk % gene_block_px:
            raise ValueError(f"image_chunk {image_chunk} must be a multiple of {gene_block_px}")
        if pixel_size_um <= 0 or slice_spacing_um <= 0:
            raise ValueError("pixel_size_um and slice_spacing_um must be positive")
        prepare_target(
            path, replaces=(kind,), overwrite=overwrite, inputs=inputs, role="output store"
        )
        root = zarr.open_group(store=str(path), mode="w-", zarr_format=3)
        meta: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "shape": {"z": n_slices, "y": height, "x": width},
            "pixel_size_um": float(pixel_size_um),
            "slice_spacing_um": float(slice_spacing_um),
            "gene_block_px": int(gene_block_px),
            "image_chunk": int(image_chunk),
            "channels": list(CHANNELS),
            "panel": list(panel.names),
            "region_names": {str(k): v for k, v in (region_names or {}).items()},
            "complete": False,
            # generated stores start covering nothing; each finished region is added
            "coverage": [] if kind == "generated" else None,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "software": _software(),
            "provenance": dict(provenance or {}),
            "downsampling": {"images": "mean", "genes": "max", "labels": "nearest"},
        }
        root.attrs["teramind"] = meta
        store = cls(path, root, meta, writable=True)
        store._create_multiscale(
            "images",
            n_channels=len(CHANNELS),
            dtype="uint8",
            base_shape=(n_slices, height, width),
            block_px=1,
            chunks=(1, image_chunk, image_chunk),
            downsampling="mean",
            omero=omero_metadata(CHANNELS, CHANNEL_COLORS, (0, 255)),
        )
        gb = gene_block_px
        store._create_multiscale(
            "genes",
            n_channels=len(panel),
            dtype="uint16",
            base_shape=(n_slices, height // gb, width // gb),
            block_px=gb,
            chunks=(1, GENE_CHUNK_BLOCKS, GENE_CHUNK_BLOCKS),
            channel_chunk=GENE_CHUNK_GENES,
            downsampling="max",
        )
        if region_names:
            root["images"].create_group(
                "labels", attributes={"ome": {"version": "0.5", "labels": ["regions"]}}
            )
            store._create_multiscale(
                "images/labels/regions",
                n_channels=None,
                dtype="uint16",
                base_shape=(n_slices, height, width),
                block_px=1,
                chunks=(1, image_chunk, image_chunk),
                downsampling="nearest",
                label_names=dict(region_names),
            )
        return store

    def _create_multiscale(
        self,
        name: str,
        *,
        n_channels: int | None,
        dtype: str,
        base_shape: tuple[int, int, int],
        block_px: int,
        chunks: tuple[int, int, int],
        downsampling: str,
        channel_chunk: int = 1,
        omero: dict | None = None,
        label_names: Mapping[int, str] | None = None,
        channel_names: Sequence[str] | None = None,
        fill_value: float = 0,
    ) -> list:
        """Create an NGFF multiscale group of empty arrays aligned with the image pixels."""
        px, dz = self.pixel_size_um, self.slice_spacing_um
        scale = (dz, px * block_px, px * block_px)
        trans = (0.0, (block_px - 1) / 2 * px, (block_px - 1) / 2 * px)
        axes: tuple[str, ...] = ("z", "y", "x")
        shape = base_shape
        chunk = chunks
        if n_channels is not None:
            axes = ("c", *axes)
            scale, trans = (1.0, *scale), (0.0, *trans)
            shape = (n_channels, *base_shape)
            chunk = (min(channel_chunk, n_channels), *chunks)
        n_levels = _n_levels(max(base_shape[1:]), max(chunks[1:]))
        levels = pyramid_levels(axes, scale, trans, n_levels)
        ms = multiscales_metadata(name.split("/")[-1], axes, levels, downsampling)
        if label_names is not None:
            attrs = label_attrs(ms, label_names, _region_colors(sorted(label_names)))
        else:
            attrs = image_attrs(ms, omero)
        if channel_names is not None:
            attrs["teramind"] = {"channels": list(channel_names)}
        group = self._group.require_group(name) if "/" in name else None
        if group is None:
            group = self._group.create_group(name, attributes=attrs, overwrite=True)
        else:
            group.attrs.update(attrs)
        arrays = []
        for k, lv in enumerate(levels):
            arrays.append(
                group.create_array(
                    lv.path,
                    shape=_level_shape(shape, k),
                    chunks=chunk,
                    dtype=dtype,
                    fill_value=fill_value,
                    dimension_names=axes,
                    config={"write_empty_chunks": True},
                    overwrite=True,
                )
            )
        return arrays

    def create_derived(
        self,
        name: str,
        channel_names: Sequence[str],
        *,
        dtype: str = "float32",
        block_px: int | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> list:
        """Create (or replace) a derived map ``attention/<name>``, aligned with the genes.

        Parameters
        ----------
        name
            Name of the derived map (``GLUT``, ``DOPA``, ...).
        channel_names
            One name per channel of the map.
        dtype
            Element type.
        block_px
            Pixels per element; the gene block size by default.
        attrs
            JSON-able metadata stored under ``attrs["teramind"]`` of the map.

        Returns
        -------
        list of zarr arrays
            The levels, finest first, axes ``(c, z, y, x)``.
        """
        self._require_writable()
        bp = block_px or self.gene_block_px
        arrays = self._create_multiscale(
            f"attention/{name}",
            n_channels=len(channel_names),
            dtype=dtype,
            base_shape=(self.n_slices, -(-self.height // bp), -(-self.width // bp)),
            block_px=bp,
            chunks=(1, GENE_CHUNK_BLOCKS, GENE_CHUNK_BLOCKS),
            channel_chunk=len(channel_names),
            downsampling="mean",
            channel_names=channel_names,
        )
        grp = self._group[f"attention/{name}"]
        grp.attrs["teramind"] = {"channels": list(channel_names), **dict(attrs or {})}
        return arrays

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        mode: str = "r",
        allow_incomplete: bool | None = None,
    ) -> BrainStore:
        """Open and validate a brain store.

        Parameters
        ----------
        path
            The store directory.
        mode
            ``"r"`` to read, ``"r+"`` to read and write.
        allow_incomplete
            Open a store whose writer has not finished. By default generated stores (which
            grow while a job runs) may be incomplete and other stores may not.

        Raises
        ------
        FileNotFoundError
            When nothing is at ``path``.
        BrainStoreError
            When the store is not a brain store, has an unknown format version, lacks arrays,
            has arrays that disagree in shape, or is incomplete.
        """
        import zarr

        path = Path(path)
        if mode not in ("r", "r+"):
            raise ValueError(f"mode must be 'r' or 'r+', not {mode!r}")
        if not path.exists():
            raise FileNotFoundError(f"no brain store at {path}: the path does not exist")
        if not (path / "zarr.json").is_file():
            hint = (
                " It looks like a zarr v2 store (.zgroup); brain stores are zarr v3."
                if (path / ".zgroup").exists()
                else " To turn raw data into a brain store use `teramind ingest`."
            )
            raise BrainStoreError(f"{path} is not a zarr v3 group (no zarr.json).{hint}")
        try:
            root = zarr.open_group(store=str(path), mode=mode, zarr_format=3)
        except Exception as exc:  # corrupt zarr.json and the like
            err = _damaged_metadata(path, "", exc)
            raise BrainStoreError(f"{path} cannot be opened as a zarr v3 group: {err}") from exc
        meta = dict(root.attrs.get("teramind") or {})
        if meta.get("format") != FORMAT_NAME:
            raise BrainStoreError(
                f"{path} is a zarr group but not a napari-teramind brain store (no 'teramind' "
                "metadata). Use `teramind ingest` to make one from your data."
            )
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise BrainStoreError(
                f"{path} has brain-store format version {version!r}; this napari-teramind "
                f"({_software()}) reads version {FORMAT_VERSION}. Upgrade napari-teramind."
            )
        store = cls(path, root, meta, writable=(mode == "r+"))
        store._validate_structure()
        if allow_incomplete is None:
            allow_incomplete = meta.get("kind") == "generated" or mode == "r+"
        if not meta.get("complete") and not allow_incomplete:
            raise BrainStoreError(
                f"{path} is incomplete: its writer stopped before finishing (metadata "
                "'complete' is false). Re-run the command that wrote it (jobs resume), or open "
                "it with allow_incomplete=True to inspect what is there."
            )
        if meta.get("complete"):
            store._check_edge_chunks()
        return store

    def _validate_structure(self) -> None:
        """Check that every array exists and that all shapes agree with the metadata."""
        z, h, w = self.n_slices, self.height, self.width
        gb = self.gene_block_px
        expected = {
            "images": (len(CHANNELS), z, h, w),
            "genes": (len(self.panel), z, -(-h // gb), -(-w // gb)),
        }
        if self.has_regions:
            expected["images/labels/regions"] = (z, h, w)
        for name, base in expected.items():
            if not self._has(name):
                raise BrainStoreError(
                    f"{self.path} lacks the '{name}' array group: the store is truncated or was "
                    "not written by napari-teramind. Re-create or re-copy it."
                )
            read_multiscales(self._node(name).attrs.asdict(), f"{self.path}/{name}")
            for k, lv in enumerate(self.levels(name)):
                want = _level_shape(base, k)
                try:
                    arr = self._node(f"{name}/{lv.path}")
                except KeyError:
                    raise BrainStoreError(
                        f"{self.path}/{name}/{lv.path} is missing: the store is truncated. "
                        "Re-create it or rebuild its pyramid."
                    ) from None
                if tuple(arr.shape) != want:
                    raise BrainStoreError(
                        f"{self.path}/{name}/{lv.path} has shape {tuple(arr.shape)} but the "
                        f"store's metadata ({z} slices of {h} x {w} px, {len(self.panel)} genes) "
                        "requires "
                        f"{want}. The arrays disagree; the store is corrupt."
                    )

    def _check_edge_chunks(self) -> None:
        """Cheap truncation check: the first and last required chunks of the level-0 arrays.

        Every read checks the chunks it touches, and ``validate`` checks them all.
        """
        for name in ("images", "genes"):
            checked = self.array(name, 0, strict=True)
            for coords in checked.rule.edges():
                if not checked.chunk_exists(coords):
                    raise checked.missing_error(coords)

    def validate(self, deep: bool = False) -> list[str]:
        """Check the store and return a list of problems (empty when it is sound).

        Every array's metadata must parse and agree with the store's geometry, and every chunk
        the store must hold (all of them, or those meeting the covered region of a generated
        store that covers a region) must exist. Chunk files are listed, not read.

        Parameters
        ----------
        deep
            Also read and decode every chunk file, which finds truncated or overwritten
            chunks (reads the whole store).
        """
        problems: list[str] = []
        try:
            self._validate_structure()
            multiscales = self._all_multiscales()
        except BrainStoreError as exc:
            return [str(exc)]
        if not self.complete:
            problems.append(
                "the store is not marked complete: its writer has not finished (resume or "
                "re-run the command that writes it)"
            )
        for name, arrays in multiscales.items():
            if name.startswith("attention/") and not self._completeness(name)[0]:
                meta = self.attention_metadata(name.split("/", 1)[1])
                problems.append(
                    f"{name}: the map is not complete ({meta.get('units_done', '?')} of "
                    f"{meta.get('units_total', '?')} units); resume it with `teramind attention`"
                )
                continue
            for level, arr in enumerate(arrays):
                problems += self._chunk_problems(name, level, arr, deep)
        return problems

    def _chunk_problems(self, name: str, level: int, arr, deep: bool) -> list[str]:
        """Missing (and with ``deep``, undecodable) chunks of one array, as problem lines."""
        checked = self.array(name, level, strict=True)
        rule = checked.rule
        keys = existing_chunk_keys(self.path / arr.path)
        where = "" if self._completeness(name)[1] is None else " inside the covered region"
        out = []
        missing = [c for c in rule.iter_required() if checked.chunk_key(c) not in keys]
        if missing:
            c = missing[0]
            out.append(
                f"{arr.path}: {len(missing)} of {rule.n_required()} chunks{where} missing "
                f"(first: chunk {'/'.join(map(str, c))}, {checked.chunk_file(c)})"
            )
        if deep:
            damaged = []
            for coords in itertools.product(*(range(g) for g in rule.grid)):
                if checked.chunk_key(coords) not in keys:
                    continue
                try:
                    checked.read_chunk(coords)
                except BrainStoreError as exc:
                    damaged.append(exc)
            if damaged:
                out.append(f"{arr.path}: {len(damaged)} damaged chunks (first: {damaged[0]})")
        return out

    def _all_multiscales(self) -> dict[str, list]:
        out = {"images": self._arrays("images"), "genes": self._arrays("genes")}
        if self.has_regions:
            out["images/labels/regions"] = self._arrays("images/labels/regions")
        for name in self.attention_names():
            out[f"attention/{name}"] = self._arrays(f"attention/{name}")
        return out

    # ------------------------------------------------------------------ metadata
    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the store's ``teramind`` metadata."""
        return dict(self._meta)

    @property
    def kind(self) -> str:
        """``real``, ``generated`` or ``phantom``."""
        return self._meta["kind"]

    @property
    def n_slices(self) -> int:
        """Number of sections."""
        return int(self._meta["shape"]["z"])

    @property
    def height(self) -> int:
        """Section height in pixels."""
        return int(self._meta["shape"]["y"])

    @property
    def width(self) -> int:
        """Section width in pixels."""
        return int(self._meta["shape"]["x"])

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(slices, height, width)`` of the image canvas at full resolution."""
        return (self.n_slices, self.height, self.width)

    @property
    def pixel_size_um(self) -> float:
        """Pixel size in the section plane, micrometres."""
        return float(self._meta["pixel_size_um"])

    @property
    def slice_spacing_um(self) -> float:
        """Distance between sections, micrometres."""
        return float(self._meta["slice_spacing_um"])

    @property
    def gene_block_px(self) -> int:
        """Edge of the pixel block one gene-count element sums."""
        return int(self._meta["gene_block_px"])

    @property
    def image_chunk(self) -> int:
        """Chunk edge of the level-0 image arrays, pixels."""
        return int(self._meta.get("image_chunk", self._node("images/s0").chunks[-1]))

    @property
    def panel(self) -> GenePanel:
        """The genes of the gene-count array."""
        return GenePanel(self._meta["panel"])

    @property
    def region_names(self) -> dict[int, str]:
        """Region id to name (empty when the store has no region labels)."""
        return {int(k): v for k, v in self._meta.get("region_names", {}).items()}

    @property
    def has_regions(self) -> bool:
        """Whether the store has a ``labels/regions`` label image."""
        return bool(self._meta.get("region_names"))

    @property
    def complete(self) -> bool:
        """Whether the writer finished (a generated store: every region it covers)."""
        return bool(self._meta.get("complete"))

    @property
    def coverage(self) -> tuple[CoveredRegion, ...] | None:
        """The regions a generated store holds data for; None when it covers the canvas.

        Chunks outside them were never written and read as the fill value (0); a complete
        store holds every chunk meeting them.
        """
        if "coverage" in self._meta:
            cov = self._meta["coverage"]
        elif self.kind == "generated":  # written before coverage was recorded
            cov = self._meta.get("generated_regions", [])
        else:
            cov = None
        if cov is None:
            return None
        return tuple(CoveredRegion.from_dict(c) for c in cov)

    def covered_box(self, z: int | None = None) -> tuple[int, int, int, int] | None:
        """Bounding box ``(y0, y1, x0, x1)`` px of the covered regions (of slice ``z``).

        None when the store covers the whole canvas. A slice no region covers raises
        ValueError.
        """
        cov = self.coverage
        if cov is None:
            return None
        regs = [c.region for c in cov if z is None or z in c.slices]
        if not regs:
            covered = sorted({s for c in cov for s in c.slices})
            raise ValueError(
                f"{self.path} holds generated data for slices {covered} only"
                + ("" if z is None else f", not slice {z}")
                + "; choose a covered slice"
            )
        return (
            min(r[0] for r in regs),
            max(r[1] for r in regs),
            min(r[2] for r in regs),
            max(r[3] for r in regs),
        )

    def covered_slices(self) -> list[int]:
        """Slices holding data: all, or those of the covered regions."""
        cov = self.coverage
        if cov is None:
            return list(range(self.n_slices))
        return sorted({z for c in cov for z in c.slices})

    def mark_complete(
        self, covered: CoveredRegion | None = None, extra: Mapping[str, Any] | None = None
    ) -> None:
        """Mark the store complete, after its last write (and pyramid) finished.

        Parameters
        ----------
        covered
            The region just written into a generated store that covers regions; it joins the
            store's ``coverage``. None: the writer wrote the whole canvas.
        extra
            More metadata written in the same update (e.g. provenance of the region).
        """
        values: dict[str, Any] = dict(extra or {})
        if covered is not None:
            merged = merge_coverage(self.coverage, covered, self.shape)
            values["coverage"] = None if merged is None else [c.to_dict() for c in merged]
        else:
            values["coverage"] = None
        values["complete"] = True
        self.update_metadata(values)

    @property
    def provenance(self) -> dict[str, Any]:
        """Where the data came from (source, model, seed, ...)."""
        return dict(self._meta.get("provenance", {}))

    def update_metadata(self, values: Mapping[str, Any]) -> None:
        """Merge JSON-able ``values`` into the store's ``teramind`` metadata and save it."""
        self._require_writable()
        reserved = {"format", "format_version", "shape", "panel"} & set(values)
        if reserved:
            raise ValueError(f"metadata keys {sorted(reserved)} are fixed at creation")
        self._meta.update(values)
        self._group.attrs["teramind"] = self._meta

    # ------------------------------------------------------------------ levels and arrays
    def levels(self, name: str = "images") -> list[Level]:
        """Scale and translation (micrometres) of each level of multiscale ``name``."""
        _, ms = read_multiscales(self._node(name).attrs.asdict(), f"{self.path}/{name}")
        return levels_from_multiscales(ms)

    def _arrays(self, name: str) -> list:
        return [self._node(f"{name}/{lv.path}") for lv in self.levels(name)]

    def zarr_array(self, name: str, level: int = 0):
        """The raw zarr array of level ``level`` of multiscale ``name``, for writers.

        Reads through it are not checked (a missing chunk reads as zeros): readers use
        :meth:`array` or :meth:`lazy`.
        """
        return self._arrays(name)[level]

    def n_levels(self, name: str = "images") -> int:
        """Number of pyramid levels of multiscale ``name``."""
        return len(self.levels(name))

    def lazy(self, name: str, level: int = 0, strict: bool | None = None):
        """Level ``level`` of multiscale ``name`` as a lazy dask array.

        Parameters
        ----------
        name
            ``"images"``, ``"genes"``, ``"images/labels/regions"`` or ``"attention/<name>"``.
        level
            Pyramid level (0 = full resolution).
        strict
            Raise on chunks that were never written instead of reading them as zeros. By
            default strict for complete stores; an incomplete generated store shows its
            unwritten chunks as empty.
        """
        import dask.array as da

        reader = self.array(name, level, strict)
        return da.from_array(
            reader,
            chunks=reader.chunks,
            asarray=True,
            fancy=False,
            name=f"teramind-{self._token}-{name}-{level}-{int(reader.strict)}",
            meta=np.empty((0,) * reader.ndim, dtype=reader.dtype),
        )

    def array(self, name: str, level: int = 0, strict: bool | None = None) -> CheckedArray:
        """Level ``level`` of multiscale ``name`` for reading with numpy-style indexing.

        Every reader goes through this (or :meth:`lazy`, built on it): reading a chunk the
        store must hold but lacks raises
        :class:`~napari_teramind.store.errors.MissingChunkError`, and a chunk file that does
        not decode raises :class:`~napari_teramind.store.errors.DamagedStoreError`, both
        naming the store, the array, the chunk and the file.

        Parameters
        ----------
        name, level
            As for :meth:`lazy`.
        strict
            Raise on missing chunks. By default strict when the store (for an attention map:
            the map) is marked complete. Chunks outside the region a generated store covers
            are never required and read as the fill value (0).
        """
        arr = self.zarr_array(name, level)
        if strict is None:
            strict = self._completeness(name)[0]
        return CheckedArray(arr, self.path, self.chunk_rule(name, level) if strict else None)

    def chunk_rule(self, name: str, level: int = 0) -> ChunkRule:
        """Which chunks of level ``level`` of multiscale ``name`` a finished store holds."""
        arr = self.zarr_array(name, level)
        unit = max(1, round(self.levels(name)[0].scale[-1] / self.pixel_size_um))
        return ChunkRule(arr.shape, arr.chunks, unit, level, self._completeness(name)[1])

    def _completeness(self, name: str) -> tuple[bool, tuple[CoveredRegion, ...] | None]:
        """Whether multiscale ``name`` is finished, and the region it covers (None: all)."""
        if not name.startswith("attention/"):
            return self.complete, self.coverage
        meta = self.attention_metadata(name.split("/", 1)[1])
        region, slices = meta.get("region"), meta.get("slices")
        every = slices is None or set(slices) >= set(range(self.n_slices))
        if region is None and every:
            return bool(meta.get("complete")), None
        box = tuple(region) if region is not None else (0, self.height, 0, self.width)
        zs = tuple(slices) if slices is not None else tuple(range(self.n_slices))
        return bool(meta.get("complete")), (CoveredRegion(box, zs),)

    def images(self, level: int = 0):
        """Images as a lazy dask array ``(c, z, y, x)`` uint8, c = DAPI, PolyT."""
        return self.lazy("images", level)

    def genes(self, level: int = 0):
        """Gene counts as a lazy dask array ``(gene, z, y_block, x_block)`` uint16."""
        return self.lazy("genes", level)

    def gene(self, name: str, level: int = 0):
        """Counts of one gene as a lazy dask array ``(z, y_block, x_block)``."""
        return self.genes(level)[self.panel.index(name)]

    def regions(self, level: int = 0):
        """Region labels as a lazy dask array ``(z, y, x)``; an error if the store has none."""
        if not self.has_regions:
            raise BrainStoreError(f"{self.path} has no region labels")
        return self.lazy("images/labels/regions", level)

    def attention_names(self) -> list[str]:
        """Names of the derived attention maps in the store."""
        if not self._has("attention"):
            return []
        return sorted(k for k, _ in self._node("attention").groups())

    def attention(self, name: str, level: int = 0):
        """Derived attention map ``name`` as a lazy dask array ``(channel, z, y, x)``."""
        if name not in self.attention_names():
            raise KeyError(
                f"{self.path} has no attention map {name!r} (has: {self.attention_names()}); "
                "compute it with `teramind attention`"
            )
        return self.lazy(f"attention/{name}", level)

    def attention_metadata(self, name: str) -> dict[str, Any]:
        """Metadata of derived map ``name`` (channel names, genes, checkpoint, ...)."""
        return dict(self._node(f"attention/{name}").attrs.get("teramind", {}))

    def update_derived_metadata(self, name: str, values: Mapping[str, Any]) -> None:
        """Update entries of the metadata of derived map ``name`` (e.g. job progress)."""
        self._require_writable()
        if name not in self.attention_names():
            raise KeyError(f"{self.path} has no derived map {name!r}")
        grp = self._group[f"attention/{name}"]
        grp.attrs["teramind"] = {**dict(grp.attrs.get("teramind", {})), **dict(values)}

    # ------------------------------------------------------------------ writing
    def _require_writable(self) -> None:
        if not self.writable:
            raise BrainStoreError(f"{self.path} is open read-only; open it with mode='r+'")

    def _write(self, name: str, index: tuple, data: np.ndarray, dtype: str) -> None:
        self._require_writable()
        data = np.asarray(data)
        if data.dtype != np.dtype(dtype):
            raise TypeError(f"{name} data must be {dtype}, got {data.dtype}")
        arr = _writing_empty_chunks(self.zarr_array(name, 0))
        sl = []
        for start, n, size in zip(
            index, data.shape[-len(index) :], arr.shape[-len(index) :], strict=True
        ):
            if start < 0 or start + n > size:
                raise ValueError(
                    f"write of {data.shape} at {index} falls outside {name} of shape {arr.shape}"
                )
            sl.append(slice(start, start + n))
        with _keep_empty_chunks():
            arr[(slice(None),) * (arr.ndim - len(index)) + tuple(sl)] = data

    def write_images(self, z: int, y0: int, x0: int, data: np.ndarray) -> None:
        """Write uint8 images ``(2, h, w)`` (DAPI, PolyT) of slice ``z`` at pixel ``(y0, x0)``."""
        data = np.asarray(data)
        if data.ndim != 3 or data.shape[0] != len(CHANNELS):
            raise ValueError(f"images must have shape (2, h, w), got {data.shape}")
        self._write("images", (z, y0, x0), data[:, None], "uint8")

    def write_genes(self, z: int, by0: int, bx0: int, data: np.ndarray) -> None:
        """Write uint16 counts ``(genes, hb, wb)`` of slice ``z`` at gene block ``(by0, bx0)``."""
        data = np.asarray(data)
        if data.ndim != 3 or data.shape[0] != len(self.panel):
            raise ValueError(
                f"gene counts must have shape ({len(self.panel)}, hb, wb), got {data.shape}"
            )
        self._write("genes", (z, by0, bx0), data[:, None], "uint16")

    def write_regions(self, z: int, y0: int, x0: int, data: np.ndarray) -> None:
        """Write uint16 region ids ``(h, w)`` of slice ``z`` at pixel ``(y0, x0)``."""
        if not self.has_regions:
            raise BrainStoreError("this store was created without region labels (region_names)")
        self._write("images/labels/regions", (z, y0, x0), np.asarray(data)[None], "uint16")

    def write_derived(self, name: str, z: int, by0: int, bx0: int, data: np.ndarray) -> None:
        """Write float32 values ``(channels, hb, wb)`` of slice ``z`` into ``attention/<name>``.

        ``(by0, bx0)`` is the element (gene block) offset. Call :meth:`build_pyramids` with
        ``names=["attention/<name>"]`` after the last write.
        """
        group = f"attention/{name}"
        if name not in self.attention_names():
            raise KeyError(f"{self.path} has no derived map {name!r}; create it first")
        data = np.asarray(data)
        n_channels = self.zarr_array(group, 0).shape[0]
        if data.ndim != 3 or data.shape[0] != n_channels:
            raise ValueError(
                f"{group} data must have shape ({n_channels}, hb, wb), got {data.shape}"
            )
        self._write(group, (z, by0, bx0), data[:, None], "float32")

    def build_pyramids(
        self,
        names: Sequence[str] | None = None,
        region: tuple[int, int, int, int] | None = None,
        workers: int = 2,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """(Re)build the lower-resolution levels from level 0, streaming chunk by chunk.

        Parameters
        ----------
        names
            Multiscales to rebuild; all by default.
        region
            ``(y0, y1, x0, x1)`` in image pixels: rebuild only what this region affects.
        workers
            Threads per level.
        progress
            Called with the number of chunks finished.
        """
        self._require_writable()
        methods = {"images": "mean", "genes": "max", "images/labels/regions": "nearest"}
        for name, arrays in self._all_multiscales().items():
            if names is not None and name not in names:
                continue
            method = methods.get(name, "mean")
            reg = region
            if region is not None and name != "images" and not name.startswith("images/"):
                gb = self.gene_block_px
                reg = (region[0] // gb, -(-region[1] // gb), region[2] // gb, -(-region[3] // gb))
            arrays = [_writing_empty_chunks(a) for a in arrays]
            with _keep_empty_chunks():
                build_pyramid(arrays, method, region=reg, workers=workers, progress=progress)

    def pyramid_chunk_count(self) -> int:
        """Number of chunks :meth:`build_pyramids` writes (for progress bars)."""
        return sum(
            n_level_chunks(a.shape, a.chunks)
            for arrays in self._all_multiscales().values()
            for a in arrays[1:]
        )

    def finalize(self, progress: Callable[[int], None] | None = None, workers: int = 2) -> None:
        """Build all pyramids and mark the store complete (the last step of every writer)."""
        self.build_pyramids(progress=progress, workers=workers)
        self.mark_complete()

    def __repr__(self) -> str:
        z, h, w = self.shape
        return (
            f"BrainStore({str(self.path)!r}, {self.kind}, {z} slices of {h} x {w} px at "
            f"{self.pixel_size_um} um, {len(self.panel)} genes"
            f"{'' if self.complete else ', incomplete'})"
        )


def _keep_empty_chunks():
    """Make zarr write all-zero chunks too.

    zarr does not persist ``write_empty_chunks`` with an array, and a missing chunk in a
    complete store must mean lost data, never "all zero".
    """
    import zarr

    return zarr.config.set({"array.write_empty_chunks": True})


def _writing_empty_chunks(array):
    """``array`` set to write all-zero chunks.

    An opened array keeps the config it was opened with, so the global setting of
    :func:`_keep_empty_chunks` alone does not reach arrays opened before it.
    """
    return array.with_config({"write_empty_chunks": True})


def _software() -> str:
    from napari_teramind import __version__

    return f"napari-teramind {__version__}"
