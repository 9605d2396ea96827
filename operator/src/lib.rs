//! zkfleet operator: the ProverPool and ProofJob controllers, the dispatcher and scaling.
