"""The node tooling root runs: `node install`, `node openshift` and `doctor --kubelet` (cold paths, PyYAML)."""
