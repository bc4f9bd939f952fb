# Nomad client agent for Gofer task nodes with rootless Podman (nomad.driver = "podman").
# The podman plugin has no allow_privileged or allow_caps: Gofer's job builder never asks for
# privileges, and rootless Podman cannot grant host privileges anyway. See docs/nomad.md.

client {
  enabled   = true
  node_pool = "default"
  options = {
    "driver.denylist" = "raw_exec,exec,java,qemu"
  }
  # Rootless Podman cannot join the network namespace Nomad makes for a CNI network, so these
  # nodes serve plans without network (allow_network = false); docs/nomad.md, "Networked tasks".
}

# Every job names the seccomp profile /etc/gofer/seccomp.json (nomad.seccomp_profile): install
# infra/nomad/seccomp.json there, readable by the rootless Podman user (podman reads the path).

plugin "nomad-driver-podman" {
  config {
    # The socket of a rootless Podman service (systemctl --user enable --now podman.socket).
    socket_path = "unix:///run/user/1000/podman/podman.sock"

    volumes {
      # The podman default is enabled = true: turn host volumes off.
      enabled = false
    }

    gc {
      container = true
    }
  }
}
