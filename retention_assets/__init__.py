"""retention_assets: gym CSV exports -> RFM segments, CLV and retention in PostgreSQL."""
