"""Fakes and servers the tests run against: registries, issuers, the kubelet, hostile servers."""
