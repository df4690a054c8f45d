# --- shared bucket interface (same names as modules/ionos-s3-bucket) ------------------

output "bucket_name" {
  description = "Name of the platform bucket."
  value       = aws_s3_bucket.this.id
}

output "bucket_uri" {
  description = "s3:// URI of the bucket root, the base of MLP_LAKE_URI and MLP_ARTIFACTS_DESTINATION."
  value       = "s3://${aws_s3_bucket.this.id}"
}

output "s3_endpoint_url" {
  description = "Regional S3 API endpoint of the bucket (MLP_S3_ENDPOINT_URL may stay empty on AWS)."
  value       = "https://s3.${aws_s3_bucket.this.region}.amazonaws.com"
}

output "region" {
  description = "Region the bucket lives in."
  value       = aws_s3_bucket.this.region
}

# --- AWS-specific -------------------------------------------------------------------

output "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the bucket; IAM roles that read or write the bucket need kms:Decrypt/GenerateDataKey on it."
  value       = aws_kms_key.this.arn
}
