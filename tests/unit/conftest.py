"""Fixtures for unit tests. Each section says which area owns it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# --- ETL (data_platform) ------------------------------------------------------------
# One local SparkSession for the whole session: a JVM in local mode, loopback only, no
# UI, no network service. Starting it costs ~10 s, so every ETL unit test shares it.


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    from data_platform.session import build_spark

    session = build_spark("etl-unit-tests")
    try:
        yield session
    finally:
        session.stop()


# --- end ETL -------------------------------------------------------------------------
