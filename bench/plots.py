"""PNG plots of one run (matplotlib, Agg backend: no display on servers and CI)."""

from __future__ import annotations

from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _measured(serving: dict) -> tuple[dict, list[str]]:
    """The serving configurations that measured any case, and the case names in order."""
    configs = {k: v for k, v in serving.get("configs", {}).items() if v.get("cases")}
    return configs, [c["name"] for c in serving.get("cases", [])]


def serving_latency(serving: dict, path: Path) -> Path | None:
    """Latency percentile curves, one panel per case, one line per configuration."""
    configs, cases = _measured(serving)
    if not configs:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(cases), figsize=(4 * len(cases), 3.6), squeeze=False)
    for ax, case in zip(axes[0], cases, strict=True):
        for cfg, res in configs.items():
            row = res["cases"].get(case)
            if row:
                pct = row["percentiles_ms"]
                ax.plot([p for p, _ in pct], [ms for _, ms in pct], marker=".", label=cfg)
        ax.set_title(case)
        ax.set_xlabel("percentile")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("latency (ms, log)")
    axes[0][0].legend()
    fig.suptitle(f"serving latency distribution ({serving.get('generator')})")
    return _save(plt, fig, path)


def serving_throughput(serving: dict, path: Path) -> Path | None:
    configs, cases = _measured(serving)
    if not configs:
        return None
    plt = _plt()
    width = 0.8 / len(configs)
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, (cfg, res) in enumerate(configs.items()):
        values = [res["cases"].get(c, {}).get("rps", 0) for c in cases]
        xs = [j + i * width for j in range(len(cases))]
        bars = ax.bar(xs, values, width, label=cfg)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks([j + width * (len(configs) - 1) / 2 for j in range(len(cases))], cases)
    ax.set_ylabel("requests/s (log)")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("serving throughput per configuration")
    return _save(plt, fig, path)


def etl_scaling(etl: dict, path: Path) -> Path | None:
    sizes = etl.get("sizes", [])
    if not sizes:
        return None
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for engine in ("spark", "pyarrow"):
        pts = [(s["rows"], s[engine]) for s in sizes if s.get(engine, {}).get("ok")]
        if not pts:
            continue
        a1.plot([r for r, _ in pts], [e["us_per_row"] for _, e in pts], marker="o", label=engine)
        a2.plot([r for r, _ in pts], [e["rows_per_s"] for _, e in pts], marker="o", label=engine)
        job = [(r, e["job_us_per_row"]) for r, e in pts if e.get("job_us_per_row")]
        if job:
            xs, ys = [r for r, _ in job], [y for _, y in job]
            a1.plot(xs, ys, linestyle="--", marker="x", label=f"{engine} in-job")
    for ax, label in ((a1, "cost per row (us; solid: wall incl. start-up)"), (a2, "rows/s")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("raw rows")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("ETL scaling: Spark job vs single-process pyarrow")
    return _save(plt, fig, path)


def tuning_curves(tuning: dict, path: Path) -> Path | None:
    searches = tuning.get("searches", {})
    if not searches:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, s in searches.items():
        curve = s.get("best_so_far", [])
        if curve:
            ax.step([t for t, _ in curve], [a for _, a in curve], where="post", marker=".",
                    label=f"{name}: {s.get('label', '')}")  # fmt: skip
    ax.set_xlabel("wall-clock seconds since the search started")
    ax.set_ylabel("best validation accuracy so far")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"tuning on {tuning.get('dataset', 'digits')}: best-so-far")
    return _save(plt, fig, path)


def make_all(doc: dict, out_dir: Path) -> list[str]:
    """Every plot the run's parts allow; returns file names relative to `out_dir`."""
    parts = doc["parts"]
    made = []
    jobs = (
        ("serving", serving_latency, "serving_latency.png"),
        ("serving", serving_throughput, "serving_throughput.png"),
        ("etl", etl_scaling, "etl_scaling.png"),
        ("tuning", tuning_curves, "tuning_best_so_far.png"),
    )
    for part, fn, name in jobs:
        if part in parts and not parts[part].get("error"):
            path = fn(parts[part], out_dir / name)
            if path is not None:
                made.append(name)
    return made
