"""PostgreSQL: reaching the server, tables in and out, source slices, staged results."""
