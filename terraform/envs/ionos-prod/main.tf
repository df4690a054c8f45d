# Production on IONOS Cloud: one managed cluster with an autoscaling node pool and
# one bucket that holds the lake, the MLflow artifacts and this root's state.

module "cluster" {
  source = "../../modules/ionos-k8s-cluster"

  cluster_name       = var.cluster_name
  kubernetes_version = var.kubernetes_version
  node_count         = var.node_count
  node_max_count     = var.node_max_count
  api_allow_cidrs    = var.api_allow_cidrs
  location           = var.location
  labels             = { "platform" = "ml", "env" = "prod" }
}

module "bucket" {
  source = "../../modules/ionos-s3-bucket"

  bucket_name = var.bucket_name
  region      = var.s3_region
}
