# Non-secret configuration of this environment (credentials only ever come from the
# environment). Change the bucket name: bucket names are global.
cluster_name       = "mlp-prod"
kubernetes_version = "1.32"
node_count         = 3
node_max_count     = 5
location           = "de/fra"
bucket_name        = "mlp-prod-platform"
s3_region          = "eu-central-3"
