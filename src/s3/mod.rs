//! S3 gateway.

pub mod checksum;
pub mod error;
pub mod xml;
