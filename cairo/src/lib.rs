//! Running compiled Cairo 0 programs with cairo-vm for zkfleet's Cairo proof systems, and the
//! statement a Stwo proof must carry.
//!
//! A Cairo job's input is the program input (the JSON `cairo-run --program_input` takes): the
//! pool holds the compiled program, and both the prover and the verifier run it on the job's
//! input, so the verifier derives the statement (program and output) itself instead of
//! trusting the prover's. cairo-vm runs no Python, so the one hint form a program may use to
//! read its input is `ids.NAME = program_input['KEY']` (a number, or a decimal or `0x` hex
//! string); a program with other non-builtin hints is refused with the hint named.

use std::rc::Rc;

use cairo_vm::cairo_run::{cairo_run_program, CairoRunConfig};
use cairo_vm::hint_processor::builtin_hint_processor::builtin_hint_processor_definition::{
    BuiltinHintProcessor, HintFunc,
};
use cairo_vm::hint_processor::builtin_hint_processor::hint_utils::insert_value_from_var_name;
use cairo_vm::types::layout_name::LayoutName;
use cairo_vm::types::program::Program;
use cairo_vm::vm::errors::hint_errors::HintError;
use cairo_vm::vm::runners::cairo_runner::CairoRunner;
use cairo_vm::Felt252;
use serde_json::Value;

/// Why a program could not be run on an input. `Input` is the job's fault (its input does not
/// fit the program), `Program` the pool's.
#[derive(Debug)]
pub enum RunError {
    Program(String),
    Input(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Program(m) => write!(f, "the program cannot be run: {m}"),
            RunError::Input(m) => write!(f, "the program fails on this input: {m}"),
        }
    }
}

/// How to run: Stone proves padded runs of a named layout; Stwo proves unpadded runs of
/// `all_cairo_stwo`.
pub struct RunOptions {
    pub layout: LayoutName,
    pub pad_trace: bool,
}

/// Parses a layout name as `cairo-run --layout` spells it.
pub fn layout(name: &str) -> Result<LayoutName, String> {
    let all = [
        LayoutName::plain,
        LayoutName::small,
        LayoutName::dex,
        LayoutName::recursive,
        LayoutName::starknet,
        LayoutName::starknet_with_keccak,
        LayoutName::recursive_large_output,
        LayoutName::recursive_with_poseidon,
        LayoutName::all_solidity,
        LayoutName::all_cairo,
        LayoutName::all_cairo_stwo,
    ];
    all.into_iter().find(|l| l.to_str() == name).ok_or_else(|| {
        format!(
            "unknown layout {name}; use one of {}",
            all.map(|l| l.to_str()).join(", ")
        )
    })
}

/// A program input value as a field element: a JSON integer, or a decimal or `0x` hex string.
fn felt(value: &Value) -> Option<Felt252> {
    let text = match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    let magnitude = if let Some(hex) = digits.strip_prefix("0x") {
        (!hex.is_empty() && hex.len() <= 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| Felt252::from_hex(digits).ok())
            .flatten()?
    } else {
        (!digits.is_empty() && digits.len() <= 78 && digits.chars().all(|c| c.is_ascii_digit()))
            .then(|| Felt252::from_dec_str(digits).ok())
            .flatten()?
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// `ids.NAME = program_input['KEY']` as (NAME, KEY).
fn input_hint(code: &str) -> Option<(String, String)> {
    let (lhs, rhs) = code.trim().split_once('=')?;
    let name = lhs.trim().strip_prefix("ids.")?;
    let key = rhs
        .trim()
        .strip_prefix("program_input[")?
        .strip_suffix(']')?;
    let key = key
        .strip_prefix('\'')
        .and_then(|k| k.strip_suffix('\''))
        .or_else(|| key.strip_prefix('"').and_then(|k| k.strip_suffix('"')))?;
    let ident = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (ident(name) && ident(key)).then(|| (name.to_string(), key.to_string()))
}

/// A hint processor with cairo-vm's built-in hints plus the program-input hints `program`
/// uses, bound to `input`.
fn hint_processor(program: &Value, input: &Value) -> Result<BuiltinHintProcessor, RunError> {
    let mut processor = BuiltinHintProcessor::new_empty();
    // "hints" maps each pc to the hints that run there.
    let hints = program["hints"]
        .as_object()
        .into_iter()
        .flat_map(|h| h.values());
    let hints = hints.filter_map(|at_pc| at_pc.as_array()).flatten();
    for code in hints.filter_map(|h| h["code"].as_str()) {
        if !code.contains("program_input") {
            continue;
        }
        let Some((name, key)) = input_hint(code) else {
            return Err(RunError::Program(format!(
                "hint {code:?} reads program_input in a form zkfleet cannot run; \
                 use `ids.NAME = program_input['KEY']`"
            )));
        };
        let value = match input.get(&key) {
            Some(v) => felt(v).ok_or_else(|| {
                RunError::Input(format!(
                    "program input {key} is not an integer (give a number, or a decimal or 0x hex string)"
                ))
            })?,
            None => {
                return Err(RunError::Input(format!(
                    "the program input has no {key}; the program reads it"
                )));
            }
        };
        processor.add_hint(
            code.to_string(),
            Rc::new(HintFunc(Box::new(
                move |vm, _scopes, ids, ap_tracking, _constants| -> Result<(), HintError> {
                    insert_value_from_var_name(&name, value, vm, ids, ap_tracking)
                },
            ))),
        );
    }
    Ok(processor)
}

/// Runs `program` (compiled JSON, `--proof_mode`) on `input` (the program input JSON object)
/// in proof mode with the trace kept, relocated.
pub fn run(
    program_json: &[u8],
    input: &Value,
    options: &RunOptions,
) -> Result<CairoRunner, RunError> {
    if !input.is_object() {
        return Err(RunError::Input(
            "the program input must be a JSON object, as cairo-run's --program_input".into(),
        ));
    }
    let parsed: Value = serde_json::from_slice(program_json)
        .map_err(|e| RunError::Program(format!("not JSON: {e}")))?;
    let program = Program::from_bytes(program_json, Some("main"))
        .map_err(|e| RunError::Program(e.to_string()))?;
    let mut hints = hint_processor(&parsed, input)?;
    let config = CairoRunConfig {
        entrypoint: "main",
        trace_enabled: true,
        relocate_mem: true,
        relocate_trace: true,
        layout: options.layout,
        proof_mode: true,
        fill_holes: true,
        secure_run: None,
        disable_trace_padding: !options.pad_trace,
        allow_missing_builtins: None,
        dynamic_layout_params: None,
    };
    // Any failure once the program loaded is a failure of this run: the input's (a failed
    // assertion, a missing key), as a program that runs on no input is caught when the pool
    // is tested with its known answer.
    cairo_run_program(&program, &config, &mut hints).map_err(|e| RunError::Input(e.to_string()))
}

/// A field element as the eight little-endian 32-bit limbs Stwo's public memory holds.
pub fn limbs(value: &Felt252) -> [u32; 8] {
    let bytes = value.to_bytes_le();
    std::array::from_fn(|i| u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap()))
}

/// What a Stwo proof of `runner`'s run must claim: the program's bytecode (the public memory
/// from the initial pc up to the two cells before the initial ap) and the output segment.
pub struct Statement {
    pub program: Vec<[u32; 8]>,
    pub output: Vec<Felt252>,
}

impl Statement {
    pub fn of(runner: &CairoRunner) -> Result<Self, RunError> {
        let trace = runner
            .relocated_trace
            .as_ref()
            .and_then(|t| t.first())
            .ok_or_else(|| RunError::Program("the run left no trace".into()))?;
        let memory = &runner.relocated_memory;
        let cell = |address: usize| -> Result<Felt252, RunError> {
            memory
                .get(address)
                .copied()
                .flatten()
                .ok_or_else(|| RunError::Program(format!("memory cell {address} is empty")))
        };
        let program = (trace.pc..trace.ap.saturating_sub(2))
            .map(|a| cell(a).map(|v| limbs(&v)))
            .collect::<Result<_, _>>()?;
        let segments = runner
            .get_memory_segment_addresses()
            .map_err(|e| RunError::Program(e.to_string()))?;
        let output = match segments.get("output") {
            Some(&(begin, stop)) => (begin..stop).map(cell).collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        Ok(Statement { program, output })
    }

    /// The public outputs zkfleet reports: the output values (decimal) and the program hash.
    pub fn public_outputs(&self) -> Value {
        serde_json::json!({
            "output": self.output.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
            "programHash": program_hash(&self.program),
        })
    }
}

/// Stwo's program hash, `0x` hex: Blake2s of the program section, through cairo-air's own
/// functions, so it is the hash Stwo's tools report.
pub fn program_hash(program: &[[u32; 8]]) -> String {
    let section: cairo_air::air::MemorySection = program
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u32, *v))
        .collect();
    let hash = cairo_air::utils::construct_f252(&cairo_air::utils::encode_and_hash_memory_section(
        &section,
    ));
    format!("0x{hash:x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_hints_parse() {
        assert_eq!(
            input_hint("ids.n = program_input['n']"),
            Some(("n".into(), "n".into()))
        );
        assert_eq!(input_hint("ids.n = program_input['n'] + 1"), None);
        assert_eq!(input_hint("import os; ids.n = program_input['n']"), None);
    }

    #[test]
    fn felts_parse() {
        assert_eq!(felt(&serde_json::json!(10)), Some(Felt252::from(10)));
        assert_eq!(felt(&serde_json::json!("0x2b")), Some(Felt252::from(43)));
        assert_eq!(felt(&serde_json::json!("-1")), Some(-Felt252::from(1)));
        assert_eq!(felt(&serde_json::json!(1.5)), None);
        assert_eq!(felt(&serde_json::json!("ten")), None);
    }
}
