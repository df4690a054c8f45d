"""Terraform stacks as the manifests see them: one generated `stack.env` per stack.

Each root under terraform/envs/<stack> provisions a bucket and knows its S3 endpoint. Its
outputs are written, by `task infra:outputs STACK=<stack>` (`terraform output -json` piped
into `write`), to platform/stacks/<stack>/stack.env; the kustomize Component beside it feeds
those values into every overlay that lists it. The keys are settings names (MLP_S3_*), so the
same file also points local clients (`task data:upload STACK=…`) at the stack's bucket.

Before the first apply there are no outputs: `write <stack> --from-tfvars` predicts them from
terraform.tfvars by evaluating the output expressions of the root and its modules (a small
HCL reference resolver, below). Tests require the committed file to equal that prediction.

    terraform -chdir=terraform/envs/aws-dev output -json | python -m helper.stacks write aws-dev
    python -m helper.stacks write aws-dev --from-tfvars
    python -m helper.stacks get --env dev MLP_S3_BUCKET     # the stack the dev overlays deploy to
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import yaml

from helper.atomic import atomic_write
from helper.errors import PlatformError, run_cli

REPO_ROOT = Path(__file__).resolve().parent.parent
TF_ENVS = REPO_ROOT / "terraform" / "envs"
STACKS_DIR = REPO_ROOT / "platform" / "stacks"
AREAS = ("data_platform", "ml_platform", "inference_service")
# The Terraform outputs a stack must have, and the stack.env keys they become.
OUTPUT_KEYS = {
    "bucket_name": "MLP_S3_BUCKET",
    "s3_endpoint_url": "MLP_S3_ENDPOINT_URL",
    "s3_region": "MLP_S3_REGION",
}
HEADER = (
    "# Written by `task infra:outputs STACK={stack}` from `terraform output -json` of "
    "terraform/envs/{stack}.\n"
    "# Not a secret. Do not edit: change the Terraform stack and regenerate"
    " (tests compare the two).\n"
)


class StackError(PlatformError, ValueError):
    """A stack's values are missing or unusable; the message names the fix."""


# --- values ----------------------------------------------------------------------------------


def stack_values(outputs: Mapping[str, str]) -> dict[str, str]:
    """stack.env content from the three outputs; host/port derived, https required."""
    missing = [k for k in OUTPUT_KEYS if not outputs.get(k)]
    if missing:
        raise StackError(f"terraform outputs missing: {', '.join(missing)} (run task infra:apply)")
    values = {env: str(outputs[out]) for out, env in OUTPUT_KEYS.items()}
    url = urlparse(values["MLP_S3_ENDPOINT_URL"])
    if url.scheme != "https" or not url.hostname:
        raise StackError(f"s3_endpoint_url '{url.geturl()}' must be an https:// URL")
    values["S3_HOST"] = url.hostname
    values["S3_PORT"] = str(url.port or 443)
    return values


def outputs_from_json(text: str) -> dict[str, str]:
    """`terraform output -json` -> {name: value} of the outputs a stack needs (never secrets)."""
    try:
        doc = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise StackError(f"not `terraform output -json`: {exc}") from None
    return {k: doc[k]["value"] for k in OUTPUT_KEYS if k in doc and not doc[k].get("sensitive")}


def format_env(stack: str, values: Mapping[str, str]) -> str:
    return HEADER.format(stack=stack) + "".join(f"{k}={v}\n" for k, v in values.items())


def parse_env(text: str) -> dict[str, str]:
    pairs = (ln.split("=", 1) for ln in text.splitlines() if ln.strip() and ln[0] != "#")
    return {k.strip(): v.strip() for k, v in pairs}


def env_file(stack: str) -> Path:
    return STACKS_DIR / stack / "stack.env"


def read_stack(stack: str) -> dict[str, str]:
    path = env_file(stack)
    if not path.is_file():
        raise StackError(f"no stack '{stack}' (no {path.relative_to(REPO_ROOT)})")
    return parse_env(path.read_text(encoding="utf-8"))


def write_stack(stack: str, values: Mapping[str, str]) -> Path:
    if not (TF_ENVS / stack).is_dir():
        raise StackError(f"no Terraform root terraform/envs/{stack}")
    return atomic_write(env_file(stack), format_env(stack, values))


# --- which stack an overlay deploys to -----------------------------------------------------------


def overlay_stacks(overlay: Path) -> list[str]:
    """Stacks named by an overlay's components, following `resources:` into other overlays."""
    doc = yaml.safe_load((overlay / "kustomization.yaml").read_text(encoding="utf-8")) or {}
    found = []
    for comp in doc.get("components") or []:
        path = (overlay / comp).resolve()
        # platform/stacks/<stack> of this checkout or of a test's copy of it
        if path.parent.parts[-2:] == STACKS_DIR.parts[-2:] and (path / "stack.env").is_file():
            found.append(path.name)
    for res in doc.get("resources") or []:
        path = (overlay / res).resolve()
        if (path / "kustomization.yaml").is_file() and "overlays" in path.parts:
            found += overlay_stacks(path)
    return found


def stack_for_env(env: str, root: Path = REPO_ROOT) -> str:
    """The one stack every area's `env` overlay deploys to (ENV=dev|prod of the tasks)."""
    stacks = {
        s
        for area in AREAS
        if (root / area / "k8s" / "overlays" / env).is_dir()
        for s in overlay_stacks(root / area / "k8s" / "overlays" / env)
    }
    if len(stacks) != 1:
        raise StackError(f"ENV={env}: the overlays name stacks {sorted(stacks) or 'none'}, not one")
    return stacks.pop()


# --- predicting the outputs from the Terraform code ----------------------------------------------
# Attributes a provider computes rather than takes as arguments: resource type -> attribute ->
# the argument it equals ("provider.X" = the provider block's X; AWS provider v6 defaults a
# resource's region to it).
COMPUTED = {"aws_s3_bucket": {"id": "bucket", "region": "provider.region"}}
_REF = re.compile(r"\$\{([^}]+)\}")


def _unquote(value: object) -> object:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _load_dir(directory: Path) -> dict[str, list]:
    import hcl2  # dev dependency: only the offline prediction needs it

    merged: dict[str, list] = {}
    for tf in sorted(directory.glob("*.tf")):
        with open(tf, encoding="utf-8") as fh:
            for kind, entries in hcl2.load(fh).items():
                if isinstance(entries, list):
                    merged.setdefault(kind, []).extend(entries)
    return merged


def _named(hcl: dict, kind: str) -> dict[str, dict]:
    return {_unquote(n): body for entry in hcl.get(kind, []) for n, body in entry.items()}


class _Module:
    """One Terraform directory with known input values; evaluates references in it."""

    def __init__(self, directory: Path, inputs: Mapping[str, object], providers: Mapping):
        self.dir, self.hcl = directory, _load_dir(directory)
        defaults = {n: _unquote(b.get("default")) for n, b in _named(self.hcl, "variable").items()}
        self.vars = {**defaults, **inputs}
        self.providers = providers

    def output(self, name: str) -> object:
        outputs = _named(self.hcl, "output")
        if name not in outputs:
            raise StackError(f"{self.dir.relative_to(REPO_ROOT)} has no output '{name}'")
        return self.eval(outputs[name]["value"])

    def eval(self, expr: object) -> object:
        expr = _unquote(expr)
        if not isinstance(expr, str):
            return expr
        whole = _REF.fullmatch(expr)
        if whole:
            return self.ref(whole.group(1))
        return _REF.sub(lambda m: str(self.ref(m.group(1))), expr)

    def ref(self, ref: str) -> object:
        parts = ref.strip().split(".")
        if parts[0] == "var":
            return self.vars[parts[1]]
        if parts[0] == "module":
            return self.module(parts[1]).output(parts[2])
        return self.resource_attr(*parts[:3])

    def module(self, name: str) -> _Module:
        call = _named(self.hcl, "module")[name]
        source = (self.dir / str(_unquote(call["source"]))).resolve()
        skip = {"source", "version", "__is_block__"}
        inputs = {k: self.eval(v) for k, v in call.items() if k not in skip}
        return _Module(source, inputs, self.providers)

    def resource_attr(self, rtype: str, rname: str, attr: str) -> object:
        bodies = [
            body
            for entry in self.hcl.get("resource", [])
            for t, named in entry.items()
            if _unquote(t) == rtype
            for n, body in named.items()
            if _unquote(n) == rname
        ]
        if not bodies:
            raise StackError(f"{self.dir.relative_to(REPO_ROOT)}: no resource {rtype}.{rname}")
        body = bodies[0]
        if attr in body:
            return self.eval(body[attr])
        arg = COMPUTED.get(rtype, {}).get(attr)
        if arg is None:
            raise StackError(f"cannot predict {rtype}.{rname}.{attr} offline")
        if arg.startswith("provider."):
            return self.providers[rtype.split("_", 1)[0]][arg.removeprefix("provider.")]
        return self.eval(body[arg])


def _root(stack: str) -> _Module:
    root_dir = TF_ENVS / stack
    import hcl2

    with open(root_dir / "terraform.tfvars", encoding="utf-8") as fh:
        tfvars = {k: _unquote(v) for k, v in hcl2.load(fh).items() if not k.startswith("__")}
    bare = _Module(root_dir, tfvars, {})
    providers = {
        name: {k: bare.eval(v) for k, v in body.items() if not k.startswith("__")}
        for name, body in _named(bare.hcl, "provider").items()
    }
    return _Module(root_dir, tfvars, providers)


def predicted_outputs(stack: str) -> dict[str, object]:
    """The outputs `terraform apply` would report for the stack, from its .tf and .tfvars."""
    root = _root(stack)
    return {name: root.output(name) for name in OUTPUT_KEYS}


# --- CLI -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    write = sub.add_parser("write", help="write platform/stacks/<stack>/stack.env")
    write.add_argument("stack")
    write.add_argument("--from-tfvars", action="store_true", help="predict (no state needed)")
    get = sub.add_parser("get", help="print one value of a stack")
    who = get.add_mutually_exclusive_group(required=True)
    who.add_argument("--stack")
    who.add_argument("--env", help="the stack the ENV overlays deploy to")
    get.add_argument("key")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "write":
            raw = predicted_outputs(args.stack) if args.from_tfvars else None
            outputs = raw or outputs_from_json(sys.stdin.read())
            path = write_stack(args.stack, stack_values({k: str(v) for k, v in outputs.items()}))
            print(f"stacks: wrote {path}")
        else:
            stack = args.stack or stack_for_env(args.env)
            values = read_stack(stack)
            if args.key not in values:
                raise StackError(f"stack {stack} has no {args.key} (have {sorted(values)})")
            print(values[args.key])
    except StackError as exc:
        print(f"stacks: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main)
