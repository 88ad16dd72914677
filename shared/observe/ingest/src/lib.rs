//! Traces in from the doors other than the archiver: OTLP/HTTP export requests and dataset
//! files. Everything here produces the archive's trace model (`agentwire_trace::Span`s with
//! the attributes the archiver writes), so every scorer reads every door's traces alike.

pub mod import;
pub mod otlp;
