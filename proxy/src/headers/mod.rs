//! Header rules, one concern per module.

pub mod forwarded;
pub mod hop_by_hop;
pub mod location;
