"""The tamper-evident access log (NEN 7513 fields, hash-chained per organisation)."""
