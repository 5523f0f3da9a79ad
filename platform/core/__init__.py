"""The core below the areas: settings, signing, database, errors, text validation,
rate limits, web plumbing, live events, authorization rules, the per-tenant key
service and the region container. It imports no area (docs/architecture.md)."""
