//! The `watchbus` binary's command line, without a server: help texts and
//! the exit status and message of bad settings.

use std::process::{Command, Output};

/// `watchbus`, without the `WATCHBUS_*` variables of the tests' own
/// environment.
fn watchbus_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_watchbus"));
    for (name, _) in std::env::vars() {
        if name.starts_with("WATCHBUS_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
}

/// Runs `watchbus ARGS` with no `WATCHBUS_*` variables, plus `env`.
fn watchbus(args: &[&str], env: &[(&str, &str)]) -> Output {
    watchbus_command()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|err| panic!("cannot run watchbus: {err}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_lists_the_subcommands() {
    let output = watchbus(&["--help"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let help = stdout(&output);
    for command in ["serve", "publish", "watch", "bench", "token"] {
        assert!(help.contains(command), "`{command}` missing from:\n{help}");
    }
}

#[test]
fn serve_help_documents_every_flag_and_its_variable() {
    let output = watchbus(&["serve", "--help"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let help = stdout(&output);
    for (flag, variable) in [
        ("--listen", "WATCHBUS_LISTEN"),
        ("--store", "WATCHBUS_STORE"),
        ("--retention-events", "WATCHBUS_RETENTION_EVENTS"),
        ("--retention-age", "WATCHBUS_RETENTION_AGE"),
        ("--retention-bytes", "WATCHBUS_RETENTION_BYTES"),
        ("--idempotency-window", "WATCHBUS_IDEMPOTENCY_WINDOW"),
        ("--idempotency-max-keys", "WATCHBUS_IDEMPOTENCY_MAX_KEYS"),
        ("--keep-alive", "WATCHBUS_KEEP_ALIVE"),
        ("--max-body", "WATCHBUS_MAX_BODY"),
        ("--max-filters", "WATCHBUS_MAX_FILTERS"),
        ("--max-subscribers", "WATCHBUS_MAX_SUBSCRIBERS"),
        ("--publish-token", "WATCHBUS_PUBLISH_TOKEN"),
        ("--subscribe-token", "WATCHBUS_SUBSCRIBE_TOKEN"),
        ("--admin-token", "WATCHBUS_ADMIN_TOKEN"),
        ("--jwt-secret", "WATCHBUS_JWT_SECRET"),
        ("--jwt-public-key", "WATCHBUS_JWT_PUBLIC_KEY"),
        ("--cors-origin", "WATCHBUS_CORS_ORIGIN"),
        ("--schema", "WATCHBUS_SCHEMA"),
        ("--log", "WATCHBUS_LOG"),
        ("--config", "WATCHBUS_CONFIG"),
    ] {
        assert!(help.contains(flag), "`{flag}` missing from:\n{help}");
        assert!(
            help.contains(variable),
            "`{variable}` missing from:\n{help}"
        );
    }
}

#[test]
fn a_short_jwt_secret_is_a_usage_error_that_does_not_show_it() {
    let short = "too-short-to-sign";
    for (args, env) in [
        (vec!["serve", "--jwt-secret", short], vec![]),
        (vec!["serve"], vec![("WATCHBUS_JWT_SECRET", short)]),
    ] {
        let output = watchbus(&args, &env);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}");
        let err = stderr(&output);
        assert!(
            err.contains("a JWT secret needs at least 32 bytes, this one has 17"),
            "{err}"
        );
        assert!(!err.contains(short), "the secret is shown: {err}");
    }
}

/// Runs `watchbus serve --listen 127.0.0.1:0 ARGS`, which must refuse to
/// start: its exit status and stderr. Fails, rather than waits, if the
/// server starts after all.
fn serve_refused(args: &[&str]) -> (Option<i32>, String) {
    let mut child = watchbus_command()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run watchbus: {err}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let running = |child: &mut std::process::Child| {
        child
            .try_wait()
            .unwrap_or_else(|err| panic!("cannot wait for watchbus: {err}"))
            .is_none()
    };
    while running(&mut child) {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("`serve {args:?}` started instead of refusing");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = child
        .wait_with_output()
        .unwrap_or_else(|err| panic!("cannot wait for watchbus: {err}"));
    (output.status.code(), stderr(&output))
}

#[test]
fn a_jwt_public_key_must_be_a_readable_pem_public_key() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/jwt");
    let private = format!("{dir}/rsa.key");
    let (code, err) = serve_refused(&["--jwt-public-key", &private]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "the JWT public key {private}: this is a private key; give the server only its public key"
        )),
        "{err}"
    );
    // Not a line of the private key.
    let pem = std::fs::read_to_string(&private).unwrap();
    assert!(
        pem.lines().skip(1).take(3).all(|line| !err.contains(line)),
        "the key is shown: {err}"
    );

    let certificate = format!("{dir}/p256.cert.pem");
    let (code, err) = serve_refused(&["--jwt-public-key", &certificate]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(
            "expected a PEM public key (-----BEGIN PUBLIC KEY-----), found BEGIN CERTIFICATE"
        ),
        "{err}"
    );

    let missing = format!("{dir}/missing.pem");
    let (code, err) = serve_refused(&["--jwt-public-key", &missing]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("cannot read the JWT public key {missing}")),
        "{err}"
    );
}

#[test]
fn a_required_audience_or_issuer_needs_a_key_to_check_it() {
    for flag in ["--jwt-audience", "--jwt-issuer"] {
        let (code, err) = serve_refused(&[flag, "watchbus"]);
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains("--jwt-audience and --jwt-issuer need --jwt-secret or --jwt-public-key"),
            "{err}"
        );
    }
}

#[test]
fn publish_and_watch_have_help() {
    for command in ["publish", "watch"] {
        let output = watchbus(&[command, "--help"], &[]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        assert!(stdout(&output).contains("--server"));
        assert!(stdout(&output).contains("WATCHBUS_SERVER"));
    }
}

#[test]
fn an_unknown_store_flag_is_a_usage_error() {
    let output = watchbus(&["serve", "--store", "postgres://db"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("--store"), "{err}");
    assert!(err.contains("postgres://db"), "{err}");
    assert!(
        err.contains("memory"),
        "the message should say what is accepted: {err}"
    );
    assert!(
        stdout(&output).is_empty(),
        "nothing on stdout: {}",
        stdout(&output)
    );
}

#[test]
fn an_unknown_store_variable_is_a_usage_error_naming_the_variable() {
    let output = watchbus(&["serve"], &[("WATCHBUS_STORE", "mysql://db")]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.starts_with("error: WATCHBUS_STORE: invalid store"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn a_missing_config_file_is_a_usage_error() {
    let output = watchbus(&["serve", "--config", "/nonexistent/watchbus.toml"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("/nonexistent/watchbus.toml"));
}

#[test]
fn a_key_table_size_is_refused_with_redis_and_below_one() {
    // Port 1: the refusal comes before any connection is tried.
    let output = watchbus(
        &[
            "serve",
            "--store",
            "redis://127.0.0.1:1",
            "--idempotency-max-keys",
            "5",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(
        stderr(&output).trim_end(),
        "error: --idempotency-max-keys is for the memory store: Redis keeps every key until \
         its window ends"
    );
    let output = watchbus(&["serve", "--idempotency-max-keys", "0"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("at least 1"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn zero_retention_is_refused() {
    let output = watchbus(&["serve", "--retention-events", "0"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("at least 1"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn every_command_names_the_program_in_its_version() {
    let expected = format!("watchbus {}\n", env!("CARGO_PKG_VERSION"));
    for args in [
        &["--version"][..],
        &["serve", "-V"],
        &["publish", "--version"],
        &["watch", "-V"],
        &["bench", "-V"],
        &["token", "-V"],
    ] {
        let output = watchbus(args, &[]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(stdout(&output), expected, "{args:?}");
    }
}

#[test]
fn a_negative_number_reaches_the_flag_it_was_given_to() {
    for (args, message) in [
        (
            &["serve", "--max-body", "-5"][..],
            "error: invalid value '-5' for '--max-body <SIZE>': invalid size `-5`",
        ),
        (
            &["serve", "--retention-events", "-1"],
            "error: invalid value '-1' for '--retention-events <N>': invalid number `-1`: \
             expected a whole number, at least 1",
        ),
    ] {
        let output = watchbus(args, &[]);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).starts_with(message),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

/// A schema file for the tests below, named for the test, holding `text`.
fn schema_file(name: &str, text: &str) -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("watchbus-cli-{}-{name}.json", std::process::id()));
    std::fs::write(&path, text).unwrap_or_else(|err| panic!("cannot write {path:?}: {err}"));
    path
}

#[test]
fn an_unusable_schema_is_a_configuration_error_naming_its_file() {
    let not_json = schema_file("not-json", "{nope");
    let not_a_schema = schema_file("not-a-schema", r#"{"properties": {"n": {"type": 5}}}"#);
    let fetches = schema_file("fetches", r#"{"$ref": "https://example.com/s.json"}"#);
    let cases = [
        (
            "t=/nonexistent/t.json".to_owned(),
            "error: cannot read the schema file /nonexistent/t.json: ".to_owned(),
        ),
        (
            format!("t={}", not_json.display()),
            format!(
                "error: the schema file {} is not JSON: ",
                not_json.display()
            ),
        ),
        (
            format!("t={}", not_a_schema.display()),
            format!(
                "error: schema file {}: the schema of event type \"t\" is not a usable JSON \
                 Schema: at /properties/n/type: ",
                not_a_schema.display()
            ),
        ),
        (
            format!("t={}", fetches.display()),
            format!(
                "error: schema file {}: the schema of event type \"t\" is not a usable JSON Schema: ",
                fetches.display()
            ),
        ),
    ];
    for (arg, start) in cases {
        let output = watchbus(&["serve", "--listen", "127.0.0.1:0", "--schema", &arg], &[]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{arg}: {err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(last.starts_with(&start), "{arg}: {err}");
        assert!(
            stdout(&output).is_empty(),
            "never listening: {}",
            stdout(&output)
        );
    }
    for file in [not_json, not_a_schema, fetches] {
        let _ = std::fs::remove_file(file);
    }
}

#[test]
fn a_type_with_two_schemas_is_a_configuration_error() {
    let schema = schema_file("twice", "true");
    let arg = format!("t={}", schema.display());
    let output = watchbus(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--schema",
            &arg,
            "--schema",
            &arg,
        ],
        &[],
    );
    let _ = std::fs::remove_file(&schema);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.trim_end().ends_with("event type \"t\" has two schemas"),
        "{err}"
    );
}
