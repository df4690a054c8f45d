# --- shared bucket interface (same names as modules/aws-s3-bucket) --------------------

output "bucket_name" {
  description = "Name of the platform bucket."
  value       = ionoscloud_s3_bucket.this.name
}

output "bucket_uri" {
  description = "s3:// URI of the bucket root, the base of MLP_LAKE_URI and MLP_ARTIFACTS_DESTINATION."
  value       = "s3://${ionoscloud_s3_bucket.this.name}"
}

output "s3_endpoint_url" {
  description = "S3 API endpoint of the bucket's region (MLP_S3_ENDPOINT_URL for the platform)."
  value       = "https://s3.${var.region}.ionoscloud.com"
}

output "region" {
  description = "Region the bucket lives in."
  value       = var.region
}
