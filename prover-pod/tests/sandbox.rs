//! An exec prover is confined: it cannot read the pool's token, another attempt's files or the
//! agent's environment, and opens no connection; it still reads the image and writes its own
//! work directory. Needs a kernel with Landlock (Linux 5.13+), as the pods do.

use std::path::Path;
use std::time::Duration;

use zkfleet_prover::cancel::Cancel;
use zkfleet_prover::exec::{self, ExecError};

/// Runs `script` with `bash -c` in a fresh work directory of `root`; its output, or the
/// failure's log tail.
fn sh(script: &str, root: &Path) -> Result<String, String> {
    let dir = exec::work_dir(Some(root)).unwrap();
    let argv = vec![
        "/bin/bash".to_string(),
        "-c".to_string(),
        script.to_string(),
    ];
    match exec::run(&argv, dir.path(), Duration::from_secs(30), &Cancel::new()) {
        Ok(()) => Ok(std::fs::read_to_string(dir.path().join("prover.log")).unwrap()),
        Err(ExecError::Failed { stderr_tail, .. }) => Err(stderr_tail),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn an_exec_prover_cannot_reach_the_token_other_attempts_or_the_network() {
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    std::fs::write(&token, "pool-token-that-leases-every-job").unwrap();
    zkfleet_prover::sandbox::protect(vec![secrets.path().to_path_buf()]);
    let root = tempfile::tempdir().unwrap();
    let other = exec::work_dir(Some(root.path())).unwrap();
    std::fs::write(other.path().join("input.json"), "another tenant's input").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();

    // What a prover needs still works: programs of the image, its own directory.
    let fine = sh(
        "echo proof > proof.json && cat proof.json && ls /bin > /dev/null && echo ok",
        root.path(),
    );
    assert_eq!(fine.as_deref().map(str::trim), Ok("proof\nok"), "{fine:?}");

    let token_read = sh(&format!("cat {}", token.display()), root.path());
    assert!(token_read.is_err(), "the token was read: {token_read:?}");
    assert!(!format!("{token_read:?}").contains("pool-token"));

    let other_read = sh(
        &format!("cat {}/input.json", other.path().display()),
        root.path(),
    );
    assert!(
        other_read.is_err(),
        "another attempt's input was read: {other_read:?}"
    );
    let listed = sh(&format!("ls {}", root.path().display()), root.path());
    assert!(listed.is_err(), "the work root was listed: {listed:?}");

    // The test's own variables (like the agent's) are not passed on.
    let env = sh("env", root.path()).unwrap();
    assert!(!env.contains("CARGO"), "{env}");
    assert!(env.contains("HOME="), "{env}");

    // No connection, not even to the agent on loopback.
    let connect = sh(
        &format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected"),
        root.path(),
    );
    assert!(
        !matches!(&connect, Ok(out) if out.contains("connected")),
        "{connect:?}"
    );
    drop(listener);
}
