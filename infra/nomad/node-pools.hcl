# Node pools Gofer places jobs in (create with `nomad node pool apply node-pools.hcl`).
# A plan's node_pool picks the pool; plans without one use nomad.node_pool (default "default").

node_pool "gofer-trial" {
  description = "Gofer trial tenants: no network, small limits, isolated machines"
  meta {
    gofer = "trial"
  }
}
