fn main() {
    eprintln!("zkfleet-prover: not built yet");
    std::process::exit(1);
}
