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


# --- all unit tests -------------------------------------------------------------------
# Library calls under test may export settings into os.environ (model_loader mirrors the S3
# settings for MLflow's client, tracking exports its HTTP retry budget). Unit tests must not
# leave that behind: integration tests later in the same session start stacks whose settings
# would otherwise lose to a leaked AWS_ENDPOINT_URL of the default local ports.


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    import os

    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
