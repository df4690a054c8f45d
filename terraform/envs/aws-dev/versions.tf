terraform {
  # >= 1.11: the S3 backend's native lock file (use_lockfile) is GA; no DynamoDB table needed.
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.28"
    }
  }

  # Partial configuration: bucket, key and region come from backend.hcl at
  # `terraform init -backend-config=backend.hcl` (see backend.hcl.example).
  backend "s3" {
    use_lockfile = true
    encrypt      = true
  }
}

# Credentials from the standard AWS chain (AWS_PROFILE, AWS_ACCESS_KEY_ID/SECRET or
# an OIDC role in CI): nothing secret is written in this directory.
provider "aws" {
  region = var.region

  default_tags {
    tags = {
      platform   = "ml"
      env        = "dev"
      managed-by = "terraform"
    }
  }
}
