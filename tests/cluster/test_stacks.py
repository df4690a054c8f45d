"""Terraform stacks feed the overlays through one generated file each (platform/stacks).

The committed stack.env must equal what the tfvars and the output expressions produce, every
area overlay deploys to exactly one stack, and changing a stack's file changes every field
that names its bucket or endpoint (a second hand-typed copy would not follow).
"""

from __future__ import annotations

import io
import json
import shutil

import pytest

from helper import stacks, validate
from helper.settings import REPO_ROOT
from tests.cluster.repo_copy import copy_repo

pytestmark = pytest.mark.cluster

ROOTS = sorted(p.name for p in stacks.TF_ENVS.iterdir() if p.is_dir())
# The explicit mapping of the overlays (ENV of the tasks) onto the Terraform stacks.
ENV_STACKS = {"dev": "aws-dev", "prod": "ionos-prod", "canary": "ionos-prod"}


def test_every_terraform_root_is_a_stack_and_back():
    dirs = sorted(p.name for p in stacks.STACKS_DIR.iterdir() if (p / "stack.env").is_file())
    assert dirs == ROOTS


@pytest.mark.parametrize("stack", ROOTS)
def test_committed_stack_env_is_what_terraform_would_output(stack):
    predicted = stacks.predicted_outputs(stack)
    expected = stacks.format_env(stack, stacks.stack_values(predicted))
    committed = stacks.env_file(stack).read_text()
    assert committed == expected, (
        f"platform/stacks/{stack}/stack.env is stale: run "
        f"`python -m helper.stacks write {stack} --from-tfvars` (or task infra:outputs)"
    )


def test_the_prediction_follows_the_tfvars(tmp_path, monkeypatch):
    """Not a constant: change the bucket and the region in a copy and the prediction moves."""
    envs = tmp_path / "terraform" / "envs"
    shutil.copytree(REPO_ROOT / "terraform", tmp_path / "terraform")
    tfvars = envs / "ionos-prod" / "terraform.tfvars"
    text = (
        tfvars.read_text()
        .replace("mlp-prod-platform", "acme-ml")
        .replace('eu-central-3"', 'eu-central-2"')
    )
    tfvars.write_text(text)
    monkeypatch.setattr(stacks, "TF_ENVS", envs)
    monkeypatch.setattr(stacks, "REPO_ROOT", tmp_path)
    assert stacks.predicted_outputs("ionos-prod") == {
        "bucket_name": "acme-ml",
        "s3_endpoint_url": "https://s3.eu-central-2.ionoscloud.com",
        "s3_region": "eu-central-2",
    }


@pytest.mark.parametrize("stack", ROOTS)
def test_terraform_output_json_writes_the_same_file_and_no_secret(stack, tmp_path, monkeypatch):
    """What `task infra:outputs` pipes in; the sensitive kubeconfig output is never written."""
    doc = {
        k: {"sensitive": False, "type": "string", "value": v}
        for k, v in stacks.predicted_outputs(stack).items()
    }
    doc["kubeconfig"] = {"sensitive": True, "type": "string", "value": "token: do-not-write"}
    monkeypatch.setattr(stacks, "STACKS_DIR", tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(doc)))
    (tmp_path / stack).mkdir()
    assert stacks.main(["write", stack]) == 0
    written = (tmp_path / stack / "stack.env").read_text()
    assert written == (REPO_ROOT / "platform/stacks" / stack / "stack.env").read_text()
    assert "do-not-write" not in written


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"bucket_name": "b", "s3_region": "r"}, "s3_endpoint_url"),
        ({"bucket_name": "b", "s3_region": "r", "s3_endpoint_url": "http://s3.x"}, "https://"),
    ],
)
def test_unusable_outputs_are_refused(outputs, message):
    with pytest.raises(stacks.StackError, match=message):
        stacks.stack_values(outputs)


@pytest.mark.parametrize("root", ROOTS)
def test_roots_output_what_the_stack_file_needs(root):
    from tests.cluster.test_terraform import blocks

    assert set(stacks.OUTPUT_KEYS) <= set(blocks(stacks.TF_ENVS / root, "output"))


@pytest.mark.parametrize("env", sorted(ENV_STACKS))
def test_each_env_deploys_every_area_to_one_stack(env):
    assert stacks.stack_for_env(env) == ENV_STACKS[env]


def test_every_area_overlay_lists_exactly_one_stack():
    overlays = [t for t in validate.discover_targets() if "/overlays/" in str(t)]
    assert overlays
    for overlay in overlays:
        assert len(stacks.overlay_stacks(overlay)) == 1, overlay


def test_a_changed_stack_file_changes_every_bucket_and_endpoint_field(tmp_path):
    """One source: rewrite aws-dev's stack.env in a copy; no dev render keeps an old value."""
    root = copy_repo(tmp_path / "repo")
    env = root / "platform/stacks/aws-dev/stack.env"
    values = stacks.parse_env(env.read_text())
    new = {
        "MLP_S3_BUCKET": "acme-bucket",
        "MLP_S3_ENDPOINT_URL": "https://s3.us-west-2.amazonaws.com",
        "MLP_S3_REGION": "us-west-2",
        "S3_HOST": "s3.us-west-2.amazonaws.com",
        "S3_PORT": "443",
    }
    env.write_text(stacks.format_env("aws-dev", new))
    for area in stacks.AREAS:
        text = json.dumps(validate.render(root / area / "k8s/overlays/dev"))
        for key, old in values.items():
            if key != "S3_PORT":
                assert old not in text, (area, key)
        assert "acme-bucket" in text
