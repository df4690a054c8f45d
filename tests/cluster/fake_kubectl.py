"""A stand-in `kubectl` for running the cluster tasks offline (tests put it first on PATH).

Every call is appended to $FAKE_KUBECTL_LOG as one JSON line ({"argv": [...], "stdin": ...}).
`kustomize` runs the real kubectl ($REAL_KUBECTL) so renders are real. Answers come from
$FAKE_KUBECTL_SCRIPT (JSON): "answers" maps the space-joined argv to stdout, "fail" lists argv
prefixes that exit 1 as NotFound. `wait` always times out, as a real one does when the
condition never comes. Everything else succeeds silently; `create … -o yaml` prints a stub.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def main(argv: list[str]) -> int:
    script = json.loads(os.environ.get("FAKE_KUBECTL_SCRIPT", "{}"))
    stdin = None if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    joined = " ".join(argv)
    with open(os.environ["FAKE_KUBECTL_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"argv": argv, "stdin": stdin}) + "\n")
    if argv[:1] == ["kustomize"]:
        return subprocess.run([os.environ["REAL_KUBECTL"], *argv], check=False).returncode
    if any(joined.startswith(prefix) for prefix in script.get("fail", [])):
        print(f'Error from server (NotFound): "{joined}" not found', file=sys.stderr)
        return 1
    if joined in script.get("answers", {}):
        sys.stdout.write(script["answers"][joined])
        return 0
    if argv[:1] == ["wait"]:
        print("error: timed out waiting for the condition", file=sys.stderr)
        return 1
    if argv[:1] == ["create"] and "yaml" in argv:
        print("apiVersion: v1\nkind: Secret\nmetadata:\n  name: stub\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
