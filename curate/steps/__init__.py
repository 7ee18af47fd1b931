"""Pipeline steps: read, validate, dedup, split, export. Each runs alone on an iterator of records."""
