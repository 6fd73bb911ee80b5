"""Reading import files: CSV, Excel (.xlsx) and JSON, streamed row by row, never whole.

CSV is read with the csv module (UTF-8, a byte-order mark allowed, the delimiter sniffed among
`, ; tab |`), Excel with openpyxl in read-only mode (first sheet, first row is the header), JSON
incrementally with `json.JSONDecoder.raw_decode` over 64 KB chunks. JSON is either an array of
objects (`[{...}, {...}]`) or JSON Lines (one object per line). Every value is kept as text exactly
as written: identifiers keep their leading zeros, Unicode is not normalized, JSON numbers keep their
literal spelling. (An Excel cell that holds the number 123 has no leading zeros to keep; store
identifiers as text cells.)

Row numbers in messages are what a person sees: for CSV and Excel the spreadsheet row (the header
is row 1, the first record row 2); for JSON the position of the object (the first object is 1).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from crm_core.platform.errors import ValidationError

FORMATS = ("csv", "xlsx", "json")
MAX_JSON_OBJECT = 16 * 1024 * 1024
# A workbook is bounded by what it expands to, not by its compressed size: a few hundred kilobytes
# of zipped XML can hold gigabytes of text. openpyxl reads the shared strings whole into memory.
MAX_XLSX_EXPANDED = 1024 * 1024 * 1024
MAX_XLSX_SHARED_STRINGS = 64 * 1024 * 1024
# Excel's own limit on a cell; a column name is a label, not a document.
MAX_CELL_LENGTH = 32_767
MAX_COLUMN_NAME_LENGTH = 255

T = TypeVar("T")
Source = str | os.PathLike | IO[bytes]
Progress = Callable[[float | None, int], None]


def detect_format(name: str | None, fmt: str = "auto") -> str:
    """The file format: `fmt` when given, else from the file name's extension."""
    if fmt and fmt != "auto":
        if fmt not in FORMATS:
            raise ValidationError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
        return fmt
    suffix = Path(name or "").suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "json"
    if suffix in ("txt", "tsv"):
        return "csv"
    if suffix in FORMATS:
        return suffix
    raise ValidationError(
        f"Cannot tell the format of {name or 'the file'} from its name; name it .csv, .xlsx or .json "
        "or choose the format."
    )


class _CountingRaw(io.RawIOBase):
    """A raw stream that counts the bytes read, for a progress fraction."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.consumed += n
        return n


NUL_PROBLEM = "holds a NUL character (\\x00): the file is damaged or not text"
LONG_CELL_PROBLEM = f"holds a value longer than {MAX_CELL_LENGTH:,} characters (Excel's limit for a cell)"


def _cell_problem(values: list[str]) -> str | None:
    """What makes a row's values unusable as a whole: a NUL character or an oversized value."""
    if any("\x00" in v for v in values):
        return NUL_PROBLEM
    if any(len(v) > MAX_CELL_LENGTH for v in values):
        return LONG_CELL_PROBLEM
    return None


def _cell_text(value: Any) -> str:
    """A spreadsheet or JSON value as the text a person would read in the cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _header(names: list[Any]) -> list[str]:
    columns = []
    for index, name in enumerate(names, start=1):
        text = _cell_text(name).strip() or f"column_{index}"
        if len(text) > MAX_COLUMN_NAME_LENGTH:
            raise ValidationError(f"The header's column {index} is {len(text):,} characters long; a column name "
                                  f"has at most {MAX_COLUMN_NAME_LENGTH}. Is the first row really the header?")
        if "\x00" in text:
            raise ValidationError(f"The header's column {index} {NUL_PROBLEM}.")
        if text in columns:
            raise ValidationError(f"The header names the column {text!r} twice; column names must be unique.")
        columns.append(text)
    if not columns:
        raise ValidationError("The file has no header row.")
    return columns


@dataclass
class RawRow:
    number: int
    values: dict[str, str]
    problem: str | None = None  # a structural problem with the row (too many values)


class TableReader:
    """Rows of a CSV, Excel or JSON file as text, one at a time. Use as a context manager."""

    def __init__(self, source: Source, fmt: str = "auto", name: str | None = None) -> None:
        self.name = name or (str(source) if isinstance(source, str | os.PathLike) else getattr(source, "name", None))
        self.format = detect_format(self.name, fmt)
        self._owned: IO[bytes] | None = None
        self._stream = self._open(source)
        self._total = self._size(self._stream)
        self._counter: _CountingRaw | None = None
        self._workbook = None
        self._xlsx_rows = 0
        self._xlsx_max: int | None = None
        self.columns: list[str] = []
        self._rows: Iterator[RawRow] = iter(())
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _open(self, source: Source) -> IO[bytes]:
        if isinstance(source, str | os.PathLike):
            try:
                self._owned = open(source, "rb")  # noqa: SIM115 - closed in close()
            except FileNotFoundError:
                raise ValidationError(f"File not found: {source}") from None
            except IsADirectoryError:
                raise ValidationError(f"{source} is a folder, not a file.") from None
            except OSError as exc:
                raise ValidationError(f"Cannot read {source}: {exc.strerror or exc}") from None
            return self._owned
        if hasattr(source, "seek"):
            source.seek(0)
        return source

    @staticmethod
    def _size(stream: IO[bytes]) -> int | None:
        try:
            position = stream.tell()
            size = stream.seek(0, os.SEEK_END)
            stream.seek(position)
            return size
        except (OSError, AttributeError, ValueError):
            return None

    def _start(self) -> None:
        if self._total == 0:
            raise ValidationError(f"{self.name or 'The file'} is empty.")
        if self.format == "xlsx":
            self._start_xlsx()
            return
        self._counter = _CountingRaw(self._stream)
        text = io.TextIOWrapper(io.BufferedReader(self._counter), encoding="utf-8-sig", newline="")
        if self.format == "csv":
            self._start_csv(text)
        else:
            self._start_json(text)

    def _decode_guard(self, rows: Iterator[T]) -> Iterator[T]:
        try:
            yield from rows
        except UnicodeDecodeError as exc:
            raise ValidationError(
                f"{self.name or 'The file'} is not UTF-8 text (an undecodable byte near byte {self.consumed:,}): "
                f"save it as UTF-8 and try again. ({exc.reason})"
            ) from None
        except RecursionError:
            raise ValidationError(f"{self.name or 'The file'} nests its values too deeply to read: an imported "
                                  "row is a flat object of column values.") from None
        except csv.Error as exc:
            raise ValidationError(f"{self.name or 'The file'} is not a readable CSV file: {exc}.") from None

    # CSV
    def _start_csv(self, text: io.TextIOWrapper) -> None:
        try:
            sample = text.read(64 * 1024)
            sample += text.readline()
        except UnicodeDecodeError as exc:
            raise ValidationError(
                f"{self.name or 'The file'} is not UTF-8 text: save it as UTF-8 and try again. ({exc.reason})"
            ) from None
        if not sample.strip():
            raise ValidationError(f"{self.name or 'The file'} is empty.")
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","

        def lines() -> Iterator[str]:
            yield from io.StringIO(sample, newline="")
            yield from text

        reader = csv.reader(lines(), delimiter=delimiter)
        try:
            first = next(reader)
        except (StopIteration, csv.Error) as exc:
            raise ValidationError(f"{self.name or 'The file'} has no readable header row ({exc}).") from None
        self.columns = _header(first)
        width = len(self.columns)

        def rows() -> Iterator[RawRow]:
            number = 1
            for record in reader:
                number += 1
                if not any(v.strip() for v in record):
                    continue
                problem = None
                if len(record) > width and any(v.strip() for v in record[width:]):
                    problem = f"has {len(record)} values but the header has {width} columns"
                else:
                    problem = _cell_problem(record)
                record = record[:width] + [""] * (width - len(record))
                yield RawRow(number, dict(zip(self.columns, record, strict=True)), problem)

        self._rows = self._decode_guard(rows())

    # Excel
    def _start_xlsx(self) -> None:
        import zipfile

        from openpyxl import load_workbook
        from openpyxl.utils.exceptions import InvalidFileException

        name = self.name or "The file"
        broken = (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, IndexError, ValueError, TypeError,
                  SyntaxError, EOFError, zlib.error)  # SyntaxError: xml.etree's ParseError (malformed XML)
        try:
            self._check_xlsx_expansion()
            workbook = self._workbook = load_workbook(self._stream, read_only=True, data_only=True)
            sheet = workbook.worksheets[0]
            rows = sheet.iter_rows(values_only=True)
            first = next(rows, None)
        except broken as exc:
            raise ValidationError(f"{name} is not a valid Excel (.xlsx) workbook "
                                  f"({type(exc).__name__}: {str(exc)[:200]}).") from None
        if first is None:
            raise ValidationError(f"{self.name or 'The file'} has an empty first sheet.")
        self.columns = _header(list(first))
        width = len(self.columns)
        try:
            self._xlsx_max = sheet.max_row
        except (TypeError, ValueError):
            self._xlsx_max = None

        def generate() -> Iterator[RawRow]:
            number = 1
            try:
                for values in rows:
                    number += 1
                    self._xlsx_rows = number
                    texts = [_cell_text(v) for v in values]
                    if not any(t.strip() for t in texts):
                        continue
                    problem = _cell_problem(texts)
                    if len(texts) > width and any(t.strip() for t in texts[width:]):
                        problem = f"has values beyond the {width} named columns"
                    texts = texts[:width] + [""] * (width - len(texts))
                    yield RawRow(number, dict(zip(self.columns, texts, strict=True)), problem)
            except broken as exc:
                raise ValidationError(f"{name} is damaged after row {number - 1:,}: it is not a valid Excel (.xlsx) "
                                      f"workbook ({type(exc).__name__}: {str(exc)[:200]}).") from None

        self._rows = generate()

    def _check_xlsx_expansion(self) -> None:
        """Refuse a workbook whose parts expand beyond what can be read safely (a zip bomb)."""
        import zipfile

        with zipfile.ZipFile(self._stream) as archive:
            infos = archive.infolist()
        self._stream.seek(0)
        expanded = sum(info.file_size for info in infos)
        shared = sum(info.file_size for info in infos if info.filename.lower().endswith("sharedstrings.xml"))
        name = self.name or "The file"
        if expanded > MAX_XLSX_EXPANDED:
            raise ValidationError(f"{name} expands to {expanded / 2**20:,.0f} MB when unzipped; an imported workbook "
                                  f"may expand to at most {MAX_XLSX_EXPANDED / 2**20:,.0f} MB. Split it, or save it as CSV.")
        if shared > MAX_XLSX_SHARED_STRINGS:
            raise ValidationError(f"{name} holds {shared / 2**20:,.0f} MB of text in its shared strings; at most "
                                  f"{MAX_XLSX_SHARED_STRINGS / 2**20:,.0f} MB can be read. Split it, or save it as CSV.")

    # JSON
    def _start_json(self, text: io.TextIOWrapper) -> None:
        objects = self._decode_guard(_json_objects(text, self.name or "The file"))
        first = next(objects, None)
        if first is None:
            raise ValidationError(f"{self.name or 'The file'} holds no objects.")
        seen: list[str] = []
        for key in first[1]:
            if key not in seen:
                seen.append(key)
        self.columns = seen or ["value"]

        def row(number: int, obj: dict) -> RawRow:
            values = {str(k): _cell_text(v) for k, v in obj.items()}
            return RawRow(number, values, _cell_problem(list(values.values())))

        def generate() -> Iterator[RawRow]:
            yield row(*first)
            for number, obj in objects:
                yield row(number, obj)

        self._rows = generate()

    @property
    def consumed(self) -> int:
        return self._counter.consumed if self._counter else 0

    def fraction(self) -> float | None:
        """How far through the file reading is, 0..1, when that can be told."""
        if self.format == "xlsx":
            if self._xlsx_max:
                return min(1.0, self._xlsx_rows / self._xlsx_max)
            return None
        if self._total:
            return min(1.0, self.consumed / self._total)
        return None

    def rows(self) -> Iterator[RawRow]:
        return self._rows

    def close(self) -> None:
        if self._workbook is not None:
            self._workbook.close()
            self._workbook = None
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __enter__(self) -> TableReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _json_objects(text: IO[str], name: str) -> Iterator[tuple[int, dict]]:
    """(position, object) pairs from a JSON array of objects or JSON Lines, read in chunks."""
    decoder = json.JSONDecoder(parse_float=str, parse_int=str, parse_constant=str)
    buffer, position, eof = "", 0, False

    def fill() -> None:
        nonlocal buffer, position, eof
        chunk = text.read(64 * 1024)
        if not chunk:
            eof = True
        buffer = buffer[position:] + chunk
        position = 0

    def next_char() -> str:
        """The next non-blank character (not consumed), or '' at the end of the file."""
        nonlocal position
        while True:
            while position < len(buffer) and buffer[position] in " \t\r\n":
                position += 1
            if position < len(buffer):
                return buffer[position]
            if eof:
                return ""
            fill()

    fill()
    opening = next_char()
    if opening not in ("[", "{"):
        raise ValidationError(f"{name} is not JSON with customer objects: it must be an array of objects or JSON Lines.")
    in_array = opening == "["
    if in_array:
        position += 1
    count = 0
    while True:
        char = next_char()
        if in_array and char == "]":
            position += 1
            if next_char() != "":
                raise ValidationError(f"{name} has data after the closing ']' of its array.")
            return
        if char == "":
            if in_array:
                raise ValidationError(f"{name} ends before its array is closed with ']'.")
            return
        if count and in_array:
            if char != ",":
                raise ValidationError(f"{name}: expected ',' or ']' after object {count}, found {char!r}.")
            position += 1
            char = next_char()
        if char != "{":
            raise ValidationError(f"{name}: item {count + 1} is not an object (it starts with {char!r}).")
        while True:
            try:
                obj, end = decoder.raw_decode(buffer, position)
                break
            except json.JSONDecodeError as exc:
                if eof or len(buffer) - position > MAX_JSON_OBJECT:
                    raise ValidationError(f"{name}: object {count + 1} is not valid JSON ({exc.msg}).") from None
                fill()
        position = end
        count += 1
        yield count, obj


def file_columns(source: Source, *, fmt: str = "auto", file_name: str | None = None) -> list[str]:
    """The columns of a file (its header), or a ValidationError saying why it cannot be read."""
    with TableReader(source, fmt, file_name) as reader:
        return reader.columns
