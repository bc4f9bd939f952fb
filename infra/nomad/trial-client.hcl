# Nomad client agent for anonymous / trial tenants (the seeded `trial` plan has
# node_pool = "gofer-trial" and allow_network = false, so its jobs use network_mode "none").
# Same hardening as client.hcl, on separate machines.

client {
  enabled   = true
  node_pool = "gofer-trial"
  options = {
    "driver.denylist" = "raw_exec,exec,java,qemu"
  }
}

plugin "docker" {
  config {
    endpoint         = "unix:///run/user/1000/docker.sock"
    allow_privileged = false
    allow_caps       = ["chown", "kill", "setgid", "setuid"]
    pids_limit       = 256
    volumes {
      enabled = false
    }
    allow_runtimes = ["runc"]
  }
}
