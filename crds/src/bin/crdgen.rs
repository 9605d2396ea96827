//! Writes the zkfleet CRD manifests from the Rust types, or checks them with `--check`.
//!
//! Usage: `crdgen [--check] [--root <repo>]`. The repository root defaults to the parent of
//! this crate, so `cargo run -p zkfleet-crds --bin crdgen` works from anywhere in the repo.

use std::path::PathBuf;
use std::process::ExitCode;

use zkfleet_crds::crdgen;

fn main() -> ExitCode {
    let mut check = false;
    // `cargo run` sets the crate directory when the program starts; prefer it to the value
    // compiled in, which a shared target directory may carry over from another checkout.
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let mut root = crate_dir.join("..");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--root" => match args.next() {
                Some(dir) => root = PathBuf::from(dir),
                None => return usage("--root needs a directory"),
            },
            "-h" | "--help" => {
                println!("usage: crdgen [--check] [--root <repo>]");
                println!(
                    "  writes {} under the repo root",
                    crdgen::OUTPUT_DIRS.join(" and ")
                );
                println!("  --check  write nothing; exit 1 and list the files that differ");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }

    if check {
        let drifted = crdgen::drifted(&root);
        if drifted.is_empty() {
            println!("CRD manifests are up to date");
            return ExitCode::SUCCESS;
        }
        eprintln!("CRD manifests differ from the Rust types:");
        for path in &drifted {
            eprintln!("  {}", path.display());
        }
        eprintln!("run `{}` and commit the result", crdgen::REGENERATE_COMMAND);
        return ExitCode::FAILURE;
    }

    match crdgen::write_all(&root) {
        Ok(written) => {
            for path in written {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("crdgen: {err}");
            ExitCode::FAILURE
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("crdgen: {problem}\nusage: crdgen [--check] [--root <repo>]");
    ExitCode::from(2)
}
