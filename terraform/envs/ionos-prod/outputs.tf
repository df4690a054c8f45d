output "cluster_id" {
  description = "Cluster identifier: pass it to `task infra:kubeconfig` / ops/get_k8s_config.py --cluster-id."
  value       = module.cluster.cluster_id
}

output "endpoint" {
  description = "HTTPS URL of the Kubernetes API server."
  value       = module.cluster.endpoint
}

output "kubeconfig" {
  description = "Admin kubeconfig (sensitive; read with `terraform output -raw kubeconfig`)."
  value       = module.cluster.kubeconfig
  sensitive   = true
}

output "bucket_name" {
  description = "Name of the platform bucket."
  value       = module.bucket.bucket_name
}

output "bucket_uri" {
  description = "s3:// URI of the platform bucket."
  value       = module.bucket.bucket_uri
}

output "s3_endpoint_url" {
  description = "S3 endpoint for MLP_S3_ENDPOINT_URL / MLFLOW_S3_ENDPOINT_URL."
  value       = module.bucket.s3_endpoint_url
}

output "s3_region" {
  description = "Object Storage region of the bucket (MLP_S3_REGION; platform/stacks/ionos-prod/stack.env)."
  value       = module.bucket.region
}
