"""Identity and access: accounts, passwords, sessions and tokens, 2FA, OIDC, API keys, RBAC, audit."""
