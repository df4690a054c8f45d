"""What the local pipeline left behind, in a few lines: data, best model, serving, UI address."""

from __future__ import annotations

from helper.errors import run_cli
from helper.settings import Settings, load_settings
from ops import figures
from ops.local_stack import LocalStack


def _figure(label: str, figure, settings: Settings) -> str:
    try:
        return f"{label:<10}{figure(settings, None, 0.0) or '(none yet)'}"
    except Exception as exc:  # noqa: BLE001 - a summary reports, it does not fail
        return f"{label:<10}(unknown: {exc})"


def summary_lines(settings: Settings) -> list[str]:
    lines = ["", "== pipeline summary ==", _figure("data", figures.etl_figure, settings)]
    if settings.best_run_file.is_file():
        from helper.best_run import read_best_run

        best = read_best_run(settings.best_run_file)
        lines.append(
            f"model     {best.get('MODEL_NAME')} v{best.get('MODEL_VERSION')} "
            f"{best.get('METRIC_NAME')}={best.get('METRIC_VALUE')} run {best.get('RUN_ID')}"
        )
        lines.append(f"artifact  {best.get('STORAGE_URI')}")
    else:
        lines.append("model     (none registered yet)")
    lines.append(_figure("served", figures.serve_figure, settings))
    lines.append(_figure("promotion", figures.last_promotion, settings))
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
    run_cli(main)
