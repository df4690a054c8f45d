"""What the local pipeline left behind, in a few lines: data, best model, serving, UI address."""

from __future__ import annotations

import sys

from helper.local_stack import LocalStack
from helper.settings import Settings, load_settings


def _serving_lines(settings: Settings) -> list[str]:
    """Who serves, and what the last promotion decided (if one ran)."""
    import json

    from inference_service.promotion.flow import report_dir
    from inference_service.serving_stack import ServingStack

    lines = []
    st = ServingStack(settings).status().get("state")
    if st:
        canary = st.get("canary")
        split = f", canary v{canary['version']} at {st['canary_percent']} %" if canary else ""
        lines.append(f"served    champion v{st['champion']['version']}{split}")
    last = report_dir(settings) / "last.json"
    if last.is_file():
        report = json.loads(last.read_text(encoding="utf-8"))
        lines.append(
            f"promotion v{report.get('version')}: {report.get('outcome')} ({report.get('reason')})"
        )
    return lines


def summary_lines(settings: Settings) -> list[str]:
    lines = ["", "== pipeline summary =="]
    try:
        from data_platform.lake import latest_manifest

        m = latest_manifest(settings.lake_uri, settings.dataset.name, settings)
        lines.append(
            f"data      {m['version']}: {m['rows_in']} rows in, {m['train_rows']} train, "
            f"{m['test_rows']} test, {m['rejects']['total']} rejected"
        )
    except Exception as exc:  # noqa: BLE001 - a summary reports, it does not fail
        lines.append(f"data      (no ETL output: {exc})")
    if settings.best_run_file.is_file():
        from inference_service.serving_stack import read_best_run

        best = read_best_run(settings.best_run_file)
        lines.append(
            f"model     {best.get('MODEL_NAME')} v{best.get('MODEL_VERSION')} "
            f"{best.get('METRIC_NAME')}={best.get('METRIC_VALUE')} run {best.get('RUN_ID')}"
        )
        lines.append(f"artifact  {best.get('STORAGE_URI')}")
    else:
        lines.append("model     (none registered yet)")
    lines.extend(_serving_lines(settings))
    up = {r["service"]: r["healthy"] for r in LocalStack(settings).status()}
    lines.append(
        f"stack     s3={'up' if up.get('s3') else 'down'} mlflow="
        f"{'up' if up.get('mlflow') else 'down'}"
    )
    lines.append(
        f"serving   http://{settings.serve_host}:{settings.serve_port}"
        f"/v2/models/{settings.registered_model_name}/infer"
    )
    lines.append(f"MLflow UI {settings.tracking_uri}")
    lines.append(
        f"metrics   Prometheus {settings.prometheus_url}, HAProxy stats "
        f"http://127.0.0.1:{settings.proxy_stats_port}/stats"
    )
    return lines


def main() -> int:
    print("\n".join(summary_lines(load_settings())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
