//! Computes witnesses from circuit input JSON by running the circuit's
//! circom-generated `.wasm` (circom 2 witness-calculator ABI) in wasmi, a
//! small pure-Rust interpreter: far lighter to build than wasmer, and fast
//! enough since witness generation is a small part of a proof.

use ark_bn254::Fr;
use ark_ff::{BigInt, PrimeField};
use num_bigint::{BigInt as BigInteger, BigUint, Sign};
use serde_json::Value;
use wasmi::{Caller, Engine, Extern, Instance, Linker, Module, Store, TypedFunc};

/// Why a witness could not be computed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WitnessError {
    #[error("circuit wasm is not a circom witness generator: {0}")]
    BadWasm(String),
    #[error("circuit wasm is for another prime field (not BN254)")]
    WrongField,
    #[error("input JSON must be an object of signal names to values")]
    NotAnObject,
    #[error("input signal `{0}` does not exist in the circuit")]
    UnknownSignal(String),
    #[error("input signal `{name}` takes {expected} values, got {got}")]
    WrongSize {
        name: String,
        expected: usize,
        got: usize,
    },
    /// The value itself is never echoed: inputs are often secret, and this message reaches the
    /// job's status and the logs.
    #[error(
        "input signal `{name}`, value #{index}: not an integer in the BN254 scalar field (use a JSON integer or a string of decimal or 0x-hex digits)"
    )]
    NotAFieldValue { name: String, index: usize },
    #[error("input JSON sets {set} of the circuit's {expected} input values: a signal is missing")]
    MissingSignal { set: usize, expected: usize },
    #[error("circuit rejected the inputs: {0}")]
    Rejected(String),
}

const WITNESS_STACK_BYTES: usize = 64 << 20;

/// A compiled circom witness generator; cheap to share between threads.
pub struct WitnessCalculator {
    engine: Engine,
    module: Module,
    n32: usize,
    witness_size: usize,
}

#[derive(Default)]
struct HostState {
    exception: Option<i32>,
    message: String,
}

type Wasm<P, R> = TypedFunc<P, R>;

struct Exports {
    init: Wasm<i32, ()>,
    write_shared: Wasm<(i32, i32), ()>,
    read_shared: Wasm<i32, i32>,
    set_input: Wasm<(i32, i32, i32), ()>,
    input_size_of: Wasm<(i32, i32), i32>,
    input_count: Wasm<(), i32>,
    get_witness: Wasm<i32, ()>,
}

fn bad(e: impl std::fmt::Display) -> WitnessError {
    WitnessError::BadWasm(e.to_string())
}

fn read_message(caller: &mut Caller<'_, HostState>) -> String {
    let Some(f) = caller
        .get_export("getMessageChar")
        .and_then(Extern::into_func)
    else {
        return String::new();
    };
    let Ok(f) = f.typed::<(), i32>(&*caller) else {
        return String::new();
    };
    let mut s = String::new();
    while let Ok(c) = f.call(&mut *caller, ()) {
        if c <= 0 || s.len() > 4096 {
            break;
        }
        s.push(char::from_u32(c as u32).unwrap_or('?'));
    }
    s
}

impl WitnessCalculator {
    /// Compiles and checks a circuit's wasm.
    pub fn new(wasm: &[u8]) -> Result<Self, WitnessError> {
        let engine = Engine::default();
        let module = Module::new(&engine, wasm).map_err(bad)?;
        let mut calc = WitnessCalculator {
            engine,
            module,
            n32: 0,
            witness_size: 0,
        };
        let (mut store, instance) = calc.instantiate()?;
        let n32 = Self::typed::<(), i32>(&store, &instance, "getFieldNumLen32")?
            .call(&mut store, ())
            .map_err(bad)?;
        if n32 != 8 {
            return Err(WitnessError::WrongField);
        }
        Self::typed::<(), ()>(&store, &instance, "getRawPrime")?
            .call(&mut store, ())
            .map_err(bad)?;
        let read = Self::typed::<i32, i32>(&store, &instance, "readSharedRWMemory")?;
        let mut limbs = [0u64; 4];
        for (j, l) in limbs.iter_mut().enumerate() {
            let lo = read.call(&mut store, 2 * j as i32).map_err(bad)? as u32 as u64;
            let hi = read.call(&mut store, 2 * j as i32 + 1).map_err(bad)? as u32 as u64;
            *l = lo | hi << 32;
        }
        if BigInt(limbs) != Fr::MODULUS {
            return Err(WitnessError::WrongField);
        }
        let size = Self::typed::<(), i32>(&store, &instance, "getWitnessSize")?
            .call(&mut store, ())
            .map_err(bad)?;
        calc.n32 = n32 as usize;
        calc.witness_size = usize::try_from(size).map_err(bad)?;
        Ok(calc)
    }

    /// Number of values in a witness of this circuit.
    pub fn witness_size(&self) -> usize {
        self.witness_size
    }

    fn typed<P: wasmi::WasmParams, R: wasmi::WasmResults>(
        store: &Store<HostState>,
        instance: &Instance,
        name: &str,
    ) -> Result<TypedFunc<P, R>, WitnessError> {
        instance
            .get_typed_func::<P, R>(store, name)
            .map_err(|e| bad(format!("export {name}: {e}")))
    }

    fn instantiate(&self) -> Result<(Store<HostState>, Instance), WitnessError> {
        let mut store = Store::new(&self.engine, HostState::default());
        let mut linker = Linker::<HostState>::new(&self.engine);
        let link = |e: wasmi::errors::LinkerError| bad(e);
        linker
            .func_wrap(
                "runtime",
                "exceptionHandler",
                |mut c: Caller<'_, HostState>, code: i32| {
                    c.data_mut().exception = Some(code);
                    Err::<(), _>(wasmi::Error::new("circom exception"))
                },
            )
            .map_err(link)?;
        let collect = |mut c: Caller<'_, HostState>| {
            let m = read_message(&mut c);
            let state = c.data_mut();
            if state.message.len() < 4096 {
                state.message.push_str(&m);
            }
        };
        linker
            .func_wrap("runtime", "printErrorMessage", collect)
            .map_err(link)?;
        linker
            .func_wrap("runtime", "writeBufferMessage", collect)
            .map_err(link)?;
        linker
            .func_wrap(
                "runtime",
                "showSharedRWMemory",
                |_: Caller<'_, HostState>| {},
            )
            .map_err(link)?;
        let instance = linker
            .instantiate_and_start(&mut store, &self.module)
            .map_err(bad)?;
        Ok((store, instance))
    }

    fn exports(store: &Store<HostState>, instance: &Instance) -> Result<Exports, WitnessError> {
        Ok(Exports {
            init: Self::typed(store, instance, "init")?,
            write_shared: Self::typed(store, instance, "writeSharedRWMemory")?,
            read_shared: Self::typed(store, instance, "readSharedRWMemory")?,
            set_input: Self::typed(store, instance, "setInputSignal")?,
            input_size_of: Self::typed(store, instance, "getInputSignalSize")?,
            input_count: Self::typed(store, instance, "getInputSize")?,
            get_witness: Self::typed(store, instance, "getWitness")?,
        })
    }

    /// Computes the full witness (`witness[0] = 1`) for circuit inputs given
    /// as a JSON object, as circom's `witness_calculator.js` does.
    pub fn calculate(&self, input: &Value) -> Result<Vec<Fr>, WitnessError> {
        // Circuit code can nest deeply and the interpreter recurses with it:
        // run on a thread with a generous stack rather than the caller's.
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("witness".into())
                .stack_size(WITNESS_STACK_BYTES)
                .spawn_scoped(s, || self.calculate_here(input))
                .map_err(|e| WitnessError::Rejected(format!("cannot start witness thread: {e}")))?
                .join()
                .unwrap_or_else(|_| Err(WitnessError::Rejected("witness generator crashed".into())))
        })
    }

    fn calculate_here(&self, input: &Value) -> Result<Vec<Fr>, WitnessError> {
        let obj = input.as_object().ok_or(WitnessError::NotAnObject)?;
        let (mut store, instance) = self.instantiate()?;
        let x = Self::exports(&store, &instance)?;
        let rejected = |store: &Store<HostState>, e: wasmi::Error| {
            let s = store.data();
            match s.exception {
                Some(code) => WitnessError::Rejected(exception_text(code, &s.message)),
                None => WitnessError::Rejected(format!("witness generator trapped: {e}")),
            }
        };
        x.init
            .call(&mut store, 1)
            .map_err(|e| rejected(&store, e))?;
        let mut set = 0usize;
        for (name, value) in obj {
            let h = fnv1a64(name.as_bytes());
            let (msb, lsb) = ((h >> 32) as u32 as i32, h as u32 as i32);
            let size = x
                .input_size_of
                .call(&mut store, (msb, lsb))
                .map_err(|e| rejected(&store, e))?;
            // Unknown names get a negative size (older circom) or 0 (newer).
            let Some(size) = usize::try_from(size).ok().filter(|&s| s > 0) else {
                return Err(WitnessError::UnknownSignal(name.clone()));
            };
            let mut values = Vec::new();
            flatten(name, value, &mut values)?;
            if values.len() != size {
                return Err(WitnessError::WrongSize {
                    name: name.clone(),
                    expected: size,
                    got: values.len(),
                });
            }
            for (i, v) in values.iter().enumerate() {
                for (j, word) in words(v).iter().enumerate().take(self.n32) {
                    x.write_shared
                        .call(&mut store, (j as i32, *word as i32))
                        .map_err(|e| rejected(&store, e))?;
                }
                x.set_input
                    .call(&mut store, (msb, lsb, i as i32))
                    .map_err(|e| rejected(&store, e))?;
                set += 1;
            }
        }
        let expected = x
            .input_count
            .call(&mut store, ())
            .map_err(|e| rejected(&store, e))?;
        let expected = usize::try_from(expected).unwrap_or(0);
        if set < expected {
            return Err(WitnessError::MissingSignal { set, expected });
        }
        let mut witness = Vec::with_capacity(self.witness_size);
        for i in 0..self.witness_size {
            x.get_witness
                .call(&mut store, i as i32)
                .map_err(|e| rejected(&store, e))?;
            let mut limbs = [0u64; 4];
            for (j, l) in limbs.iter_mut().enumerate() {
                let lo = x
                    .read_shared
                    .call(&mut store, 2 * j as i32)
                    .map_err(|e| rejected(&store, e))? as u32 as u64;
                let hi = x
                    .read_shared
                    .call(&mut store, 2 * j as i32 + 1)
                    .map_err(|e| rejected(&store, e))? as u32 as u64;
                *l = lo | hi << 32;
            }
            let v = Fr::from_bigint(BigInt(limbs)).ok_or_else(|| {
                WitnessError::Rejected(format!("witness value #{i} is out of range"))
            })?;
            witness.push(v);
        }
        Ok(witness)
    }
}

fn exception_text(code: i32, message: &str) -> String {
    let what = match code {
        1 => "signal not found",
        2 => "too many signals set",
        3 => "signal already set",
        4 => "assert failed",
        5 => "not enough memory",
        6 => "input signal array access exceeds the size",
        _ => "unknown error",
    };
    let message = message.trim();
    if message.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {message}")
    }
}

/// 64-bit FNV-1a, which circom uses to name signals in the wasm.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The little-endian 32-bit words of a field element's canonical integer.
fn words(v: &Fr) -> [u32; 8] {
    let mut out = [0u32; 8];
    for (i, l) in v.into_bigint().0.iter().enumerate() {
        out[2 * i] = *l as u32;
        out[2 * i + 1] = (*l >> 32) as u32;
    }
    out
}

fn flatten(name: &str, v: &Value, out: &mut Vec<Fr>) -> Result<(), WitnessError> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|i| flatten(name, i, out)),
        _ => {
            let index = out.len();
            out.push(field_value(v).ok_or_else(|| WitnessError::NotAFieldValue {
                name: name.to_string(),
                index,
            })?);
            Ok(())
        }
    }
}

/// Parses one signal value: a JSON integer, or a string holding a decimal or
/// `0x` hexadecimal integer, optionally negative, whose magnitude is below
/// the field modulus (negative values are taken modulo the field, as circom
/// does).
pub fn field_value(v: &Value) -> Option<Fr> {
    let n: BigInteger = match v {
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => BigInteger::from(i),
            (_, Some(u)) => BigInteger::from(u),
            _ => return None,
        },
        Value::String(s) => {
            let s = s.trim();
            let (neg, digits) = match s.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, s),
            };
            let mag = match digits
                .strip_prefix("0x")
                .or_else(|| digits.strip_prefix("0X"))
            {
                Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    BigUint::parse_bytes(hex.as_bytes(), 16)?
                }
                Some(_) => return None,
                None if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                    BigUint::parse_bytes(digits.as_bytes(), 10)?
                }
                None => return None,
            };
            BigInteger::from_biguint(if neg { Sign::Minus } else { Sign::Plus }, mag)
        }
        _ => return None,
    };
    let p = BigInteger::from(BigUint::from(Fr::MODULUS));
    if n.magnitude() >= p.magnitude() {
        return None;
    }
    let n = if n.sign() == Sign::Minus { n + &p } else { n };
    let (_, bytes) = n.to_bytes_le();
    Some(Fr::from_le_bytes_mod_order(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fnv_matches_circom() {
        // FNV-1a 64 of the empty string and of "a" (reference values).
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn field_values() {
        assert_eq!(field_value(&json!(5)), Some(Fr::from(5u64)));
        assert_eq!(field_value(&json!("5")), Some(Fr::from(5u64)));
        assert_eq!(field_value(&json!("0x10")), Some(Fr::from(16u64)));
        assert_eq!(field_value(&json!(-1)), Some(-Fr::from(1u64)));
        assert_eq!(field_value(&json!("-2")), Some(-Fr::from(2u64)));
        let p = BigUint::from(Fr::MODULUS).to_string();
        assert_eq!(field_value(&json!(p)), None);
        for bad in [
            json!("abc"),
            json!(1.5),
            json!(""),
            json!("0x"),
            json!(null),
            json!(true),
            json!({}),
        ] {
            assert_eq!(field_value(&bad), None, "{bad}");
        }
    }
}
