# Nomad client agent for Gofer task nodes (example). Tasks are untrusted tenant code: these
# nodes run nothing else, and the task driver runs rootless. See docs/nomad.md.

client {
  enabled = true
  # Tenant tasks; trial tenants get their own pool (trial-client.hcl).
  node_pool = "default"

  # Nomad's exec/raw_exec drivers would run tasks outside a container: keep them off.
  options = {
    "driver.denylist" = "raw_exec,exec,java,qemu"
  }

  # No host volumes are declared: tasks cannot mount anything from the host.
}

plugin "docker" {
  config {
    # A rootless dockerd owned by an unprivileged user (dockerd-rootless-setuptool.sh install).
    endpoint = "unix:///run/user/1000/docker.sock"

    allow_privileged = false
    # Gofer drops ALL capabilities in every job (the effective set is empty); keep the allowed
    # set small so no other job on these nodes can add dangerous ones.
    allow_caps = ["chown", "kill", "setgid", "setuid"]

    # Upper bound for the per-task pids_limit Gofer sets (nomad.pids_limit, default 512).
    pids_limit = 1024

    volumes {
      # Blocks host bind mounts and the task `volumes` option.
      enabled = false
    }

    # Only the default runtime; add "runsc" here (and constrain jobs) for gVisor.
    allow_runtimes = ["runc"]

    gc {
      image       = true
      image_delay = "1h"
      container   = true
    }
  }
}
