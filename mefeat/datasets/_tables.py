"""Reading the datasets' annotation tables: xlsx and csv sheets to rows of cells by
canonical column name, and telling one dataset's coding spreadsheet from another's."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mefeat.errors import AnnotationError


def _norm(name: Any) -> str:
    """Column names compared without case or inner/outer blanks ("Onset Frame" == "onsetframe")."""
    return re.sub(r"\s+", "", str(name)).lower() if name is not None else ""


@dataclass(frozen=True)
class TableRow:
    """One data row of a sheet: its cells by canonical column name and where it came from."""

    cells: dict[str, Any]
    source: str

    def __getitem__(self, name: str) -> Any:
        return self.cells.get(name)


def read_table(
    path: Path,
    columns: dict[str, Sequence[str]],
    *,
    optional: dict[str, Sequence[str]] | None = None,
    sheet: str | tuple[str, ...] | None = None,
    header_first_cell: str | None = None,
    header_search_rows: int = 40,
) -> list[TableRow]:
    """Rows of an ``.xlsx`` sheet or a ``.csv`` file, keyed by canonical column names.

    ``columns`` maps a canonical name to the header spellings accepted for it (compared
    without case and blanks); a missing one raises :class:`AnnotationError` naming the file
    and the column. ``header_first_cell``: the header is the first row whose first cell is
    this text (SAMM has 13 rows of notes above its header); otherwise it is the first row.
    ``sheet``: a name (must exist), a tuple of preferred names (else the first sheet), or
    ``None`` (the first sheet). Blank rows are skipped. Cells are returned as the file
    holds them (int, float, str).
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(
            f"annotation file {path} does not exist; pass annotations=<path to the file>"
        )
    suffix = path.suffix.lower()
    if suffix in {".xlsx", ".xlsm"}:
        raw, where = _xlsx_rows(path, sheet)
    elif suffix == ".csv":
        try:
            with open(path, newline="", encoding="utf-8-sig") as fh:
                raw = [list(r) for r in csv.reader(fh)]
        except UnicodeDecodeError as exc:
            raise AnnotationError(
                f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV"
            ) from None
        except csv.Error as exc:
            raise AnnotationError(f"{path} is not a readable CSV file ({exc}); fix it") from None
        where = str(path)
    else:
        raise AnnotationError(
            f"{path}: unsupported annotation format {suffix!r}; use .xlsx or .csv"
        )

    header_at = 0
    if header_first_cell is not None:
        want = _norm(header_first_cell)
        for i, r in enumerate(raw[:header_search_rows]):
            if r and _norm(r[0]) == want:
                header_at = i
                break
        else:
            raise AnnotationError(
                f"{where}: no header row starting with {header_first_cell!r} in the first "
                f"{header_search_rows} rows; is this the right annotation file?"
            )
    if not raw:
        raise AnnotationError(f"{where} is empty; pass the dataset's own annotation file")
    header = [_norm(c) for c in raw[header_at]]

    index: dict[str, int] = {}
    for canon, spellings in columns.items():
        pos = _find_column(header, spellings)
        if pos is None:
            raise AnnotationError(
                f"{where}: column {spellings[0]!r} is missing (header row {header_at + 1} has "
                f"{[c for c in raw[header_at] if c not in (None, '')]}); "
                "use the dataset's original annotation file or fix the header"
            )
        index[canon] = pos
    for canon, spellings in (optional or {}).items():
        pos = _find_column(header, spellings)
        if pos is not None:
            index[canon] = pos

    rows = []
    for i, r in enumerate(raw[header_at + 1 :], start=header_at + 2):
        if all(c is None or (isinstance(c, str) and not c.strip()) for c in r):
            continue
        cells = {canon: (r[pos] if pos < len(r) else None) for canon, pos in index.items()}
        cells = {k: (v.strip() if isinstance(v, str) else v) for k, v in cells.items()}
        cells = {k: (None if v == "" else v) for k, v in cells.items()}
        rows.append(TableRow(cells, f"{path.name} row {i}"))
    return rows


def _find_column(header: list[str], spellings: Sequence[str]) -> int | None:
    for s in spellings:
        if _norm(s) in header:
            return header.index(_norm(s))
    return None


def _xlsx_rows(path: Path, sheet: str | tuple[str, ...] | None) -> tuple[list[list[Any]], str]:
    import openpyxl  # only readers that open a spreadsheet pay for the import

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a broken or foreign file
        raise AnnotationError(
            f"cannot open {path} as an .xlsx workbook ({exc}); pass the dataset's original file"
        ) from None
    try:
        if isinstance(sheet, tuple):
            # Preferred names, else the first sheet (releases differ: "label" / "Sheet1").
            ws = next((wb[n] for n in sheet if n in wb.sheetnames), wb.worksheets[0])
        elif sheet is None:
            ws = wb.worksheets[0]
        elif sheet in wb.sheetnames:
            ws = wb[sheet]
        else:
            raise AnnotationError(
                f"{path} has no sheet {sheet!r} (sheets: {wb.sheetnames}); "
                "use the dataset's original annotation file"
            )
        rows = [list(r) for r in ws.iter_rows(values_only=True)]
        return rows, f"{path} (sheet {ws.title})"
    finally:
        wb.close()


# Marks of the annotation workbooks a reader is most often handed by mistake: (label, sheet
# names, header columns). Columns are compared stripped and without case but with their
# blanks, because the spacing is what tells SAMM's "Onset Frame" from CASME II's
# "OnsetFrame" (read_table ignores blanks, so SAMM's header would pass CASME II's check).
# MMEW's sheet has CASME II's columns (MEB toolkit), so "casme2" also stands for it.
_WORKBOOK_MARKS: dict[str, tuple[str, str, frozenset[str], frozenset[str]]] = {
    "samm": ("SAMM", "--dataset samm", frozenset({"MICRO_ONLY"}),
             frozenset({"inducement code", "objective classes"})),
    "smic-e": ("SMIC-E", "--dataset smic-e", frozenset({"HS", "VIS", "NIR"}),
               frozenset({"onsetf", "offsetf", "totalmf1", "firstf"})),
    "casme2": ("CASME II (or MMEW)", "--dataset casme2 (or --dataset mmew for MMEW's sheet)",
               frozenset(), frozenset({"onsetframe", "apexframe", "offsetframe"})),
}


@dataclass(frozen=True)
class WorkbookKind:
    """Which dataset's annotation workbook a file looks like (see :func:`identify_workbook`)."""

    dataset: str
    label: str
    suggest: str  # the option that reads it
    evidence: str
    header: frozenset[str]  # the header row's cells, stripped and lower-case


def identify_workbook(path: Path, *, search_rows: int = 40) -> WorkbookKind | None:
    """The dataset whose marks an ``.xlsx`` file carries, or ``None``.

    The header is, on each sheet, the first of the first ``search_rows`` rows whose first
    cell is "Subject" (SAMM has notes above it). Never raises: a file that cannot be read
    is left to :func:`read_table`, which says why.
    """
    if Path(path).suffix.lower() not in {".xlsx", ".xlsm"} or not Path(path).is_file():
        return None
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception:  # noqa: BLE001 - read_table reports an unreadable file
        return None
    try:
        sheets = {}
        for ws in wb.worksheets:
            for i, r in enumerate(ws.iter_rows(max_row=search_rows, values_only=True), 1):
                if r and str(r[0] or "").strip().lower() == "subject":
                    cells = [str(c).strip() for c in r if c not in (None, "")]
                    sheets[ws.title] = (i, cells)
                    break
    except Exception:  # noqa: BLE001
        return None
    finally:
        wb.close()
    for dataset, (label, suggest, names, columns) in _WORKBOOK_MARKS.items():
        for title, (row, cells) in sheets.items():
            marks = [c for c in cells if c.lower() in columns]
            if marks or title in names:
                what = f"sheet {title!r}" + (f", header row {row} with {marks}" if marks else "")
                header = frozenset(c.lower() for c in cells)
                return WorkbookKind(dataset, label, suggest, what, header)
    return None


def refuse_other_dataset(path: Path, dataset: str, label: str,
                         columns: dict[str, Sequence[str]]) -> None:
    """Raise :class:`AnnotationError` if ``path`` is another dataset's annotation workbook.

    ``columns`` is the reader's COLUMNS; the message lists the ones (first spelling) that
    the other sheet lacks and names the ``--dataset`` the file is for.
    """
    kind = identify_workbook(path)
    if kind is None or kind.dataset == dataset:
        return
    missing = [s[0] for s in columns.values() if s[0].lower() not in kind.header]
    if not missing:  # it has every column this reader needs: let it read
        return
    raise AnnotationError(
        f"{path} looks like the {kind.label} annotation file ({kind.evidence}), not "
        f"{label}'s: it has no {label} column{'s' if len(missing) > 1 else ''} {missing}; "
        f"use {kind.suggest} for this file, or pass {label}'s own annotation file"
    )
