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

  # Networked tasks join the CNI network gofer-egress (gofer-egress.conflist here, the reference
  # plugins in cni_path) whose egress rules are gofer-egress.nft. CNI needs the agent to run as
  # root and a dockerd that can join the namespace it makes: see docs/nomad.md, "Networked tasks".
  cni_path       = "/opt/cni/bin"
  cni_config_dir = "/opt/cni/config"
}

# Every job names the seccomp profile /etc/gofer/seccomp.json (nomad.seccomp_profile): install
# infra/nomad/seccomp.json there; the agent reads it and sends it to dockerd.

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
