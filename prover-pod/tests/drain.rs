//! The real binary: on SIGTERM it stops taking work, finishes the proof in
//! flight, answers it, and exits 0.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
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
    let (started, go) = (tmp.path().join("started"), tmp.path().join("go"));
    // An external prover that signals it started, then waits to be let go.
    let prover = tmp.path().join("slow-prover.sh");
    std::fs::write(
        &prover,
        format!(
            "#!/bin/sh\ntouch {s}\nwhile [ ! -e {g} ]; do sleep 0.05; done\nexec {snarkjs} \"$@\"\n",
            s = started.display(),
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
    wait_for("the proof to start", || Path::new(&started).exists());

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
