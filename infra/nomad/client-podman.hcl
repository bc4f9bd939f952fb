# Nomad client agent for Gofer task nodes with rootless Podman (nomad.driver = "podman").
# The podman plugin has no allow_privileged or allow_caps: Gofer's job builder never asks for
# privileges, and rootless Podman cannot grant host privileges anyway. See docs/nomad.md.

client {
  enabled   = true
  node_pool = "default"
  options = {
    "driver.denylist" = "raw_exec,exec,java,qemu"
  }
}

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
