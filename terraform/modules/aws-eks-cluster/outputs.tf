# --- shared cluster interface (same names as modules/ionos-k8s-cluster) ---------------

output "cluster_id" {
  description = "Name of the EKS cluster (EKS identifies clusters by name; `aws eks update-kubeconfig --name` takes it)."
  value       = module.eks.cluster_name
}

output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = module.eks.cluster_name
}

output "endpoint" {
  description = "HTTPS URL of the Kubernetes API server."
  value       = module.eks.cluster_endpoint
}

output "kubeconfig" {
  description = "kubeconfig that authenticates through `aws eks get-token` (no long-lived secret inside; marked sensitive like the IONOS one)."
  sensitive   = true
  value = yamlencode({
    apiVersion      = "v1"
    kind            = "Config"
    current-context = var.cluster_name
    clusters = [{
      name = var.cluster_name
      cluster = {
        server                     = module.eks.cluster_endpoint
        certificate-authority-data = module.eks.cluster_certificate_authority_data
      }
    }]
    contexts = [{
      name    = var.cluster_name
      context = { cluster = var.cluster_name, user = var.cluster_name }
    }]
    users = [{
      name = var.cluster_name
      user = {
        exec = {
          apiVersion = "client.authentication.k8s.io/v1beta1"
          command    = "aws"
          args       = ["eks", "get-token", "--cluster-name", var.cluster_name, "--region", data.aws_region.current.region]
        }
      }
    }]
  })
}

# --- AWS-specific -------------------------------------------------------------------

output "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider, for IRSA roles (e.g. S3 access of the predictor)."
  value       = module.eks.oidc_provider_arn
}

output "vpc_id" {
  description = "ID of the VPC the cluster runs in."
  value       = module.vpc.vpc_id
}
