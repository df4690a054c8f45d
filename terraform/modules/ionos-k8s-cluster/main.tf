# A managed Kubernetes control plane, the datacenter its workers live in, and one
# node pool. The kubeconfig is read back through the data source because only the
# data source exposes it (the resource does not).

locals {
  autoscale = var.node_max_count != null && try(var.node_max_count > var.node_count, false)
}

resource "ionoscloud_datacenter" "this" {
  name                = "${var.cluster_name}-dc"
  location            = var.location
  description         = "Worker nodes of the ${var.cluster_name} ML platform cluster (managed by Terraform)"
  sec_auth_protection = false
}

resource "ionoscloud_k8s_cluster" "this" {
  name                  = var.cluster_name
  k8s_version           = var.kubernetes_version
  api_subnet_allow_list = var.api_allow_cidrs

  maintenance_window {
    day_of_the_week = var.maintenance_day
    time            = var.maintenance_time
  }
}

resource "ionoscloud_k8s_node_pool" "this" {
  name              = "${var.cluster_name}-pool"
  k8s_cluster_id    = ionoscloud_k8s_cluster.this.id
  datacenter_id     = ionoscloud_datacenter.this.id
  k8s_version       = ionoscloud_k8s_cluster.this.k8s_version
  node_count        = var.node_count
  cpu_family        = var.cpu_family
  cores_count       = var.node_cores
  ram_size          = var.node_ram_mb
  availability_zone = var.availability_zone
  storage_type      = var.storage_type
  storage_size      = var.storage_size_gb
  labels            = var.labels

  maintenance_window {
    day_of_the_week = var.maintenance_day
    time            = var.maintenance_time
  }

  dynamic "auto_scaling" {
    for_each = local.autoscale ? [1] : []
    content {
      min_node_count = var.node_count
      max_node_count = var.node_max_count
    }
  }

  lifecycle {
    # The autoscaler owns the node count once it is on; Terraform must not fight it.
    ignore_changes = [node_count]
  }
}

data "ionoscloud_k8s_cluster" "this" {
  id = ionoscloud_k8s_cluster.this.id

  depends_on = [ionoscloud_k8s_node_pool.this]
}
