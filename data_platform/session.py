"""The one place a SparkSession is made, for the job and for the tests.

Cluster and laptop differ in configuration only: under `spark-submit` (the Stackable
SparkApplication) the submitter already chose master, resources and the s3a
connection, so we take the session as configured. Run as plain Python we are the
submitter and pick a small, quiet, loopback-only local session.
"""

from __future__ import annotations

import os
from pathlib import Path

from pyspark.sql import SparkSession

LOCAL_MASTER = "local[2]"
_QUIET_LOG4J = Path(__file__).resolve().parent / "conf" / "log4j2-quiet.properties"

# Local mode only. The UI and the public interface are off: other engineers' servers share
# this machine, and nothing should listen beyond 127.0.0.1.
LOCAL_CONF: dict[str, str] = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.default.parallelism": "2",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.extraJavaOptions": f"-Dlog4j.configurationFile=file:{_QUIET_LOG4J}",
}


def launched_by_spark_submit() -> bool:
    """True when a JVM started us (spark-submit sets the gateway port for its Python child)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def sizing_conf(settings=None) -> dict[str, str]:
    """Driver memory and shuffle partitions from the settings object (MLP_SPARK_*)."""
    if settings is None:
        from helper.settings import load_settings

        settings = load_settings()
    from helper.settings import spark_memory_mib

    return {
        "spark.driver.memory": f"{spark_memory_mib(settings.spark_driver_memory)}m",
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
    }


def build_spark(app_name: str = "etl", settings=None) -> SparkSession:
    """The session for this process: the submitter's when submitted, else a local one
    sized from `settings` (default: the environment's)."""
    if launched_by_spark_submit():
        return SparkSession.builder.appName(app_name).getOrCreate()
    # Without this Spark resolves the machine's external address before reading the conf.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.master(LOCAL_MASTER).appName(app_name)
    for key, value in {**LOCAL_CONF, **sizing_conf(settings)}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
