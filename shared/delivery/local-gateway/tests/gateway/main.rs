//! The local gateway's tests, in one test binary (fewer binaries to link in CI).

mod push_contract;
mod realtime;
