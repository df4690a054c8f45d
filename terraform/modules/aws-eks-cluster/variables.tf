# --- shared cluster interface (same names as modules/ionos-k8s-cluster) ---------------

variable "cluster_name" {
  description = "Name of the EKS cluster; also names its VPC and node group."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.cluster_name))
    error_message = "cluster_name must be 3-63 characters of lower-case letters, digits and '-', starting and ending alphanumeric."
  }
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version, <major>.<minor> (EKS manages patch levels)."
  type        = string

  validation {
    condition     = can(regex("^1\\.[0-9]{2}$", var.kubernetes_version))
    error_message = "kubernetes_version must look like 1.33 (EKS takes no patch level)."
  }
}

variable "node_count" {
  description = "Number of worker nodes the managed node group starts with (the node pool size)."
  type        = number

  validation {
    condition     = var.node_count >= 1 && var.node_count <= 100 && floor(var.node_count) == var.node_count
    error_message = "node_count must be a whole number between 1 and 100."
  }
}

variable "node_max_count" {
  description = "Upper bound of the node group; null means fixed at node_count."
  type        = number
  default     = null

  validation {
    condition     = var.node_max_count == null || try(var.node_max_count >= 1 && var.node_max_count <= 100, false)
    error_message = "node_max_count must be null or between 1 and 100."
  }
}

variable "api_allow_cidrs" {
  description = "CIDRs allowed to reach the public Kubernetes API endpoint; an empty list leaves it open to the internet."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.api_allow_cidrs : can(cidrhost(c, 0))])
    error_message = "api_allow_cidrs must contain valid CIDR blocks such as 203.0.113.7/32."
  }
}

variable "labels" {
  description = "Kubernetes labels put on every worker node."
  type        = map(string)
  default     = {}
}

# --- AWS-specific -------------------------------------------------------------------

variable "instance_type" {
  description = "EC2 instance type of the worker nodes (Spark executors and Ray workers need at least 2 vCPU / 8 GiB)."
  type        = string
  default     = "m6i.xlarge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must look like m6i.xlarge."
  }
}

variable "capacity_type" {
  description = "Purchase option of the worker nodes."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.capacity_type)
    error_message = "capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "disk_size_gb" {
  description = "Root volume size per worker node in GiB (images for Spark and Ray are large)."
  type        = number
  default     = 100

  validation {
    condition     = var.disk_size_gb >= 20
    error_message = "disk_size_gb must be at least 20."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the VPC created for the cluster."
  type        = string
  default     = "10.20.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be a valid CIDR of /20 or larger."
  }
}

variable "availability_zone_suffixes" {
  description = "Zone letters (appended to the region) the VPC and node group span; an explicit list so the subnets never move when AWS adds a zone."
  type        = list(string)
  default     = ["a", "b"]

  validation {
    condition     = length(var.availability_zone_suffixes) >= 2 && length(var.availability_zone_suffixes) <= 3 && alltrue([for z in var.availability_zone_suffixes : can(regex("^[a-f]$", z))])
    error_message = "availability_zone_suffixes must list 2 or 3 zone letters a-f (EKS needs at least two zones)."
  }
}

variable "tags" {
  description = "Tags applied to every AWS resource of the cluster."
  type        = map(string)
  default     = {}
}
