"""Streaming readers of transcript tables (CSV, gzipped CSV, Parquet), a chunk at a time.

Only the needed columns are parsed. The gene (and slice) columns come back dictionary-encoded,
so mapping millions of gene names to panel positions costs one lookup per distinct name.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Rows per chunk aimed at (the CSV reader works in bytes; about 64 bytes per row).
DEFAULT_CHUNK_ROWS = 1_000_000


@dataclass(frozen=True)
class TableColumns:
    """Names of the columns of a transcript table.

    Parameters
    ----------
    gene
        Gene symbol (or barcode name) of each transcript.
    x, y
        Coordinates: x along the image columns, y along the rows.
    slice
        Column naming the slice of each row, when one table holds several slices.
    """

    gene: str = "gene"
    x: str = "global_x"
    y: str = "global_y"
    slice: str | None = None

    def names(self) -> list[str]:
        """The column names in use."""
        return [c for c in (self.gene, self.x, self.y, self.slice) if c]


@dataclass
class Chunk:
    """One chunk of transcripts.

    Attributes
    ----------
    genes
        The distinct gene names of the chunk (the dictionary).
    gene_idx
        For each row, its index into ``genes`` (-1 for an empty name).
    x, y
        Coordinates, float64 (NaN where missing).
    slices
        Distinct slice values of the chunk (when a slice column is read).
    slice_idx
        For each row, its index into ``slices``.
    """

    genes: list[str]
    gene_idx: np.ndarray
    x: np.ndarray
    y: np.ndarray
    slices: list[str] | None = None
    slice_idx: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.gene_idx)


def table_format(path: str | os.PathLike[str]) -> str:
    """``"parquet"`` or ``"csv"`` from the file name."""
    name = Path(path).name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")):
        return "csv"
    raise ValueError(
        f"{path}: unknown table format; name the file *.csv, *.csv.gz, *.tsv or *.parquet"
    )


def _delimiter(path: Path) -> str:
    return "\t" if ".tsv" in path.name.lower() else ","


def table_header(path: str | os.PathLike[str]) -> list[str]:
    """Column names of a table, read from its header (CSV) or schema (Parquet)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"transcript table {path} does not exist")
    if table_format(path) == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:
            raise ValueError(f"{path} is not a readable Parquet file: {exc}") from None
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", newline="") as fh:
        try:
            header = next(csv.reader(fh, delimiter=_delimiter(path)))
        except StopIteration:
            raise ValueError(f"{path} is empty: no header row") from None
    return [h.strip() for h in header]


def check_columns(path: str | os.PathLike[str], columns: TableColumns) -> list[str]:
    """Check that the table has the named columns; a clear error (with close matches) if not.

    Returns
    -------
    list of str
        The table's header.
    """
    header = table_header(path)
    missing = [c for c in columns.names() if c not in header]
    if missing:
        hints = []
        for c in missing:
            close = difflib.get_close_matches(c, header, n=2)
            hints.append(
                f"{c!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")
            )
        raise ValueError(
            f"{path} has no column {', '.join(hints)}; its columns are {header}. "
            "Name the columns with --gene-column/--x-column/--y-column/--slice-column."
        )
    return header


def _to_numpy(arr, dtype) -> np.ndarray:
    """A fixed-width arrow array without nulls as a numpy view of its data buffer.

    (``Array.to_numpy`` goes through pyarrow's pandas shim, which imports pandas, ~1 s, on first
    use; arrays with nulls still take that path.)
    """
    if arr.null_count == 0 and np.dtype(arr.type.to_pandas_dtype()) == np.dtype(dtype):
        data = np.frombuffer(arr.buffers()[1], dtype=dtype, count=arr.offset + len(arr))
        return data[arr.offset :]
    return arr.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def _dict_column(col) -> tuple[list[str], np.ndarray]:
    """Dictionary values and int32 indices of a (chunked) string-like arrow column; null -> -1."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not pa.types.is_dictionary(col.type):
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            col = col.cast(pa.string())
        col = pc.dictionary_encode(col)
    values = col.dictionary
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = values.cast(pa.string())
    indices = col.indices
    if indices.null_count:
        indices = indices.fill_null(-1)
    idx = _to_numpy(indices, np.int32)
    return [str(v) for v in values.to_pylist()], idx


def _float_column(col, path: Path, name: str) -> np.ndarray:
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not pa.types.is_floating(col.type):
        try:
            col = col.cast(pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise ValueError(
                f"{path}: column {name!r} holds {col.type}, not numbers; is it the right column?"
            ) from None
    elif col.type != pa.float64():
        col = col.cast(pa.float64())  # float16/32: exact widening, then a zero-copy view
    return _to_numpy(col, np.float64)


def _raw_blocks(path: Path, block_bytes: int) -> Iterator[bytes]:
    """A CSV file (decompressed) as blocks of whole lines, each starting with the header line.

    Blocks hold about ``block_bytes`` bytes.
    Lines are cut at newlines, as pyarrow's own CSV chunker does (values with embedded newlines
    are not supported by either).
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        header = fh.readline()
        rest = b""
        while True:
            data = fh.read(block_bytes)
            buf = rest + data if rest else data
            if not data:
                if buf.strip():
                    yield header + buf
                return
            cut = buf.rfind(b"\n")
            if cut < 0:
                rest = buf
                continue
            rest = buf[cut + 1 :]
            yield header + buf[: cut + 1]


def _csv_batches(path: Path, block_bytes: int, parse_options, convert_options) -> Iterator:
    """Parsed blocks of a CSV file (pyarrow tables, one dictionary per column per block).

    pyarrow's streaming reader reads ahead without bound (hundreds of MB on a large table), so
    the file is cut into blocks here and each block parsed with the (multi-threaded)
    ``read_csv``; the next block is parsed in a background thread while the caller works on the
    current one. At most two blocks are parsed or held at a time, whatever the file size.
    """
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    from pyarrow import csv as pcsv

    def parse(block: bytes):
        tab = pcsv.read_csv(
            pa.py_buffer(block), parse_options=parse_options, convert_options=convert_options
        )
        return tab.unify_dictionaries().combine_chunks()

    with ThreadPoolExecutor(1) as pool:
        pending = None
        for block in _raw_blocks(path, block_bytes):
            nxt = pool.submit(parse, block)
            if pending is not None:
                yield pending.result()
            pending = nxt
        if pending is not None:
            yield pending.result()


def iter_chunks(
    path: str | os.PathLike[str],
    columns: TableColumns,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    coordinates: bool = True,
) -> Iterator[Chunk]:
    """Read a transcript table chunk by chunk.

    Parameters
    ----------
    path
        A ``.csv``/``.csv.gz``/``.tsv`` or ``.parquet`` file.
    columns
        The column names to read.
    chunk_rows
        About how many rows per chunk.
    coordinates
        Read the coordinate columns (False reads only gene and slice, for a quick scan).

    Raises
    ------
    ValueError
        When a column is missing or holds values that are not numbers.
    """
    import pyarrow as pa

    path = Path(path)
    check_columns(path, columns)
    names = [columns.gene] + ([columns.x, columns.y] if coordinates else [])
    if columns.slice:
        names.append(columns.slice)
    try:
        if table_format(path) == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            batches = pf.iter_batches(batch_size=chunk_rows, columns=names)
        else:
            from pyarrow import csv as pcsv

            types = {columns.gene: pa.dictionary(pa.int32(), pa.string())}
            if coordinates:
                types[columns.x] = pa.float64()
                types[columns.y] = pa.float64()
            if columns.slice:
                types[columns.slice] = pa.dictionary(pa.int32(), pa.string())
            batches = _csv_batches(
                path,
                max(1 << 16, chunk_rows * 64),
                pcsv.ParseOptions(delimiter=_delimiter(path)),
                pcsv.ConvertOptions(
                    include_columns=names, column_types=types, strings_can_be_null=True
                ),
            )
        for batch in batches:
            genes, gidx = _dict_column(batch.column(columns.gene))
            if coordinates:
                x = _float_column(batch.column(columns.x), path, columns.x)
                y = _float_column(batch.column(columns.y), path, columns.y)
            else:
                x = y = np.empty(0)
            sl = sidx = None
            if columns.slice:
                sl, sidx = _dict_column(batch.column(columns.slice))
            yield Chunk(genes, gidx, x, y, sl, sidx)
    except pa.ArrowInvalid as exc:
        raise ValueError(f"{path}: cannot read the table: {exc}") from None


def scan(
    paths: Sequence[str | os.PathLike[str]],
    columns: TableColumns,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress=None,
) -> dict[str, dict[str, int]]:
    """Count rows per slice value and gene name (reads only those two columns).

    Returns
    -------
    dict
        Slice value (``""`` when there is no slice column) to gene name to rows.
    """
    out: dict[str, dict[str, int]] = {}
    for path in paths:
        for ch in iter_chunks(path, columns, chunk_rows, coordinates=False):
            ng = len(ch.genes) + 1
            if ch.slice_idx is not None and ch.slices is not None:
                key = (ch.slice_idx.astype(np.int64) + 1) * ng + ch.gene_idx + 1
                svals = ["<null>", *ch.slices]
            else:
                key = ch.gene_idx.astype(np.int64) + 1
                svals = [""]
            counts = np.bincount(key, minlength=len(svals) * ng)
            for k in np.flatnonzero(counts):
                s, g = divmod(int(k), ng)
                gname = "" if g == 0 else ch.genes[g - 1]
                d = out.setdefault(svals[s], {})
                d[gname] = d.get(gname, 0) + int(counts[k])
            if progress is not None:
                progress.update(len(ch))
    return out


def natural_order(values: Mapping[str, object] | Sequence[str]) -> list[str]:
    """Slice values in numeric order when they are all numbers, else in text order."""
    vals = list(values)
    try:
        return sorted(vals, key=float)
    except ValueError:
        return sorted(vals)
