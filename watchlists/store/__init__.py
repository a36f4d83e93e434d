"""The time-series store: raw points (partitioned on PostgreSQL), rollups and features."""
