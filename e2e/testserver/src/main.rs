//! The workload of the cluster smoke tests: one static binary, three modes.
//!
//! - `serve [PORT] [FILE]`: answers every HTTP request with `zkfleet-testserver <hostname>`,
//!   or with the contents of FILE (a pod impersonating another: the adversarial tests).
//! - `fetch URL`: one HTTP GET (plain http, name resolved through the pod's
//!   resolver); prints the body, exits 0 on a 200 and 1 otherwise.
//! - `env NAME...`: prints `NAME=value` for each variable, then exits 0.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(
            args.get(1).map_or("8080", String::as_str),
            args.get(2).map(String::as_str),
        ),
        Some("fetch") if args.len() == 2 => fetch(&args[1]),
        Some("env") => {
            for name in &args[1..] {
                println!("{name}={}", std::env::var(name).unwrap_or_default());
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "usage: zkfleet-e2e-testserver serve [PORT] [FILE] | fetch http://HOST:PORT/PATH | env NAME..."
            );
            ExitCode::from(2)
        }
    }
}

fn serve(port: &str, file: Option<&str>) -> ExitCode {
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on port {port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let body = match file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("cannot read {path}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => format!("zkfleet-testserver {}\n", host.trim()),
    };
    println!("listening on :{port}");
    for stream in listener.incoming().flatten() {
        let body = body.clone();
        // One thread per connection: the smoke tests send a handful of requests.
        std::thread::spawn(move || answer(stream, &body));
    }
    ExitCode::SUCCESS
}

fn answer(mut stream: TcpStream, body: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    // Read until the end of the request head; bodies are not expected.
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
        if request.len() > 16 * 1024 {
            return;
        }
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

fn fetch(url: &str) -> ExitCode {
    match get(url) {
        Ok((_, 200, body)) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((addr, status, body)) => {
            // The address says who answered: a Service's ClusterIP can lead elsewhere until
            // kube-proxy has programmed it.
            eprintln!("GET {url} ({addr}): HTTP {status}: {body}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("GET {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn get(url: &str) -> Result<(std::net::SocketAddr, u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "80"));
    let addr = (
        host,
        port.parse::<u16>().map_err(|e| format!("bad port: {e}"))?,
    )
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolved to no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("reading the response: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or("malformed response")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("malformed status line")?;
    Ok((addr, status, body.to_string()))
}
