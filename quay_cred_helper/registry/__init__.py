"""Talking to registries: the HTTP session, challenges, the /v2/auth exchange, the token cache, referrers."""
