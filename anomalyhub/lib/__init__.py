"""Shared infrastructure every app may use: errors, caches, the channel layer, DRF and GraphQL
building blocks, request parsing. It imports no app and none of anomalyhub's wiring (settings,
urls, asgi, celery, routing, schema): the import-linter contracts in pyproject.toml check that."""
