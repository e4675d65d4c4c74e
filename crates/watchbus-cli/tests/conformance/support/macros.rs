//! Assertion macros that say what differed.

/// `assert_ids!(got, want)`: two lists of ids (anything yielding `String`
/// or `&str` items), compared exactly, with a readable diff.
macro_rules! assert_ids {
    ($got:expr, [$($want:expr),* $(,)?]) => {{
        let want: Vec<String> = vec![$(String::from(AsRef::<str>::as_ref(&$want))),*];
        assert_ids!($got, want)
    }};
    ($got:expr, $want:expr) => {{
        let got: Vec<String> = $got.iter().map(|s| String::from(AsRef::<str>::as_ref(s))).collect();
        let want: Vec<String> = $want.iter().map(|s| String::from(AsRef::<str>::as_ref(s))).collect();
        if got != want {
            panic!("{}", $crate::support::id_diff(&got, &want));
        }
    }};
}

/// `assert_error!(response, status)`: awaits the `reqwest::Response` and
/// checks status, JSON content type and the error envelope. Evaluates to
/// the error code. `assert_error!(response, status, "code")` also checks
/// the code.
macro_rules! assert_error {
    ($resp:expr, $status:expr) => {{
        let answer = $crate::support::Answer::of($resp).await;
        match $crate::support::check_error(&answer, $status) {
            Ok(code) => code,
            Err(why) => panic!("{why}"),
        }
    }};
    ($resp:expr, $status:expr, ctx = $($ctx:tt)+) => {{
        let answer = $crate::support::Answer::of($resp).await;
        match $crate::support::check_error(&answer, $status) {
            Ok(code) => code,
            Err(why) => panic!("{}: {why}", format!($($ctx)+)),
        }
    }};
    ($resp:expr, $status:expr, $code:expr) => {{
        let code = assert_error!($resp, $status);
        assert_eq!(code, $code, "error code");
        code
    }};
}

/// `assert_status!(response, status)`: awaits the response, checks its
/// status and evaluates to the [`Answer`](crate::support::Answer).
macro_rules! assert_status {
    ($resp:expr, $status:expr) => {{
        let answer = $crate::support::Answer::of($resp).await;
        assert_eq!(
            answer.status, $status,
            "unexpected status; body: {:?}",
            answer.text
        );
        answer
    }};
}
