"""Spark types as the Arrow type strings the pandas engine reports, so both engines show
identical schemas in snapshots, metadata and stories."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql.types import DataType

__all__ = ["arrow_type_string"]


def arrow_type_string(dt: DataType) -> str:
    """The Arrow type string the pandas engine reports for a column of Spark type ``dt``.

    Integers map to ``int64`` and floats to ``double`` because that is what the pandas
    engine shows for the same data (Spark's CSV inference picks ``int`` where pandas picks
    ``int64``); both engines then report identical schemas.
    """
    from pyspark.sql import types as T

    simple = (
        (T.ByteType | T.ShortType | T.IntegerType | T.LongType, "int64"),
        (T.FloatType | T.DoubleType, "double"),
        (T.StringType | T.VarcharType | T.CharType, "string"),
        (T.BooleanType, "bool"),
        (T.DateType, "date32[day]"),
        (T.TimestampType | T.TimestampNTZType, "timestamp[us]"),
        (T.BinaryType, "binary"),
        (T.NullType, "null"),
        (T.DayTimeIntervalType, "duration[us]"),
    )
    for types, name in simple:
        if isinstance(dt, types):
            return name
    if isinstance(dt, T.DecimalType):
        return f"decimal128({dt.precision}, {dt.scale})"
    if isinstance(dt, T.ArrayType):
        return f"list<item: {arrow_type_string(dt.elementType)}>"
    if isinstance(dt, T.MapType):
        return f"map<{arrow_type_string(dt.keyType)}, {arrow_type_string(dt.valueType)}>"
    if isinstance(dt, T.StructType):
        inner = ", ".join(f"{f.name}: {arrow_type_string(f.dataType)}" for f in dt.fields)
        return f"struct<{inner}>"
    return dt.simpleString()
