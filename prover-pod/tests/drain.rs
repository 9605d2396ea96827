//! The real binary: on SIGTERM it stops taking work, finishes the proof in
//! flight, answers it, and exits 0.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use common::{circuit, wait_for};

fn http(addr: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, out))
}

#[test]
fn sigterm_finishes_the_proof_in_flight_then_exits() {
    let tmp = tempfile::tempdir().unwrap();
    let (work, go) = (tmp.path().join("work"), tmp.path().join("go"));
    std::fs::create_dir(&work).unwrap();
    // An external prover that signals it started (in its work directory, the one place it may
    // write), then waits to be let go.
    let prover = tmp.path().join("slow-prover.sh");
    std::fs::write(
        &prover,
        format!(
            "#!/bin/sh\ntouch started\nwhile [ ! -e {g} ]; do sleep 0.05; done\nexec {snarkjs} \"$@\"\n",
            g = go.display(),
            snarkjs = common::fixtures().join("bin/snarkjs").display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&prover)
        .status()
        .unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let dir = circuit("mulchain");
    let mut child = Command::new(env!("CARGO_BIN_EXE_zkfleet-prover"))
        .args([
            "serve",
            "--listen",
            &addr,
            "--backend",
            "exec",
            "--exec-program",
        ])
        .arg(&prover)
        .arg("--exec-workdir")
        .arg(&work)
        .arg("--zkey")
        .arg(dir.join("circuit.zkey"))
        .arg("--wasm")
        .arg(dir.join("circuit.wasm"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("readiness", || {
        http(&addr, "GET", "/readyz", "").is_ok_and(|(s, _)| s == 200)
    });

    let input = std::fs::read_to_string(dir.join("input.json")).unwrap();
    let body = format!("{{\"inputs\": {input}}}");
    let addr2 = addr.clone();
    let in_flight = std::thread::spawn(move || http(&addr2, "POST", "/v1/prove", &body));
    let started = || {
        std::fs::read_dir(&work)
            .unwrap()
            .flatten()
            .any(|attempt| attempt.path().join("started").exists())
    };
    wait_for("the proof to start", started);

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    // Draining: no new connections are served (refused or closed unanswered).
    wait_for("the listener to close", || {
        http(&addr, "GET", "/healthz", "").map_or(true, |(s, _)| s != 200)
    });
    std::fs::write(&go, b"").unwrap();

    let (status, resp) = in_flight.join().unwrap().unwrap();
    assert_eq!(status, 200, "{resp}");
    assert!(resp.contains("pi_a"));
    assert!(child.wait().unwrap().success());
}
