# --- shared bucket interface (same names as modules/ionos-s3-bucket) ------------------

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

# --- AWS-specific -------------------------------------------------------------------

variable "kms_deletion_window_days" {
  description = "Waiting period before the bucket's KMS key is deleted after a destroy (a safety net for the data it encrypts)."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

variable "tags" {
  description = "Tags applied to the bucket and its KMS key."
  type        = map(string)
  default     = {}
}
