//! The local-process spawner. (To be written.)
