"""terraform/ verified offline as deeply as the tools allow.

No provider registry is reachable here, so `terraform init/validate` run in CI only.
What is checked here: formatting, checkov (zero failed checks, every skip explained),
the module contract (typed + described variables, described outputs, enums validated,
pinned providers, the shared IONOS/AWS interface), that roots only pass arguments their
modules declare, and that no state, plan or backend secret can reach git. Each checker
is also shown to reject a deliberately bad snippet.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import hcl2
import pytest

from helper.settings import REPO_ROOT

pytestmark = pytest.mark.cluster

TF_DIR = REPO_ROOT / "terraform"
MODULES = sorted(p for p in (TF_DIR / "modules").iterdir() if p.is_dir())
ROOTS = sorted(p for p in (TF_DIR / "envs").iterdir() if p.is_dir())
CHECKOV = ["uvx", "checkov==3.3.30"]  # own tool env: checkov's pins clash with ray's

CLUSTER_OUTPUTS = {"cluster_id", "cluster_name", "endpoint", "kubeconfig"}
BUCKET_OUTPUTS = {"bucket_name", "bucket_uri", "s3_endpoint_url", "region"}
ENUMS = {
    "ionos-k8s-cluster": [
        "location",
        "cpu_family",
        "storage_type",
        "availability_zone",
        "maintenance_day",
    ],
    "ionos-s3-bucket": ["region"],
    "aws-eks-cluster": ["capacity_type"],
}


# --- HCL helpers (python-hcl2 keeps the quotes of labels and string literals) -----


def _unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load_tf(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return hcl2.load(fh)


def blocks(directory: Path, kind: str) -> dict[str, dict]:
    """name -> body of every `kind` block (variable, output, module...) in a directory."""
    found: dict[str, dict] = {}
    for tf in sorted(directory.glob("*.tf")):
        for entry in load_tf(tf).get(kind, []):
            for name, body in entry.items():
                found[_unquote(name)] = body
    return found


def interface_problems(directory: Path) -> list[str]:
    """Variables without type/description and outputs without description, by name."""
    problems = []
    for name, body in blocks(directory, "variable").items():
        if "type" not in body:
            problems.append(f"{directory.name}: variable {name} has no type")
        if not str(_unquote(body.get("description", ""))).strip():
            problems.append(f"{directory.name}: variable {name} has no description")
    for name, body in blocks(directory, "output").items():
        if not str(_unquote(body.get("description", ""))).strip():
            problems.append(f"{directory.name}: output {name} has no description")
    return problems


def terraform_blocks(directory: Path) -> list[dict]:
    return [t for tf in sorted(directory.glob("*.tf")) for t in load_tf(tf).get("terraform", [])]


def start_checkov(directory: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *CHECKOV,
            "-d",
            str(directory),
            "--framework",
            "terraform",
            "--skip-download",
            "-o",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def checkov_report(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=600)
    assert out.strip(), f"checkov printed no report: {err[-2000:]}"
    report = json.loads(out)
    return report[0] if isinstance(report, list) else report


INSECURE_BUCKET = (
    'resource "aws_s3_bucket" "open" {\n  bucket = "wide-open"\n}\n\n'
    'resource "aws_s3_bucket_acl" "open" {\n'
    "  bucket = aws_s3_bucket.open.id\n"
    '  acl    = "public-read-write"\n}\n'
)


@pytest.fixture(scope="module")
def checkov_reports(tmp_path_factory) -> dict[str, dict]:
    """checkov over terraform/ and over a deliberately insecure snippet, run in parallel
    (each scan costs ~15-25 s here, mostly start-up)."""
    bad = tmp_path_factory.mktemp("insecure")
    (bad / "main.tf").write_text(INSECURE_BUCKET)
    procs = {"repo": start_checkov(TF_DIR), "insecure": start_checkov(bad)}
    return {name: checkov_report(proc) for name, proc in procs.items()}


# --- formatting -------------------------------------------------------------------


def _fmt_check(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-diff", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_terraform_fmt_is_clean():
    proc = _fmt_check(TF_DIR)
    assert proc.returncode == 0, f"run `task infra:fmt`:\n{proc.stdout}"


def test_fmt_check_rejects_badly_formatted_code(tmp_path):
    (tmp_path / "main.tf").write_text('variable "x" {\ntype=string\n  description="d"\n}\n')
    assert _fmt_check(tmp_path).returncode != 0


# --- checkov ----------------------------------------------------------------------


@pytest.mark.slow
def test_checkov_finds_no_failed_checks_and_every_skip_is_explained(checkov_reports):
    report = checkov_reports["repo"]
    summary, results = report["summary"], report["results"]
    failed = [(c["check_id"], c["resource"]) for c in results["failed_checks"]]
    assert failed == [], f"fix or skip with #checkov:skip=ID:reason: {failed}"
    assert summary["parsing_errors"] == 0
    assert summary["passed"] >= 20, "checkov scanned suspiciously little"
    unexplained = [
        (c["check_id"], c["resource"])
        for c in results["skipped_checks"]
        if len((c["check_result"].get("suppress_comment") or "").strip()) < 20
    ]
    assert unexplained == [], f"skips need a reason: {unexplained}"


@pytest.mark.slow
def test_checkov_rejects_an_insecure_bucket(checkov_reports):
    failed_ids = {c["check_id"] for c in checkov_reports["insecure"]["results"]["failed_checks"]}
    assert {"CKV_AWS_21", "CKV2_AWS_6"} <= failed_ids  # no versioning, no public access block


# --- module contract --------------------------------------------------------------


@pytest.mark.parametrize("directory", MODULES + ROOTS, ids=lambda p: p.name)
def test_variables_typed_and_described_outputs_described(directory):
    assert interface_problems(directory) == []


def test_interface_checker_rejects_a_bad_snippet(tmp_path):
    (tmp_path / "variables.tf").write_text(
        'variable "untyped" {\n  description = "has a description"\n}\n\n'
        'variable "undocumented" {\n  type = string\n}\n'
    )
    (tmp_path / "outputs.tf").write_text('output "silent" {\n  value = 1\n}\n')
    assert interface_problems(tmp_path) == [
        f"{tmp_path.name}: variable untyped has no type",
        f"{tmp_path.name}: variable undocumented has no description",
        f"{tmp_path.name}: output silent has no description",
    ]


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_module_has_standard_structure(module):
    expected = {"main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"}
    assert expected <= {p.name for p in module.iterdir()}


@pytest.mark.parametrize(("module", "names"), ENUMS.items())
def test_enum_variables_are_validated(module, names):
    variables = blocks(TF_DIR / "modules" / module, "variable")
    for name in names:
        conditions = [v["condition"] for v in variables[name].get("validation", [])]
        assert any("contains(" in c for c in conditions), f"{module}.{name} needs contains([...])"


@pytest.mark.parametrize("directory", MODULES + ROOTS, ids=lambda p: p.name)
def test_terraform_and_providers_are_pinned(directory):
    settings = terraform_blocks(directory)
    assert any(_unquote(t.get("required_version", "")).startswith(">= 1.11") for t in settings)
    providers = {
        name: spec
        for t in settings
        for entry in t.get("required_providers", [])
        for name, spec in entry.items()
        if not name.startswith("__")
    }
    assert providers, "required_providers missing"
    for name, spec in providers.items():
        assert _unquote(spec.get("source", "")).count("/") == 1, f"{name}: source not pinned"
        assert _unquote(spec.get("version", "")).startswith("~>"), f"{name}: version not pinned"


@pytest.mark.parametrize("root", ROOTS, ids=lambda p: p.name)
def test_roots_use_partial_s3_backend_with_native_locking(root):
    backends = [b for t in terraform_blocks(root) for b in t.get("backend", [])]
    assert len(backends) == 1
    ((kind, body),) = backends[0].items()
    assert _unquote(kind) == "s3"
    assert body.get("use_lockfile") is True
    assert not {"bucket", "key", "access_key", "secret_key"} & set(body), "belongs in backend.hcl"
    assert (root / "backend.hcl.example").is_file()
    example = (root / "backend.hcl.example").read_text()
    assert "access_key" not in example and "secret_key" not in example


@pytest.mark.parametrize("root", ROOTS, ids=lambda p: p.name)
def test_roots_pass_only_declared_arguments_and_all_required_ones(root):
    """What `terraform validate` would catch about module calls, without a registry."""
    for call, body in blocks(root, "module").items():
        source = root / _unquote(body["source"])
        declared = blocks(source, "variable")
        passed = {k for k in body if k not in {"source", "version", "__is_block__"}}
        assert passed <= set(declared), f"{root.name}.{call}: unknown {passed - set(declared)}"
        required = {n for n, v in declared.items() if "default" not in v}
        assert required <= passed, f"{root.name}.{call}: missing {required - passed}"


@pytest.mark.parametrize(
    ("ionos", "aws", "outputs"),
    [
        ("ionos-k8s-cluster", "aws-eks-cluster", CLUSTER_OUTPUTS),
        ("ionos-s3-bucket", "aws-s3-bucket", BUCKET_OUTPUTS),
    ],
)
def test_ionos_and_aws_modules_share_one_interface(ionos, aws, outputs):
    a, b = TF_DIR / "modules" / ionos, TF_DIR / "modules" / aws

    def required(d: Path) -> set[str]:
        return {n for n, v in blocks(d, "variable").items() if "default" not in v}

    assert required(a) == required(b)
    assert outputs <= set(blocks(a, "output")) and outputs <= set(blocks(b, "output"))
    if "kubeconfig" in outputs:
        assert blocks(a, "output")["kubeconfig"].get("sensitive") is True
        assert blocks(b, "output")["kubeconfig"].get("sensitive") is True


# --- nothing generated or secret in git -------------------------------------------


def _would_commit() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "terraform"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.splitlines()


def _is_generated(path: str) -> bool:
    name = Path(path).name
    return (
        ".terraform/" in path
        or ".tfstate" in name
        or name.endswith((".tfplan", "_override.tf"))
        or name in {"tfplan", "backend.hcl", "crash.log"}
    )


def test_no_state_plan_or_backend_config_would_be_committed():
    assert [f for f in _would_commit() if _is_generated(f)] == []


def test_gitignore_keeps_generated_terraform_files_out():
    probes = [
        "terraform/envs/ionos-prod/.terraform/providers/x",
        "terraform/envs/ionos-prod/terraform.tfstate",
        "terraform/envs/ionos-prod/terraform.tfstate.backup",
        "terraform/envs/ionos-prod/prod.tfplan",
        "terraform/envs/ionos-prod/backend.hcl",
        "terraform/envs/ionos-prod/backend_override.tf",
    ]
    ignored = subprocess.run(
        ["git", "check-ignore", *probes], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.split()
    assert sorted(ignored) == sorted(probes)
    assert all(_is_generated(p) for p in probes)  # the detector above knows them too


@pytest.mark.parametrize("root", ROOTS, ids=lambda p: p.name)
def test_lock_file_is_real_or_its_production_documented(root):
    """A committed lock file must hold provider hashes; without one the README says how."""
    lock = root / ".terraform.lock.hcl"
    if lock.exists():
        assert "h1:" in lock.read_text(), f"{lock} has no provider hashes"
    else:
        assert "terraform providers lock" in (root / "README.md").read_text()


# --- the task entry points refuse to run half-configured ---------------------------


UUID = "3f0c8f43-1b1e-4f55-9d0b-5c3d1c2f7a10"


@pytest.mark.parametrize(
    ("args", "extra_env", "message"),
    [
        (["infra:plan"], {}, "IONOS_TOKEN is not set"),
        (["infra:plan"], {"IONOS_TOKEN": "x"}, "IONOS_S3_ACCESS_KEY / IONOS_S3_SECRET_KEY"),
        (["infra:plan", "STACK=aws-dev"], {}, "No AWS credentials"),
        (["infra:plan", "STACK=aws-dev"], {"AWS_PROFILE": "p"}, "aws-dev/backend.hcl is missing"),
        (["infra:apply", "STACK=bogus"], {}, "no root at terraform/envs/bogus"),
        (["infra:kubeconfig", f"CLUSTER_ID={UUID}"], {}, "IONOS_TOKEN is not set"),
    ],
)
def test_tasks_fail_fast_with_a_clear_message(args, extra_env, message):
    task = Path(sys.executable).parent / "task"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IONOS_", "AWS_", "MLP_IONOS_")) and k not in {"ENV", "STACK"}
    }
    proc = subprocess.run(
        [str(task), *args],
        cwd=REPO_ROOT,
        env={**env, **extra_env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


# --- validation blocks, evaluated by terraform itself -------------------------------
# A directory holding only a module's variables.tf needs no provider, so `terraform plan`
# runs offline and evaluates every validation block against the given values.

REQUIRED = {
    "ionos-k8s-cluster": {
        "cluster_name": "mlp-prod",
        "kubernetes_version": "1.32",
        "node_count": 3,
        "api_allow_cidrs": ["203.0.113.0/24"],
    },
    "aws-eks-cluster": {
        "cluster_name": "mlp-dev",
        "kubernetes_version": "1.33",
        "node_count": 2,
        "api_allow_cidrs": [],
    },
    "ionos-s3-bucket": {"bucket_name": "mlp-prod-platform"},
    "aws-s3-bucket": {"bucket_name": "mlp-dev-platform"},
}


def plan_variables(module: str, values: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    shutil.copy(TF_DIR / "modules" / module / "variables.tf", tmp_path / "variables.tf")
    (tmp_path / "terraform.tfvars.json").write_text(json.dumps(values))
    return subprocess.run(
        ["terraform", "plan", "-input=false", "-lock=false", "-no-color"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("module", sorted(REQUIRED))
def test_required_values_and_defaults_pass_validation(module, tmp_path):
    proc = plan_variables(module, REQUIRED[module], tmp_path)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("root", ROOTS, ids=lambda p: p.name)
def test_committed_tfvars_pass_the_roots_validation(root, tmp_path):
    for name in ("variables.tf", "terraform.tfvars"):
        shutil.copy(root / name, tmp_path / name)
    proc = subprocess.run(
        ["terraform", "plan", "-input=false", "-lock=false", "-no-color"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("module", "name", "value", "message"),
    [
        ("ionos-k8s-cluster", "location", "mars/base", "location must be one of"),
        ("ionos-k8s-cluster", "cpu_family", "Z80", "cpu_family must be one of"),
        ("ionos-k8s-cluster", "cluster_name", "Bad_Name", "cluster_name must be"),
        ("ionos-k8s-cluster", "node_ram_mb", 3000, "node_ram_mb must be at least"),
        ("ionos-k8s-cluster", "node_count", 0, "node_count must be a whole"),
        ("ionos-k8s-cluster", "api_allow_cidrs", ["1.2.3.4/99"], "api_allow_cidrs must"),
        ("aws-eks-cluster", "capacity_type", "CHEAP", "capacity_type must be"),
        ("aws-eks-cluster", "kubernetes_version", "1.33.1", "kubernetes_version must"),
        ("aws-eks-cluster", "availability_zone_suffixes", ["a"], "availability_zone_suffixes"),
        ("ionos-s3-bucket", "region", "us-west-9", "region must be one of"),
        ("aws-s3-bucket", "bucket_name", "UPPER_case", "bucket_name must be"),
        ("aws-s3-bucket", "kms_deletion_window_days", 3, "kms_deletion_window_days must"),
    ],
)
def test_validation_rejects_bad_values(module, name, value, message, tmp_path):
    proc = plan_variables(module, {**REQUIRED[module], name: value}, tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr
