//! `submit`: a ProofJob built from local files, with its input inline in the manifest. A
//! Groth16 job carries one file (circuit inputs as JSON, or a `.wtns` witness); a STARK or VM
//! job carries a directory's files as `input.files`. Inputs too large to go inline are refused
//! before anything is sent, with the ways that do fit.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use kube::ResourceExt as _;
use kube::api::{ObjectMeta, PostParams};
use zkfleet_crds::v1alpha1::{
    InlineInput, InputFile, InputFormat, MAX_INLINE_INPUT_CHARS, PoolRef, ProofInput, ProofJob,
    ProofJobSpec,
};

use crate::cluster::Cluster;

/// Most characters of inline input in one job, all files together. Each inline field may hold
/// [`MAX_INLINE_INPUT_CHARS`], but etcd stores at most about 1.5 MiB per object, and the job
/// still needs room for its status (an inline proof, its attempts).
pub const MAX_INLINE_TOTAL_CHARS: usize = 1 << 20;

/// Most files of `input.files` (the CRD's limit).
pub const MAX_INPUT_FILES: usize = 16;

/// First bytes of a snarkjs `.wtns` witness file.
const WITNESS_MAGIC: &[u8] = b"wtns";

/// Where the job's input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// One file: circuit inputs (JSON) or a witness (`.wtns`).
    File(PathBuf),
    /// A directory whose files become `input.files`.
    Dir(PathBuf),
}

/// How the job is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// This name.
    Exact(String),
    /// A name the API server generates from this prefix.
    Generate(String),
    /// A name generated from the pool's name.
    Default,
}

/// Everything `submit` puts into the job.
#[derive(Debug, Clone)]
pub struct Request {
    pub pool: String,
    pub name: Name,
    pub input: Input,
    pub priority: i32,
    pub parameters_version: Option<String>,
}

/// Why the input cannot go into a ProofJob.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is neither circuit inputs as JSON nor a .wtns witness: give the circom input.json of the circuit (or a witness from snarkjs wtns calculate)"
    )]
    NotAnInput { path: PathBuf },
    #[error(
        "{what} is {chars} characters inline, more than the {limit} a ProofJob carries: put it in a ConfigMap \
         (`kubectl create configmap NAME --from-file=FILE`) or a Secret labelled zkfleet.dev/proof-input=true \
         and name it with configMapKeyRef/secretKeyRef in a manifest, or serve it over https and use url with its sha256"
    )]
    TooLarge {
        what: String,
        chars: usize,
        limit: usize,
    },
    #[error(
        "the input files of {dir} are {chars} characters inline together, more than the {limit} one ProofJob can carry \
         (etcd keeps objects under 1.5 MiB): put the large files in ConfigMaps or Secrets labelled zkfleet.dev/proof-input=true \
         and name them with input.files[].configMapKeyRef/secretKeyRef in a manifest"
    )]
    TotalTooLarge {
        dir: PathBuf,
        chars: usize,
        limit: usize,
    },
    #[error(
        "{dir} has no files: a STARK or VM job needs its prover's input files (for example inputs.json)"
    )]
    EmptyDir { dir: PathBuf },
    #[error("{dir} has {count} files; a ProofJob carries at most {MAX_INPUT_FILES}")]
    TooManyFiles { dir: PathBuf, count: usize },
    #[error(
        "{path} is a directory: --input-dir takes the files of one directory, not of its subdirectories"
    )]
    Subdirectory { path: PathBuf },
    #[error(
        "file name {name:?} cannot name an input file: use letters, digits, '.', '_' and '-', not starting with '.' or '-'"
    )]
    BadFileName { name: String },
}

/// Creates the job and returns its name (the generated one, when the name was generated).
pub async fn run(cluster: &Cluster, request: Request) -> anyhow::Result<String> {
    let input = read_input(&request.input)?;
    let job = proof_job(&request, input);
    let created = cluster
        .jobs()
        .create(&PostParams::default(), &job)
        .await
        .with_context(|| {
            format!(
                "creating the ProofJob for pool {} in namespace {}",
                request.pool, cluster.namespace
            )
        })?;
    Ok(created.name_any())
}

/// The ProofJob `request` describes, with `input` as its input.
pub fn proof_job(request: &Request, input: ProofInput) -> ProofJob {
    let metadata = match &request.name {
        Name::Exact(name) => ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        Name::Generate(prefix) => ObjectMeta {
            generate_name: Some(prefix.clone()),
            ..ObjectMeta::default()
        },
        Name::Default => ObjectMeta {
            generate_name: Some(format!("{}-", request.pool)),
            ..ObjectMeta::default()
        },
    };
    let spec = ProofJobSpec {
        pool_ref: PoolRef {
            name: request.pool.clone(),
            namespace: None,
        },
        input,
        parameters_version: request.parameters_version.clone(),
        priority: request.priority,
        timeout_seconds: None,
        max_retries: None,
        fallback: None,
        ttl_seconds_after_finished: None,
    };
    ProofJob {
        metadata,
        spec,
        status: None,
    }
}

/// Reads the input files into the job's `spec.input`.
pub fn read_input(input: &Input) -> Result<ProofInput, InputError> {
    match input {
        Input::File(path) => single_input(path, &read(path)?),
        Input::Dir(dir) => input_files(dir),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, InputError> {
    std::fs::read(path).map_err(|source| InputError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A Groth16 job's input: JSON text as circuit inputs, a `.wtns` file as a witness.
pub fn single_input(path: &Path, bytes: &[u8]) -> Result<ProofInput, InputError> {
    let what = path.display().to_string();
    let (format, inline) = if let Some(text) = json_text(bytes) {
        (InputFormat::CircuitInputs, inline_json(&what, text)?)
    } else if bytes.starts_with(WITNESS_MAGIC) {
        (InputFormat::Witness, inline_base64(&what, bytes)?)
    } else {
        return Err(InputError::NotAnInput {
            path: path.to_path_buf(),
        });
    };
    Ok(ProofInput {
        format,
        inline: Some(inline),
        ..ProofInput::default()
    })
}

/// A STARK or VM job's input: each regular file of `dir`, sorted by name, JSON inline as text
/// and anything else as base64. Hidden files (editor and OS leftovers) are skipped.
pub fn input_files(dir: &Path) -> Result<ProofInput, InputError> {
    let read_dir = |source| InputError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir)? {
        let entry = entry.map_err(read_dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            return Err(InputError::Subdirectory { path });
        }
        paths.push((name, path));
    }
    paths.sort();
    if paths.is_empty() {
        return Err(InputError::EmptyDir {
            dir: dir.to_path_buf(),
        });
    }
    if paths.len() > MAX_INPUT_FILES {
        return Err(InputError::TooManyFiles {
            dir: dir.to_path_buf(),
            count: paths.len(),
        });
    }
    let mut files = Vec::new();
    for (name, path) in paths {
        files.push(input_file(&name, &read(&path)?)?);
    }
    let chars: usize = files
        .iter()
        .filter_map(|f| f.inline.as_ref())
        .map(inline_chars)
        .sum();
    if chars > MAX_INLINE_TOTAL_CHARS {
        return Err(InputError::TotalTooLarge {
            dir: dir.to_path_buf(),
            chars,
            limit: MAX_INLINE_TOTAL_CHARS,
        });
    }
    Ok(ProofInput {
        files: Some(files),
        ..ProofInput::default()
    })
}

/// One named input file, inline.
pub fn input_file(name: &str, bytes: &[u8]) -> Result<InputFile, InputError> {
    if !plain_file_name(name) {
        return Err(InputError::BadFileName { name: name.into() });
    }
    let inline = match json_text(bytes) {
        Some(text) => inline_json(name, text)?,
        None => inline_base64(name, bytes)?,
    };
    Ok(InputFile {
        name: name.into(),
        inline: Some(inline),
        ..InputFile::default()
    })
}

/// The CRD's rule for `input.files[].name`: `^[A-Za-z0-9_][A-Za-z0-9._-]*$`.
fn plain_file_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name.len() <= 253
}

/// The bytes as text, when they are JSON.
fn json_text(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
    Some(text)
}

fn inline_json(what: &str, text: &str) -> Result<InlineInput, InputError> {
    let inline = InlineInput {
        json: Some(text.into()),
        base64: None,
    };
    check_inline(what, inline)
}

fn inline_base64(what: &str, bytes: &[u8]) -> Result<InlineInput, InputError> {
    let inline = InlineInput {
        json: None,
        base64: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
    };
    check_inline(what, inline)
}

fn check_inline(what: &str, inline: InlineInput) -> Result<InlineInput, InputError> {
    let chars = inline_chars(&inline);
    let limit = MAX_INLINE_INPUT_CHARS as usize;
    if chars > limit {
        let what = match inline.base64 {
            Some(_) => format!("{what} (as base64)"),
            None => what.into(),
        };
        return Err(InputError::TooLarge { what, chars, limit });
    }
    Ok(inline)
}

/// Characters as the API server counts them for `maxLength`: Unicode code points.
fn inline_chars(inline: &InlineInput) -> usize {
    [&inline.json, &inline.base64]
        .into_iter()
        .flatten()
        .map(|s| s.chars().count())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(name: Name, input: Input) -> Request {
        Request {
            pool: "alpha".into(),
            name,
            input,
            priority: 7,
            parameters_version: Some("v2".into()),
        }
    }

    #[test]
    fn circuit_inputs_go_inline_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("input.json");
        std::fs::write(&path, r#"{"a": "3", "b": "11"}"#).unwrap();
        let req = request(Name::Exact("plug".into()), Input::File(path));
        let job = proof_job(&req, read_input(&req.input).unwrap());
        let value = serde_json::to_value(&job).unwrap();
        assert_eq!(value["apiVersion"], "zkfleet.dev/v1alpha1");
        assert_eq!(value["kind"], "ProofJob");
        assert_eq!(value["metadata"]["name"], "plug");
        assert_eq!(
            value["spec"],
            json!({
                "poolRef": {"name": "alpha"},
                "input": {"format": "circuit-inputs", "inline": {"json": r#"{"a": "3", "b": "11"}"#}},
                "parametersVersion": "v2",
                "priority": 7,
            })
        );
    }

    #[test]
    fn a_witness_goes_inline_as_base64() {
        let mut wtns = b"wtns".to_vec();
        wtns.extend([2, 0, 0, 0, 0xff, 0x00]);
        let input = single_input(Path::new("w.wtns"), &wtns).unwrap();
        assert_eq!(input.format, InputFormat::Witness);
        assert_eq!(
            input.inline.unwrap().base64.as_deref(),
            Some(
                base64::engine::general_purpose::STANDARD
                    .encode(&wtns)
                    .as_str()
            )
        );
        let err = single_input(Path::new("x.bin"), b"\x00\x01garbage").unwrap_err();
        assert!(err.to_string().contains("neither circuit inputs"), "{err}");
    }

    #[test]
    fn names_are_exact_or_generated_from_the_pool() {
        let input = ProofInput::default();
        let generated = |name| proof_job(&request(name, Input::File("x".into())), input.clone());
        let job = generated(Name::Default);
        assert_eq!(job.metadata.name, None);
        assert_eq!(job.metadata.generate_name.as_deref(), Some("alpha-"));
        let job = generated(Name::Generate("nightly-".into()));
        assert_eq!(job.metadata.generate_name.as_deref(), Some("nightly-"));
    }

    #[test]
    fn a_directory_becomes_named_files_json_as_text_binary_as_base64() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("public_input.json"),
            r#"{"layout": "small"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("trace.bin"), [0u8, 159, 146, 150]).unwrap();
        std::fs::write(dir.path().join(".DS_Store"), b"junk").unwrap();
        let input = read_input(&Input::Dir(dir.path().into())).unwrap();
        let value = serde_json::to_value(&input).unwrap();
        assert_eq!(
            value["files"],
            json!([
                {"name": "public_input.json", "inline": {"json": r#"{"layout": "small"}"#}},
                {"name": "trace.bin", "inline": {"base64": "AJ+Slg=="}},
            ])
        );
        assert!(value.get("inline").is_none());
    }

    #[test]
    fn a_file_over_the_inline_limit_is_refused_with_what_to_do() {
        let big = vec![7u8; 200_000]; // 266 668 characters as base64
        let err = input_file("memory.bin", &big).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, InputError::TooLarge { chars: 266_668, .. }),
            "{text}"
        );
        assert!(text.contains("memory.bin (as base64)"), "{text}");
        assert!(text.contains("ConfigMap"), "{text}");
        assert!(input_file("memory.bin", &vec![7u8; 196_608]).is_ok());
    }

    #[test]
    fn files_that_together_overflow_one_object_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            std::fs::write(dir.path().join(format!("part{i}.bin")), vec![1u8; 190_000]).unwrap();
        }
        let err = read_input(&Input::Dir(dir.path().into())).unwrap_err();
        assert!(matches!(err, InputError::TotalTooLarge { .. }), "{err}");
    }

    #[test]
    fn directories_the_crd_would_refuse_are_refused_here() {
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_input(&Input::Dir(empty.path().into())),
            Err(InputError::EmptyDir { .. })
        ));
        let nested = tempfile::tempdir().unwrap();
        std::fs::create_dir(nested.path().join("sub")).unwrap();
        assert!(matches!(
            read_input(&Input::Dir(nested.path().into())),
            Err(InputError::Subdirectory { .. })
        ));
        assert!(matches!(
            input_file("-x", b"{}"),
            Err(InputError::BadFileName { .. })
        ));
        assert!(matches!(
            input_file("a b.json", b"{}"),
            Err(InputError::BadFileName { .. })
        ));
        let many = tempfile::tempdir().unwrap();
        for i in 0..17 {
            std::fs::write(many.path().join(format!("f{i}.json")), b"{}").unwrap();
        }
        assert!(matches!(
            read_input(&Input::Dir(many.path().into())),
            Err(InputError::TooManyFiles { count: 17, .. })
        ));
    }
}
