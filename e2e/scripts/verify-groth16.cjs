// Verifies many Groth16 proofs with snarkjs in one node process, which is far faster than one
// `snarkjs groth16 verify` per proof. The chaos suite (e2e/src/chaos.rs) uses it.
//
// Usage: NODE_PATH=<node_modules with snarkjs> node verify-groth16.cjs verification_key.json
// stdin:  one JSON object per line: {"name": ..., "proof": {...}, "publicSignals": [...]}
// stdout: one line per proof: "<name> OK" or "<name> INVALID"
"use strict";
const fs = require("fs");
const readline = require("readline");
const snarkjs = require("snarkjs");

async function main() {
    const vk = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
    const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
    for await (const line of lines) {
        if (!line.trim()) continue;
        const { name, proof, publicSignals } = JSON.parse(line);
        let ok = false;
        try {
            ok = proof !== null && (await snarkjs.groth16.verify(vk, publicSignals, proof));
        } catch (e) {
            // A proof that does not even parse is refused like one that does not verify.
            ok = false;
        }
        process.stdout.write(`${name} ${ok ? "OK" : "INVALID"}\n`);
    }
}

main().then(
    // snarkjs keeps worker threads for its curve: end the process once every line is answered.
    () => process.exit(0),
    (e) => {
        console.error(e);
        process.exit(1);
    },
);
