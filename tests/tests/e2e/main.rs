//! End-to-end tests against the real `agentwire` binary, in one test binary (each linked
//! binary costs CI a link of the AWS SDK).

mod aws_backend;
mod crash_recovery;
mod dev_lifecycle;
mod sdk;
mod websocket;
