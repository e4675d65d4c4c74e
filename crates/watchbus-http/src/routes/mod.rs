//! One handler per endpoint; each parses, authorizes, calls the hub and
//! renders. Errors are `ApiError`, rendered in `error.rs`.

pub(crate) mod admin;
pub(crate) mod history;
pub(crate) mod publish;
pub(crate) mod subscribe;
