# One private, versioned, encrypted bucket for the platform: the lake, MLflow
# artifacts and the Terraform state of the environment live under separate prefixes.
# Versioning is what makes an overwritten state file or model recoverable.

resource "ionoscloud_s3_bucket" "this" {
  name          = var.bucket_name
  region        = var.region
  force_destroy = var.force_destroy
}

resource "ionoscloud_s3_bucket_public_access_block" "this" {
  bucket                  = ionoscloud_s3_bucket.this.name
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "ionoscloud_s3_bucket_versioning" "this" {
  bucket = ionoscloud_s3_bucket.this.name

  versioning_configuration {
    status = "Enabled"
  }
}

resource "ionoscloud_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = ionoscloud_s3_bucket.this.name

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "ionoscloud_s3_bucket_lifecycle_configuration" "this" {
  bucket = ionoscloud_s3_bucket.this.name

  rule {
    id     = 1
    status = "Enabled"
    prefix = ""

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
  }

  rule {
    id     = 2
    status = "Enabled"
    prefix = ""

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [ionoscloud_s3_bucket_versioning.this]
}
