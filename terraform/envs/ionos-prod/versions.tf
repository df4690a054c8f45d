terraform {
  # >= 1.11: the S3 backend's native lock file (use_lockfile) is GA; no DynamoDB table needed.
  required_version = ">= 1.11.0"

  required_providers {
    ionoscloud = {
      source  = "ionos-cloud/ionoscloud"
      version = "~> 6.7"
    }
  }

  # Partial configuration: bucket, key, region and endpoint come from backend.hcl at
  # `terraform init -backend-config=backend.hcl` (see backend.hcl.example); credentials
  # come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (the IONOS S3 key pair).
  backend "s3" {
    use_lockfile = true
    encrypt      = true
  }
}

# Token from IONOS_TOKEN, Object Storage keys from IONOS_S3_ACCESS_KEY /
# IONOS_S3_SECRET_KEY: nothing secret is written in this directory.
provider "ionoscloud" {
  s3_region = var.s3_region
}
