"""Keyless robots: an OIDC token from the job or pod, exchanged through Quay's robot federation."""
