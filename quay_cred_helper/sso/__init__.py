"""SSO: people sign in through their company's identity provider; Quay takes the IdP's ID token.

`login --sso` runs one of two OAuth flows against the IdP behind Quay's OIDC login (flows.py), checks
the ID token (idtoken.py), has Quay accept it once at /v2/auth as `$oauthtoken`, and keeps only the
refresh token, in the keyring (session.py). `get` then hands out the ID token, cached until shortly
before it expires, and refreshes it under the token exchange's single flight. The facts about Quay
are in DESIGN.md section 10; idp.py speaks to the identity provider.
"""
