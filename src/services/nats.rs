//! nats-server: the wrapper configuration around the project's nats.conf, readiness, and the
//! EVENTS stream.
