# A development environment on AWS with the same interface as ionos-prod: one EKS
# cluster and one bucket for the lake, the MLflow artifacts and this root's state.

module "cluster" {
  source = "../../modules/aws-eks-cluster"

  cluster_name       = var.cluster_name
  kubernetes_version = var.kubernetes_version
  node_count         = var.node_count
  node_max_count     = var.node_max_count
  api_allow_cidrs    = var.api_allow_cidrs
  capacity_type      = var.capacity_type
  labels             = { "platform" = "ml", "env" = "dev" }
}

module "bucket" {
  source = "../../modules/aws-s3-bucket"

  bucket_name = var.bucket_name
}
