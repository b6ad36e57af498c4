//! What runs around the `offers` binary rather than in it: the
//! multi-process runner (`offers local up`, the tests, the benchmark) and the
//! settings overrides the tests and the benchmark share. The `offers` binary
//! links it for its `offers local` commands only; the services never do.

pub mod local;
pub mod overrides;
