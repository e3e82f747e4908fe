//! PostgreSQL 16: initdb as an unprivileged account, durable settings, readiness by query, the
//! target database and init scripts.
