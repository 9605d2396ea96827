//! zkfleet prover pod: proving backends, parameters loader and the HTTP server.
