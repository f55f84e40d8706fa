"""Column checks shared by the callables (each batch) and the dataset helpers (the schema, in the driver)."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa


def check_column_arguments(inputs: Mapping[str, object], outputs: Mapping[str, object]) -> None:
    """Column names are strings (an output may be None: its default); no output reuses an input or another output."""
    for name, value in {**inputs, **outputs}.items():
        if not (isinstance(value, str) or (value is None and name in outputs)):
            raise TypeError(f"{name} must be a column name (str), got {type(value).__name__}.")
    taken: dict[object, str] = {value: f"input {name}" for name, value in inputs.items()}
    for name, value in outputs.items():
        if value is not None and value in taken:
            raise ValueError(
                f"{name}={value!r} is also the {taken[value]}; give the {name.removesuffix('_column')} column another "
                "name."
            )
        taken[value] = name


def check_batch(owner: str, batch: object, columns: dict[str, str]) -> dict[str, str]:
    """Raise unless ``batch`` is a pyarrow table with the input columns, typed right and without nulls.

    Returns the shape (``"string"`` or ``"list"``) of each input column, keyed by parameter name.
    """
    if not isinstance(batch, pa.Table):
        raise TypeError(
            f"{owner} takes pyarrow batches, got {type(batch).__name__}: pass batch_format='pyarrow' to "
            "map_batches (numpy batches turn list columns into pickled objects)."
        )
    shapes = {}
    for parameter, column in columns.items():
        if column not in batch.column_names:
            raise ValueError(missing_column(parameter, column, batch.column_names))
        shapes[parameter] = column_shape(parameter, column, batch.schema.field(column).type)
        nulls = batch.column(column).null_count
        if nulls:
            raise ValueError(
                f"{parameter}={column!r} has {nulls} null value(s) in this batch; drop or fill them first, "
                f"e.g. ds.filter(expr=ray.data.expressions.col({column!r}).is_not_null())."
            )
    return shapes


def score_column(output_column: str | None, documents_shape: str) -> str:
    """The reranker's output column: as given, else ``"score"`` for one document per row, ``"scores"`` for lists."""
    return output_column or ("score" if documents_shape == "string" else "scores")


def column_shape(parameter: str, column: str, column_type: pa.DataType) -> str:
    """``"string"``, or ``"list"`` (``documents_column`` only): a ``TypeError`` naming the column otherwise."""
    shape = documents_shape(column_type)
    if parameter == "documents_column" and shape is None:
        raise TypeError(
            f"documents_column={column!r} holds {column_type}; it must hold strings (one document per row) "
            "or lists of strings (candidate documents per row)."
        )
    if parameter != "documents_column" and shape != "string":
        raise TypeError(f"{parameter}={column!r} holds {column_type}; it must hold strings.")
    return shape


def documents_shape(column_type: pa.DataType) -> str | None:
    """``"string"`` for a string column, ``"list"`` for a list of strings (or of nulls: all lists empty), else None."""
    if pa.types.is_string(column_type) or pa.types.is_large_string(column_type):
        return "string"
    is_list = pa.types.is_list(column_type) or pa.types.is_large_list(column_type)
    if is_list or pa.types.is_fixed_size_list(column_type):
        value_type = column_type.value_type
        if pa.types.is_string(value_type) or pa.types.is_large_string(value_type) or pa.types.is_null(value_type):
            return "list"
    return None


def missing_column(parameter: str, column: str, names: list[str]) -> str:
    return f"{parameter}={column!r} is not a column of the dataset; its columns are {names}."


def check_output_column(column: str | None, names: list[str], parameter: str = "output_column") -> None:
    if column is not None and column in names:
        raise ValueError(
            f"{parameter}={column!r} is already a column of the dataset; pass another {parameter}, or drop "
            f"it first with ds.drop_columns([{column!r}])."
        )
