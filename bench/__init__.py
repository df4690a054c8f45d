"""`task bench`: side-by-side figures for serving, the in-process limit, ETL, tuning and the
whole pipeline, measured in one run on one machine.

The machine is shared and noisy, so every part reports ratios between configurations that
ran one after another in the same run; absolute times are only indicative. Each part is a
module with `run(ctx) -> dict`; `bench.runner` collects them into one JSON document, a
Markdown table and PNG plots under `bench/results/`.
"""
