# --- shared bucket interface (same names as modules/aws-s3-bucket) --------------------

variable "bucket_name" {
  description = "Globally unique bucket name; holds the lake (data/), MLflow artifacts (mlflow/) and Terraform state (tfstate/)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3-63 characters of lower-case letters, digits, '.' and '-'."
  }
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept before it expires (the undo window for state and models)."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_days >= 1
    error_message = "noncurrent_version_days must be at least 1."
  }
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete a non-empty bucket. Keep false for anything holding state or models."
  type        = bool
  default     = false
}

# --- IONOS-specific -----------------------------------------------------------------

variable "region" {
  description = "IONOS Object Storage region of the bucket (contract-owned buckets)."
  type        = string
  default     = "eu-central-3"

  validation {
    condition     = contains(["eu-central-1", "eu-central-2", "eu-central-3", "eu-south-2", "us-central-1"], var.region)
    error_message = "region must be one of eu-central-1, eu-central-2, eu-central-3, eu-south-2, us-central-1."
  }
}
