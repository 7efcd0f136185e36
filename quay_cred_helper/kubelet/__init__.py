"""The kubelet's image credential provider: quay-credential-provider (front door 3)."""
