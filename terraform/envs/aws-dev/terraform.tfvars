# Non-secret configuration of this environment (credentials only ever come from the
# environment). Change the bucket name: bucket names are global.
region             = "eu-central-1"
cluster_name       = "mlp-dev"
kubernetes_version = "1.33"
node_count         = 2
node_max_count     = 3
capacity_type      = "SPOT"
bucket_name        = "mlp-dev-platform"
