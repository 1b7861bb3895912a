//! Byte encoding of index structures for store segments.
