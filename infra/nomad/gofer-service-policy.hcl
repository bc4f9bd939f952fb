# ACL policy of the Gofer service's Nomad token (nomad acl policy apply gofer-service gofer-service-policy.hcl,
# then nomad acl token create -name gofer -policy gofer-service).
#
# Gofer creates one namespace per tenant (gofer-<tenant>) on demand, which needs a management
# token in Nomad CE; alternatively pre-create namespaces and give a client token this policy
# without the namespace creation (Gofer's POST /v1/namespace then fails with 403 and tasks wait).

namespace "gofer-*" {
  capabilities = [
    "submit-job",   # register, stop and purge task jobs
    "read-job",     # jobs, allocations, the Allocation event stream topic
    "list-jobs",    # find a job's namespace after a takeover (GET /v1/jobs?prefix=…&namespace=*)
    "read-logs",    # /v1/client/fs/logs
    "alloc-exec",   # attach: /v1/client/allocation/:id/exec (docs/attach.md)
  ]
  variables {
    # Registry credentials of private images, one variable per job.
    path "nomad/jobs/*" {
      capabilities = ["write", "read", "destroy"]
    }
  }
}

node_pool "default" {
  policy = "read"
}

node_pool "gofer-trial" {
  policy = "read"
}
