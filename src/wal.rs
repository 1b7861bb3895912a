//! The write-ahead log of a durable database.
