"""terraform/modules/aws-eks-cluster: the inputs of terraform-aws-eks v21 that make volumes work
(read with python-hcl2; `terraform validate` needs the registry, so CI runs it)."""

from __future__ import annotations

import pytest

from tests.cluster.test_terraform import TF_DIR, blocks, load_tf

pytestmark = pytest.mark.cluster

MODULE = TF_DIR / "modules/aws-eks-cluster"


@pytest.fixture(scope="module")
def eks() -> dict:
    return blocks(MODULE, "module")["eks"]


def test_ebs_csi_addon_with_a_pod_identity_role(eks):
    addons = eks["addons"]
    csi = addons["aws-ebs-csi-driver"]
    (assoc,) = csi["pod_identity_association"]
    assert assoc["service_account"] == '"ebs-csi-controller-sa"'
    assert assoc["role_arn"] == "${aws_iam_role.ebs_csi.arn}"
    assert addons["eks-pod-identity-agent"]["before_compute"] is True
    resources = {k: v for r in load_tf(MODULE / "main.tf")["resource"] for k, v in r.items()}
    attachment = resources['"aws_iam_role_policy_attachment"']['"ebs_csi"']
    assert "AmazonEBSCSIDriverPolicy" in attachment["policy_arn"]


def test_root_volume_size_reaches_the_launch_template(eks):
    """disk_size is ignored with the module's custom launch template (docs/faq.md of v21)."""
    group = eks["eks_managed_node_groups"]["default"]
    assert "disk_size" not in group
    ebs = group["block_device_mappings"]["xvda"]["ebs"]
    assert group["block_device_mappings"]["xvda"]["device_name"] == '"/dev/xvda"'
    assert ebs["volume_size"] == "${var.disk_size_gb}"
    assert ebs["encrypted"] is True
