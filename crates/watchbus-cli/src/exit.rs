//! Exit statuses, decided in one place from the error `main` receives.
//!
//! | status | when |
//! |--------|------|
//! | 0 | success, or interrupted by SIGINT/SIGTERM |
//! | 1 | a runtime failure (network, server error, I/O) |
//! | 2 | a usage or configuration error (clap's own errors also exit 2) |
//! | 3 | `watch`: the resume point is gone (`410 Gone`) |

use std::fmt;

/// Status for a usage or configuration error.
pub(crate) const USAGE: u8 = 2;
/// Status for `watch` when the server answers `410 Gone`.
pub(crate) const GONE: u8 = 3;

/// Wraps an error that the user fixes by changing the command line,
/// the environment or the config file.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) anyhow::Error);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for UsageError {}

/// The server can no longer serve every event after the resume point.
#[derive(Debug)]
pub(crate) struct GoneError(pub(crate) String);

impl fmt::Display for GoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GoneError {}

/// The exit status for an error that reached `main`.
pub(crate) fn code(err: &anyhow::Error) -> u8 {
    if err.is::<UsageError>() {
        USAGE
    } else if err.is::<GoneError>() {
        GONE
    } else {
        1
    }
}

/// The line `main` prints for an error: its causes joined by `: `, each
/// one once. Some errors (redis's, wrapped by the store's) put their cause
/// in their own text and also return it as their source, which anyhow's
/// `{:#}` would print again.
pub(crate) fn message(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let cause = cause.to_string();
        if text.ends_with(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_told_is_not_told_again() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let told = io.to_string();
        #[derive(Debug)]
        struct Echo(std::io::Error);
        impl fmt::Display for Echo {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "the store is unavailable: {}", self.0)
            }
        }
        impl std::error::Error for Echo {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let err = anyhow::Error::new(Echo(io)).context("cannot connect to the store");
        assert_eq!(
            message(&err),
            format!("cannot connect to the store: the store is unavailable: {told}")
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(message(&plain), "outer: inner");
    }

    #[test]
    fn statuses_follow_the_error_kind() {
        assert_eq!(
            code(&anyhow::Error::new(UsageError(anyhow::anyhow!("bad")))),
            2
        );
        assert_eq!(code(&anyhow::Error::new(GoneError("gone".into()))), 3);
        assert_eq!(code(&anyhow::anyhow!("network")), 1);
    }

    #[test]
    fn context_does_not_hide_the_kind() {
        let err = anyhow::Error::new(GoneError("gone".into())).context("watching");
        assert_eq!(code(&err), 3);
    }
}
