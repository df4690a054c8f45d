variable "cluster_name" {
  description = "Name of the managed Kubernetes cluster."
  type        = string
  default     = "mlp-prod"
}

variable "kubernetes_version" {
  description = "Kubernetes version of the cluster and its node pool."
  type        = string
  default     = "1.32"
}

variable "node_count" {
  description = "Worker nodes the pool starts with."
  type        = number
  default     = 3
}

variable "node_max_count" {
  description = "Upper bound for the node pool autoscaler (null disables autoscaling)."
  type        = number
  default     = 5
}

variable "api_allow_cidrs" {
  description = "CIDRs allowed to reach the Kubernetes API (office / VPN / CI egress); empty means open."
  type        = list(string)
  default     = []
}

variable "location" {
  description = "IONOS datacenter location of the worker nodes."
  type        = string
  default     = "de/fra"
}

variable "bucket_name" {
  description = "Globally unique name of the platform bucket (lake, MLflow artifacts, Terraform state)."
  type        = string
}

variable "s3_region" {
  description = "IONOS Object Storage region of the platform bucket."
  type        = string
  default     = "eu-central-3"
}
