# --- shared cluster interface (same names as modules/aws-eks-cluster) -----------------

variable "cluster_name" {
  description = "Name of the managed Kubernetes cluster; also prefixes the datacenter and node pool names."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.cluster_name))
    error_message = "cluster_name must be 3-63 characters of lower-case letters, digits and '-', starting and ending alphanumeric."
  }
}

variable "kubernetes_version" {
  description = "Kubernetes version of the control plane and node pool (<major>.<minor>[.<patch>]); IONOS ignores patch-level drift."
  type        = string

  validation {
    condition     = can(regex("^1\\.[0-9]{2}(\\.[0-9]+)?$", var.kubernetes_version))
    error_message = "kubernetes_version must look like 1.31 or 1.31.2."
  }
}

variable "node_count" {
  description = "Number of worker nodes the pool starts with (the node pool size)."
  type        = number

  validation {
    condition     = var.node_count >= 1 && var.node_count <= 100 && floor(var.node_count) == var.node_count
    error_message = "node_count must be a whole number between 1 and 100."
  }
}

variable "node_max_count" {
  description = "Upper bound for the node pool autoscaler; null or equal to node_count disables autoscaling."
  type        = number
  default     = null

  validation {
    condition     = var.node_max_count == null || try(var.node_max_count >= 1 && var.node_max_count <= 100, false)
    error_message = "node_max_count must be null or between 1 and 100."
  }
}

variable "api_allow_cidrs" {
  description = "CIDRs allowed to reach the Kubernetes API server; an empty list leaves it open to the internet."
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

# --- IONOS-specific -----------------------------------------------------------------

variable "location" {
  description = "IONOS datacenter location the node pool runs in."
  type        = string
  default     = "de/fra"

  validation {
    condition     = contains(["de/fra", "de/fra/2", "de/txl", "de/fkb", "es/vit", "fr/par", "gb/lhr", "gb/bhx", "us/las", "us/ewr", "us/mci"], var.location)
    error_message = "location must be one of de/fra, de/fra/2, de/txl, de/fkb, es/vit, fr/par, gb/lhr, gb/bhx, us/las, us/ewr, us/mci."
  }
}

variable "cpu_family" {
  description = "CPU family of the worker nodes; must be offered in the chosen location."
  type        = string
  default     = "INTEL_SKYLAKE"

  validation {
    condition     = contains(["INTEL_SKYLAKE", "INTEL_ICELAKE", "INTEL_XEON", "AMD_EPYC", "AMD_OPTERON"], var.cpu_family)
    error_message = "cpu_family must be one of INTEL_SKYLAKE, INTEL_ICELAKE, INTEL_XEON, AMD_EPYC, AMD_OPTERON."
  }
}

variable "node_cores" {
  description = "vCPU cores per worker node (Spark executors and Ray workers need at least 2)."
  type        = number
  default     = 4

  validation {
    condition     = var.node_cores >= 1 && var.node_cores <= 62
    error_message = "node_cores must be between 1 and 62."
  }
}

variable "node_ram_mb" {
  description = "RAM per worker node in MiB; IONOS requires a multiple of 1024."
  type        = number
  default     = 16384

  validation {
    condition     = var.node_ram_mb >= 2048 && var.node_ram_mb % 1024 == 0
    error_message = "node_ram_mb must be at least 2048 and a multiple of 1024."
  }
}

variable "storage_type" {
  description = "Boot volume type of the worker nodes."
  type        = string
  default     = "SSD"

  validation {
    condition     = contains(["SSD", "HDD"], var.storage_type)
    error_message = "storage_type must be SSD or HDD."
  }
}

variable "storage_size_gb" {
  description = "Boot volume size per worker node in GB (images for Spark and Ray are large)."
  type        = number
  default     = 100

  validation {
    condition     = var.storage_size_gb >= 20
    error_message = "storage_size_gb must be at least 20."
  }
}

variable "availability_zone" {
  description = "Compute availability zone of the node pool."
  type        = string
  default     = "AUTO"

  validation {
    condition     = contains(["AUTO", "ZONE_1", "ZONE_2"], var.availability_zone)
    error_message = "availability_zone must be AUTO, ZONE_1 or ZONE_2."
  }
}

variable "maintenance_day" {
  description = "Day of the week on which IONOS may upgrade the control plane and nodes."
  type        = string
  default     = "Sunday"

  validation {
    condition     = contains(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"], var.maintenance_day)
    error_message = "maintenance_day must be a weekday name such as Sunday."
  }
}

variable "maintenance_time" {
  description = "UTC start time of the maintenance window, HH:MM:SSZ."
  type        = string
  default     = "03:00:00Z"

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$", var.maintenance_time))
    error_message = "maintenance_time must look like 03:00:00Z."
  }
}
