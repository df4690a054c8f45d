# --- shared cluster interface (same names as modules/aws-eks-cluster) -----------------

output "cluster_id" {
  description = "IONOS UUID of the managed cluster (what ops/get_k8s_config.py --cluster-id takes)."
  value       = ionoscloud_k8s_cluster.this.id
}

output "cluster_name" {
  description = "Name of the managed cluster."
  value       = ionoscloud_k8s_cluster.this.name
}

output "endpoint" {
  description = "HTTPS URL of the Kubernetes API server."
  value       = data.ionoscloud_k8s_cluster.this.server
}

output "kubeconfig" {
  description = "Admin kubeconfig of the cluster (contains a bearer token; prefer ops/get_k8s_config.py over writing this to disk)."
  value       = data.ionoscloud_k8s_cluster.this.kube_config
  sensitive   = true
}

# --- IONOS-specific -----------------------------------------------------------------

output "datacenter_id" {
  description = "UUID of the datacenter that hosts the worker nodes."
  value       = ionoscloud_datacenter.this.id
}

output "node_pool_id" {
  description = "UUID of the worker node pool."
  value       = ionoscloud_k8s_node_pool.this.id
}
