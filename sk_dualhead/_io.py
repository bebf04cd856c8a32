"""Files for the command line: atomic outputs, model files, tables as people have them.

Everything the command line writes goes through :func:`atomic_write`, every
model it reads through :func:`load_model` and every table through
:func:`read_table` or :func:`iter_table`. Problems the user can fix raise
:class:`UserError` with a message that names the file, the column and the
fix.
"""

# Authors: sk_dualhead developers
# SPDX-License-Identifier: BSD-3-Clause

import bz2
import codecs
import collections
import contextlib
import csv
import gzip
import lzma
import os
import pathlib
import sys
import tempfile

import numpy as np
import pandas as pd

#: Cell values read as missing, after surrounding spaces are stripped.
NA_MARKERS = ("", "NA", "N/A", "n/a", "na", "NaN", "nan", "null", "NULL", "None", "?", "#N/A")

#: Delimiters a CSV file may use; the one that splits the first lines into
#: the most, equally many, fields wins.
DELIMITERS = (",", ";", "\t", "|")

#: Rows below which a column of distinct values is not taken for an identifier.
ID_MIN_ROWS = 20

#: Rows read, converted and predicted at a time by :meth:`Table.chunks`.
#: Each chunk of CSV text is some hundred thousand short-lived Python strings,
#: and the C allocator's heap keeps growing by what fragments they leave: with
#: 50,000 rows a chunk, predict's peak RSS on 4,000,000 rows was 1.22 times
#: that on 200,000; with 10,000, 1.07 times, for 12% more time
#: (benchmarks/stream_rss.py).
CHUNK_ROWS = 10_000

#: Dates become days since this one.
EPOCH = pd.Timestamp("1970-01-01")

_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_PARQUET = (".parquet", ".pq")


class UserError(Exception):
    """A problem the user can fix; reported in one line, without a traceback."""


def note(message):
    """Tell the user something on stderr, as the command line does."""
    print(f"note: {message}", file=sys.stderr)


def warn(message):
    """Warn the user on stderr; for what may be a mistake but need not be."""
    print(f"warning: {message}", file=sys.stderr)


def _umask():
    # The process umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path, mode="wb", **open_kwargs):
    """Open a temporary file beside ``path``, renamed to ``path`` once complete.

    On any exception, a Ctrl-C included, the temporary file is removed and
    ``path`` is left as it was: the previous file, or none.

    Parameters
    ----------
    path : str or path-like
        The file to write.
    mode : {"wb", "w"}, default="wb"
        Mode of the temporary file.
    **open_kwargs
        Passed to :func:`open` (``encoding``, ``newline``).

    Yields
    ------
    file : file object
        The temporary file, to write to.
    """
    path = pathlib.Path(path)
    # In the target folder: a rename within one file system is atomic.
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".part"
    )
    try:
        with os.fdopen(descriptor, mode, **open_kwargs) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        # mkstemp creates the file readable by its owner only.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def open_output(path):
    """A text file for a command's output: stdout for ``"-"``, else atomic.

    Yields
    ------
    file : file object
        Written through :func:`atomic_write` unless it is stdout, so the
        file at ``path`` is the whole output or is left as it was.
    """
    if str(path) == "-":
        yield sys.stdout
        return
    try:
        with atomic_write(path, "w", encoding="utf-8", newline="") as file:
            yield file
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc}") from exc


# ------------------------------------------------------------------ models

#: First bytes of pickles (protocols 2 to 5) and of the compressed files
#: joblib writes (zlib, gzip, bz2, xz, lzma, lz4).
_PICKLE_STARTS = (
    b"\x80",
    b"\x78",
    b"\x1f\x8b",
    b"BZh",
    b"\xfd7zXZ",
    b"\x5d\x00\x00",
    b"\x04\x22\x4d\x18",
)
_ZIP_START = b"PK\x03\x04"


def load_model(path, *, allow_pickle=False, sha256=None):
    """Load a fitted model for the command line.

    Files in the format of :func:`sk_dualhead.save` are read without running
    any of their code. Anything else may be a pickle, which runs the code it
    holds when loaded: it is refused unless ``allow_pickle``, and loaded
    with a warning if so.

    Parameters
    ----------
    path : str or path-like
        The model file.
    allow_pickle : bool, default=False
        Whether to load pickle and joblib files.
    sha256 : str, default=None
        The file's expected SHA-256, checked before anything is loaded.

    Returns
    -------
    model : DualHeadClassifier
        The fitted model.
    """
    from .estimator import DualHeadClassifier
    from .serialization import ModelFormatError, check_sha256, load

    path = pathlib.Path(path)
    try:
        with open(path, "rb") as file:
            start = file.read(4)
        if sha256 is not None:
            check_sha256(path, sha256)
    except FileNotFoundError as exc:
        raise UserError(f"model file {path} does not exist.") from exc
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc
    except ModelFormatError as exc:
        raise UserError(str(exc)) from exc
    if start.startswith(_ZIP_START):
        try:
            model = load(path)
        except ModelFormatError as exc:
            raise UserError(str(exc)) from exc
    else:
        model = _load_pickle(path, start, allow_pickle)
    if not isinstance(model, DualHeadClassifier) or not hasattr(model, "classes_"):
        raise UserError(
            f"{path} holds a {type(model).__name__}, not a fitted "
            "DualHeadClassifier saved by sk-dualhead fit."
        )
    return model


def _is_pickle_path(path):
    return pathlib.Path(path).suffix.lower() in (".joblib", ".pkl", ".pickle")


def save_model(model, path, allow_pickle=False):
    """Save a fitted model for ``predict``: the safe format, or joblib on request.

    Returns
    -------
    sha256 : str or None
        The SHA-256 of the file in the safe format; None for joblib.
    """
    from .serialization import save

    if _is_pickle_path(path):
        if not allow_pickle:
            raise UserError(
                f"--out {path} names a pickle or joblib file, which runs code when "
                "loaded; use a .skdh name for the safe format, or pass "
                "--allow-pickle to write joblib."
            )
        import joblib

        try:
            with atomic_write(path) as file:
                joblib.dump(model, file)
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc}") from exc
        return None
    try:
        return save(model, path)
    except TypeError as exc:
        raise UserError(
            f"{exc} From the command line: --out NAME.joblib --allow-pickle."
        ) from exc
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc}") from exc


def _load_pickle(path, start, allow_pickle):
    import joblib

    kind = (
        "a pickle or joblib file"
        if start.startswith(_PICKLE_STARTS)
        else "not a model saved by sk-dualhead fit (nor by sk_dualhead.save)"
    )
    if not allow_pickle:
        raise UserError(
            f"{path} is {kind}. Loading a pickle runs whatever code it holds, "
            "so sk-dualhead refuses it: load it with --allow-pickle only if you "
            "trust where it came from, then save it again with sk-dualhead fit "
            "or sk_dualhead.save, whose files hold no code."
        )
    warn(
        f"loading {path} as a pickle: this runs any code it holds, which is "
        "safe only for a file you trust; models saved by sk-dualhead fit load "
        "without --allow-pickle."
    )
    try:
        return joblib.load(path)
    except Exception as exc:
        # Unpickling a foreign file fails in many ways (UnpicklingError,
        # KeyError, EOFError, ValueError, ...); all mean "not our model".
        raise UserError(
            f"{path} is not a model saved by sk-dualhead fit "
            f"({type(exc).__name__}: {exc})."
        ) from exc


def model_features(model):
    """The columns a fitted model reads, and what each holds where known.

    Returns
    -------
    columns : list of str or None
        Feature names in training order; None when it was fitted on an array.
    kinds : dict
        ``"numeric"`` or ``"categorical"`` by name, for the columns whose
        kind the model's preprocessing fixes; the others are inferred.
    """
    from .preprocessing import TabularPreprocessor

    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return None, {}
    names = [str(name) for name in names]
    preprocessor = getattr(model, "preprocessor_", None)
    if preprocessor is None:
        return names, dict.fromkeys(names, "numeric")
    if not isinstance(preprocessor, TabularPreprocessor):
        return names, {}
    kinds = {names[i]: "numeric" for i in preprocessor.numeric_columns_}
    for i in (*preprocessor.onehot_columns_, *preprocessor.embedding_columns_):
        kinds[names[i]] = "categorical"
    return names, kinds


# ------------------------------------------------------------------ tables


def _open_binary(path):
    return _OPENERS.get(path.suffix.lower(), open)(path, "rb")


def detect_encoding(path):
    """``"utf-8-sig"`` or ``"utf-16"`` after a byte-order mark, ``"utf-8"`` when
    the whole file is valid UTF-8, else ``"latin-1"`` with a note."""
    with _open_binary(path) as file:
        start = file.read(4)
        if start.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if start[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            return "utf-16"
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset, block = 0, start
        while block:
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                note(
                    f"{path} is not UTF-8 (byte 0x{block[exc.start]:02x} at offset "
                    f"{offset + exc.start}); it is read as Latin-1 (ISO-8859-1). "
                    "If its text looks wrong, pass --encoding with its encoding "
                    "(cp1252, for example)."
                )
                return "latin-1"
            offset += len(block)
            block = file.read(2**20)
    return "utf-8"


def detect_delimiter(path, encoding):
    """The delimiter of :data:`DELIMITERS` that splits the first lines best."""
    with _OPENERS.get(path.suffix.lower(), open)(
        path, "rt", encoding=encoding, newline=""
    ) as file:
        lines = [line for _, line in zip(range(50), file) if line.strip()]
    if not lines:
        return ","
    best, most = ",", 1
    for delimiter in DELIMITERS:
        counts = {len(row) for row in csv.reader(lines, delimiter=delimiter)}
        # The last line may be cut short by the sample; the others may not.
        if len(counts) == 1 and (fields := counts.pop()) > most:
            best, most = delimiter, fields
    if most == 1:
        # No delimiter splits every line alike (quoted line breaks, ragged
        # rows): go by the header alone.
        header = lines[0]
        counts = {delimiter: header.count(delimiter) for delimiter in DELIMITERS}
        best = max(counts, key=counts.get) if max(counts.values()) else ","
    return best


class _Report:
    """What reading a table changed, told once as notes."""

    def __init__(self, path):
        self.path = path
        self.missing = collections.Counter()
        self.dates = {}

    def notes(self):
        if self.missing:
            by_marker = collections.defaultdict(list)
            for (column, marker), count in self.missing.items():
                by_marker[marker].append(f"{column!r} {count}")
            described = "; ".join(
                f"{marker!r} ({', '.join(cells)})" for marker, cells in by_marker.items()
            )
            note(f"cells read as missing in {self.path}, by marker (column cells): {described}.")
        for column, example in self.dates.items():
            note(
                f"column {column!r} holds dates or times (such as {example!r}); "
                f"it is used as days since {EPOCH.date()}."
            )


_DATE = (
    r"^\d{4}-\d{1,2}-\d{1,2}"
    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
)
_OTHER_DATE = r"^\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?$"


def _as_days(values, column, report):
    """Days since :data:`EPOCH` of datetime values; None for other values."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        stamps = values
    else:
        present = values.dropna()
        if present.empty or not present.str.match(_DATE).all():
            if len(present) and present.str.match(_OTHER_DATE).all():
                raise UserError(
                    f"column {column!r} of {report.path} holds dates such as "
                    f"{present.iloc[0]!r}, whose order of day, month and year is "
                    "ambiguous; write them as YYYY-MM-DD, or leave the column out "
                    f"(--drop {column})."
                )
            return None
        try:
            stamps = pd.to_datetime(values, format="ISO8601", utc=True)
        except (ValueError, OverflowError) as exc:
            raise UserError(
                f"column {column!r} of {report.path} holds a date that cannot be "
                f"read ({exc}); correct it, or leave the column out (--drop {column})."
            ) from exc
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    first = values.dropna()
    report.dates.setdefault(column, str(first.iloc[0]) if len(first) else "")
    return (stamps - EPOCH) / pd.Timedelta(days=1)


def _as_numbers(values, decimal_comma):
    """Floats when every present value is a number, else None."""
    for candidate in (values, values.str.replace(",", ".", regex=False)):
        numbers = pd.to_numeric(candidate, errors="coerce")
        if not (candidate.notna() & numbers.isna()).any():
            return numbers.astype(np.float64)
        if not decimal_comma:
            break
    return None


def _convert_text(values, column, kind, decimal_comma, report):
    """A column of CSV text as numbers, days or text, NA markers as missing."""
    stripped = values.str.strip()
    missing = stripped.isin(NA_MARKERS)
    if missing.any():
        for marker, count in stripped[missing].value_counts().items():
            report.missing[column, marker] += int(count)
    present = stripped.mask(missing)
    if kind == "categorical":
        return present
    numbers = _as_numbers(present, decimal_comma)
    if numbers is not None:
        return numbers
    days = _as_days(present, column, report)
    if days is not None:
        return days
    if kind == "numeric":
        bad = present[present.notna() & pd.to_numeric(present, errors="coerce").isna()]
        raise UserError(
            f"column {column!r} of {report.path} holds {bad.iloc[0]!r} (data row "
            f"{bad.index[0] + 1}), which is not a number, but the model was "
            "trained with numbers in this column; correct the value or leave the "
            "cell empty (read as missing)."
        )
    return present


class Table:
    """A CSV or Parquet file, read as the command line reads tables.

    CSV: the encoding (UTF-8, with or without a byte-order mark, UTF-16, else
    Latin-1) and the delimiter (``,``, ``;``, tab or ``|``) are detected
    unless given; :data:`NA_MARKERS` are read as missing; spaces around
    values are dropped; columns of numbers (with a decimal comma too, when
    the delimiter is not a comma) become floats, ISO dates become days since
    1970-01-01, and the rest stays text. Parquet keeps its types, but
    datetimes become days too. (Cells holding lists or dicts are refused by
    the model's preprocessing, which names the column.)

    Parameters
    ----------
    path : str or path-like
        The file; ``.parquet`` or ``.pq`` for Parquet, else CSV, compressed
        by ``.gz``, ``.bz2`` or ``.xz``.
    encoding : str, default=None
        Encoding of a CSV file; None detects it.
    delimiter : str, default=None
        Delimiter of a CSV file; None detects it.
    """

    def __init__(self, path, *, encoding=None, delimiter=None):
        self.path = pathlib.Path(path)
        self.parquet = self.path.suffix.lower() in _PARQUET
        self.report = _Report(self.path)
        self.encoding, self.delimiter = encoding, delimiter
        if self.parquet:
            return
        try:
            if self.encoding is None:
                self.encoding = detect_encoding(self.path)
            if self.delimiter is None:
                self.delimiter = detect_delimiter(self.path, self.encoding)
        except (OSError, EOFError, UnicodeDecodeError, LookupError) as exc:
            raise UserError(f"cannot read {self.path}: {exc}") from exc

    def _raw_chunks(self, columns, chunk_rows):
        """Frames of at most ``chunk_rows`` rows (None: one frame), as stored."""
        if self.parquet:
            yield from self._parquet_chunks(columns, chunk_rows)
            return
        try:
            reader = pd.read_csv(
                self.path,
                sep=self.delimiter,
                encoding=self.encoding,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                chunksize=chunk_rows,
            )
            chunks = [reader] if chunk_rows is None else reader
            for chunk in chunks:
                chunk.columns = [str(name).strip() for name in chunk.columns]
                if columns is not None:
                    self._check_columns(chunk.columns, columns)
                    chunk = chunk[columns]
                yield chunk
        except pd.errors.EmptyDataError as exc:
            raise UserError(f"{self.path} is empty.") from exc
        except pd.errors.ParserError as exc:
            raise UserError(
                f"cannot read {self.path} as a table with delimiter "
                f"{self.delimiter!r}: {exc}. Pass --delimiter if it uses another."
            ) from exc
        except (OSError, ValueError, UnicodeDecodeError, LookupError) as exc:
            raise UserError(f"cannot read {self.path}: {exc}") from exc

    def _parquet_chunks(self, columns, chunk_rows):
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise UserError(
                f"cannot read {self.path}: reading Parquet needs pyarrow "
                "(pip install 'sk-dualhead[parquet]')."
            ) from exc
        try:
            file = pq.ParquetFile(self.path)
            if columns is not None:
                self._check_columns(file.schema_arrow.names, columns)
            if chunk_rows is None:
                yield file.read(columns=columns).to_pandas()
                return
            for batch in file.iter_batches(batch_size=chunk_rows, columns=columns):
                yield batch.to_pandas()
        except (OSError, ValueError) as exc:
            # pyarrow's ArrowInvalid is a ValueError.
            raise UserError(f"cannot read {self.path}: {exc}") from exc

    def _check_columns(self, present, columns):
        missing = [name for name in columns if name not in set(present)]
        if missing:
            raise UserError(
                f"{self.path} lacks columns the model was trained on: "
                + ", ".join(map(str, missing))
            )

    def _convert(self, frame, kinds):
        decimal_comma = self.delimiter not in (None, ",")
        converted = {}
        for column in frame.columns:
            values, kind = frame[column], kinds.get(column)
            if not self.parquet:
                values = _convert_text(values, column, kind, decimal_comma, self.report)
            elif pd.api.types.is_datetime64_any_dtype(values.dtype):
                values = _as_days(values, column, self.report)
            converted[column] = values
        return pd.DataFrame(converted, index=frame.index)

    def read(self):
        """The whole table, converted, with at least one row; notes told."""
        frame = self._convert(next(self._raw_chunks(None, None)), {})
        if len(frame) == 0:
            raise UserError(f"{self.path} has a header but no data rows.")
        self.report.notes()
        return frame

    def chunks(self, columns=None, kinds=None, chunk_rows=CHUNK_ROWS):
        """Converted frames of ``chunk_rows`` rows, in file order.

        Parameters
        ----------
        columns : list of str, default=None
            Columns to read, in this order; a file without one of them is
            refused. None reads every column.
        kinds : dict, default=None
            ``"numeric"`` or ``"categorical"`` by column, as the model needs
            them; the other columns' kinds are inferred chunk by chunk.
        chunk_rows : int, default=CHUNK_ROWS
            Rows per chunk.

        Yields
        ------
        frame : DataFrame
            The next rows; the notes are told after the last.
        """
        n_rows = 0
        for chunk in self._raw_chunks(columns, chunk_rows):
            chunk = chunk.set_axis(pd.RangeIndex(n_rows, n_rows + len(chunk)))
            n_rows += len(chunk)
            if len(chunk):
                yield self._convert(chunk, kinds or {})
        if n_rows == 0:
            raise UserError(f"{self.path} has a header but no data rows.")
        self.report.notes()


def warn_identifiers(frame, exclude=()):
    """Warn about columns that hold a different value in every row.

    Columns of floats with decimals are measurements, not identifiers, and
    the columns in ``exclude`` (dates, say) are skipped.
    """
    if len(frame) < ID_MIN_ROWS:
        return
    for column in frame.columns:
        if column in exclude:
            continue
        values = frame[column]
        if values.isna().any() or not values.is_unique:
            continue
        numeric = pd.api.types.is_numeric_dtype(values.dtype)
        if numeric and not (
            pd.api.types.is_integer_dtype(values.dtype)
            or (np.isfinite(values) & (values == np.round(values))).all()
        ):
            # Measurements with decimals are all distinct too.
            continue
        if pd.api.types.is_bool_dtype(values.dtype):
            continue
        warn(
            f"column {column!r} holds a different value in every row, like an "
            "identifier; the model can learn nothing from it that holds for new "
            f"rows. Leave it out (--drop {column}) unless it is a real feature."
        )
