# EKS through the community modules rather than hand-written resources: they carry
# the IAM, security-group and add-on wiring that is easy to get subtly wrong. Both
# are pinned to exact releases; bump them deliberately.

data "aws_region" "current" {}

data "aws_partition" "current" {}

locals {
  azs             = [for z in var.availability_zone_suffixes : "${data.aws_region.current.region}${z}"]
  private_subnets = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 4, i)]
  public_subnets  = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 8, 48 + i)]
  max_size        = var.node_max_count == null ? var.node_count : max(var.node_max_count, var.node_count)
  api_cidrs       = length(var.api_allow_cidrs) > 0 ? var.api_allow_cidrs : ["0.0.0.0/0"]
}

module "vpc" {
  #checkov:skip=CKV_TF_1:Registry module pinned to an exact release (v6.6.0 = commit 82d1929e669efef4e2ad00611b8a68e7a56e049c); registry sources cannot take a commit hash.
  source  = "terraform-aws-modules/vpc/aws"
  version = "6.6.0"

  name = "${var.cluster_name}-vpc"
  cidr = var.vpc_cidr
  azs  = local.azs

  private_subnets = local.private_subnets
  public_subnets  = local.public_subnets

  enable_nat_gateway = true
  single_nat_gateway = true

  public_subnet_tags  = { "kubernetes.io/role/elb" = "1" }
  private_subnet_tags = { "kubernetes.io/role/internal-elb" = "1" }

  tags = var.tags
}

module "eks" {
  #checkov:skip=CKV_TF_1:Registry module pinned to an exact release (v21.19.0 = commit bef29c4d9523523e57fe898643fde2895106b339); registry sources cannot take a commit hash.
  source  = "terraform-aws-modules/eks/aws"
  version = "21.19.0"

  name               = var.cluster_name
  kubernetes_version = var.kubernetes_version

  endpoint_public_access       = true
  endpoint_private_access      = true
  endpoint_public_access_cidrs = local.api_cidrs

  enable_cluster_creator_admin_permissions = true

  addons = {
    coredns                = {}
    kube-proxy             = {}
    eks-pod-identity-agent = { before_compute = true }
    vpc-cni                = { before_compute = true }
    # Persistent volumes (the MLflow PVC): the EBS CSI driver, its controller authorised through
    # EKS Pod Identity (the agent above). platform/k8s/aws adds the default gp3 StorageClass.
    aws-ebs-csi-driver = {
      pod_identity_association = [{
        role_arn        = aws_iam_role.ebs_csi.arn
        service_account = "ebs-csi-controller-sa"
      }]
    }
  }

  vpc_id     = module.vpc.vpc_id
  subnet_ids = module.vpc.private_subnets

  eks_managed_node_groups = {
    default = {
      instance_types = [var.instance_type]
      ami_type       = "AL2023_x86_64_STANDARD"
      capacity_type  = var.capacity_type
      min_size       = var.node_count
      max_size       = local.max_size
      desired_size   = var.node_count
      labels         = var.labels

      # The module's own launch template ignores `disk_size` (docs/faq.md of v21): size the
      # root volume of the AL2023 AMI (/dev/xvda) here instead.
      block_device_mappings = {
        xvda = {
          device_name = "/dev/xvda"
          ebs = {
            volume_size           = var.disk_size_gb
            volume_type           = "gp3"
            encrypted             = true
            delete_on_termination = true
          }
        }
      }
    }
  }

  tags = var.tags
}

# The EBS CSI controller's identity: EKS Pod Identity assumes this role for the add-on's
# service account (kube-system/ebs-csi-controller-sa) and it may manage EBS volumes only.
data "aws_iam_policy_document" "ebs_csi_trust" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]

    principals {
      type        = "Service"
      identifiers = ["pods.eks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "ebs_csi" {
  name_prefix        = "${substr(var.cluster_name, 0, 20)}-ebs-csi-" # IAM allows 38 characters
  assume_role_policy = data.aws_iam_policy_document.ebs_csi_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "ebs_csi" {
  role       = aws_iam_role.ebs_csi.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
}
