"""`tracker.Table`: rows and columns, stored as a JSON run file as W&B stores tables.

The file ``media/table/KEY_STEP_HASH.table.json`` holds ``{"columns": [...], "data":
[[...], ...]}``; the row keeps ``{"_type": "table-file", "path", "sha256", "size",
"ncols", "nrows"}``. A table is written as it is when logged: rows added later go into
the next log of it. Cells may hold media values (an `Image` per row): each is stored as
its own file and the cell holds its reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson

from tracker._errors import UsageError
from tracker._media._base import Media, MediaFile, file_reference, media_key
from tracker._records.codec import default

__all__ = ["Table"]

_DEFAULT_COLUMNS: Final = ("Input", "Output", "Expected")
"""W&B's columns for a table made without any."""


class Table(Media):
    """A table to log: ``run.log({"preds": tracker.Table(columns=["x", "y"], data=rows)})``.

    Args:
        columns: the column names (default W&B's ``["Input", "Output", "Expected"]``, or
            the DataFrame's columns).
        data: the rows, each a sequence with one value per column (a 2-D numpy array
            too).
        rows: the same as ``data`` (W&B's older name).
        dataframe: a pandas DataFrame to take the columns and rows from.
        dtype, optional, allow_mixed_types: accepted for W&B compatibility; cells are
            not typed here.

    Raises:
        UsageError: a row's length differs from the columns', or a column name is not a str.
    """

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        data: Any = None,
        rows: Any = None,
        dataframe: Any = None,
        dtype: Any = None,
        optional: Any = True,
        allow_mixed_types: bool = False,
    ) -> None:
        if dataframe is not None:
            columns = [str(column) for column in dataframe.columns]
            data = dataframe.to_numpy(dtype=object).tolist()
        data = rows if data is None else data
        if hasattr(data, "tolist"):
            data = data.tolist()
        self.columns: list[str] = list(_DEFAULT_COLUMNS if columns is None else columns)
        """The column names."""
        for column in self.columns:
            if not isinstance(column, str):
                raise UsageError(f"Table(columns=...): column name {column!r} is not a str")
        self.data: list[list[Any]] = []
        """The rows, each a list with one value per column."""
        for row in data or ():
            self.add_data(*row)

    def add_data(self, *data: Any) -> None:
        """Add a row: one value per column.

        Raises:
            UsageError: the row does not have one value per column.
        """
        if len(data) != len(self.columns):
            raise UsageError(
                f"Table.add_data(): {len(data)} values for {len(self.columns)} columns "
                f"({', '.join(self.columns)}); pass one value per column"
            )
        self.data.append(list(data))

    def add_column(self, name: str, data: Sequence[Any]) -> None:
        """Add a column holding one value per row.

        Raises:
            UsageError: the name is taken or not a str, or the values are not one per row.
        """
        if not isinstance(name, str) or name in self.columns:
            raise UsageError(f"Table.add_column({name!r}): pass a new column name (a str)")
        values = data.tolist() if hasattr(data, "tolist") else list(data)
        if len(values) != len(self.data):
            raise UsageError(
                f"Table.add_column({name!r}): {len(values)} values for {len(self.data)} rows"
            )
        self.columns.append(name)
        for row, value in zip(self.data, values, strict=True):
            row.append(value)

    def get_column(self, name: str) -> list[Any]:
        """The values of one column, row by row.

        Raises:
            UsageError: there is no such column.
        """
        if name not in self.columns:
            raise UsageError(f"Table.get_column({name!r}): the columns are {self.columns}")
        index = self.columns.index(name)
        return [row[index] for row in self.data]

    def get_dataframe(self) -> Any:
        """The table as a pandas DataFrame (pandas must be installed)."""
        import pandas

        return pandas.DataFrame(self.data, columns=self.columns)

    def _reference(self, key: str, step: int) -> tuple[dict[str, Any], list[MediaFile]]:
        files: list[MediaFile] = []
        rows = []
        for index, row in enumerate(self.data):
            cells = []
            for column, cell in zip(self.columns, row, strict=True):
                if isinstance(cell, Media):
                    cell_key = media_key([f"{key}_{index}_{column}"])
                    reference, cell_files = cell._reference(cell_key, step)
                    files += cell_files
                    cells.append(reference)
                else:
                    cells.append(cell)
            rows.append(cells)
        try:
            content = orjson.dumps({"columns": self.columns, "data": rows}, default=default)
        except TypeError as exc:
            raise UsageError(
                f"Table logged at {key!r}: a cell cannot be stored ({exc}); cells hold bool, "
                "int, float, str, None, lists and dicts of those, or media values"
            ) from None
        reference, table_files = file_reference(
            "table-file",
            "table",
            key,
            step,
            content,
            "table.json",
            ncols=len(self.columns),
            nrows=len(self.data),
        )
        return reference, files + table_files

    def __repr__(self) -> str:
        return f"<tracker.Table {len(self.data)} rows x {len(self.columns)} columns>"
