//! The realtime handler's tests, in one test binary (fewer binaries to link in CI).

mod handler;
mod registry_contract;
