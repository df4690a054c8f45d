"""The Markdown view of one run: goals first, then one table per part, then the plots."""

from __future__ import annotations

MET = {True: "met", False: "NOT met", None: "not measured"}


def md_table(columns: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render(doc: dict) -> str:
    m = doc["machine"]
    out = [
        f"# Benchmark run {doc['run_id']}{' (smoke)' if doc['smoke'] else ''}",
        "",
        f"- date: {doc['started_at']} (UTC), duration {doc['duration_s']:.0f} s",
        f"- machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['cpu_model']}; "
        f"load average at start {m['load_avg_at_start']}",
        f"- commit: {doc.get('git_commit') or 'none (uncommitted tree)'}",
        f"- parts: {', '.join(doc['parts'])}",
    ]
    serving = doc["parts"].get("serving")
    if serving:
        out.append(f"- load generator: {serving.get('generator')}")
    out += [
        "",
        "The machine is shared: compare configurations within this run (ratios); absolute",
        "times are indicative only.",
        "",
        "## Goals",
        "",
        md_table(
            ["goal", "target", "measured", "result"],
            [[g["goal"], g["target"], g["measured"], MET[g["met"]]] for g in doc["goals"]],
        ),
    ]
    if doc.get("derived", {}).get("serving_fraction_of_limit"):
        frac = doc["derived"]["serving_fraction_of_limit"]
        out += [
            "",
            "Serving (native, c=1) as a fraction of in-process `inplace_predict` rows/s: "
            + ", ".join(f"{k} {v:.1%}" for k, v in frac.items()),
        ]
    for name, part in doc["parts"].items():
        out += ["", f"## {name}", ""]
        if part.get("error"):
            out.append(f"failed: {part['error']}")
            continue
        if part.get("note"):
            out += [part["note"], ""]
        table = part.get("table")
        if table:
            out.append(md_table(table["columns"], table["rows"]))
    if doc.get("plots"):
        out += ["", "## Plots", ""]
        out += [f"![{p}]({p})" for p in doc["plots"]]
    return "\n".join(out) + "\n"
