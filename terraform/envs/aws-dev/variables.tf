variable "region" {
  description = "AWS region of the cluster and the bucket."
  type        = string
  default     = "eu-central-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-central-1."
  }
}

variable "cluster_name" {
  description = "Name of the EKS cluster."
  type        = string
  default     = "mlp-dev"
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version (<major>.<minor>)."
  type        = string
  default     = "1.33"
}

variable "node_count" {
  description = "Worker nodes the managed node group starts with."
  type        = number
  default     = 2
}

variable "node_max_count" {
  description = "Upper bound of the managed node group (null means fixed size)."
  type        = number
  default     = 3
}

variable "api_allow_cidrs" {
  description = "CIDRs allowed to reach the public Kubernetes API; empty means open."
  type        = list(string)
  default     = []
}

variable "capacity_type" {
  description = "ON_DEMAND or SPOT worker nodes (dev tolerates SPOT interruptions)."
  type        = string
  default     = "SPOT"

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.capacity_type)
    error_message = "capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "bucket_name" {
  description = "Globally unique name of the platform bucket (lake, MLflow artifacts, Terraform state)."
  type        = string
}
