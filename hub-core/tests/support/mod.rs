//! Code shared by hub-core's integration tests. Each test binary uses part of it, hence the
//! `dead_code` allowance.
#![allow(dead_code)]

pub mod webdriver;
