"""The reasons a raw line is rejected, defined once.

`data_platform.transforms` gives a rejected line the first of these that applies, in this
order; `data_platform.make_raw` generates one kind of malformed line per reason, and the
tests and the ETL baseline check against the same list. A module of its own (no Spark
import) so that generating raw data does not load PySpark.
"""

from __future__ import annotations

# Checked in this order; a line gets the first that applies.
REASONS: tuple[str, ...] = (
    "blank_line",
    "duplicate_header",
    "wrong_column_count",
    "missing_value",
    "non_numeric",
    "non_finite",
    "unknown_class",
)
