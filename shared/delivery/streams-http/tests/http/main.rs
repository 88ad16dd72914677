//! The HTTP handler's tests, in one test binary (fewer binaries to link in CI).

mod auth;
mod bad_input;
mod read_bounds;
mod request_spans;
