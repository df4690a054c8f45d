output "cluster_id" {
  description = "Cluster identifier: pass it to `aws eks update-kubeconfig --name`."
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
  description = "Regional S3 endpoint (MLP_S3_ENDPOINT_URL may stay empty on AWS)."
  value       = module.bucket.s3_endpoint_url
}

output "region" {
  description = "AWS region of the cluster (task infra:kubeconfig passes it to aws eks update-kubeconfig)."
  value       = var.region
}

output "s3_region" {
  description = "Region of the bucket (MLP_S3_REGION; platform/stacks/aws-dev/stack.env)."
  value       = module.bucket.region
}
