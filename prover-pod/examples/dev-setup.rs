//! An insecure, fast Groth16 setup for benchmarks: turns a circom `.r1cs`
//! into a snarkjs-compatible `.zkey` from one random secret (τ, α, β, γ, δ)
//! that is thrown away but never protected. Proofs made with the key verify
//! with snarkjs; never use such a key for anything but measurements.
//!
//! Usage: cargo run --release -p zkfleet-prover --example dev-setup -- circuit.r1cs out.zkey

use anyhow::{Context, bail, ensure};
use ark_bn254::{Fq, Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::{CurveGroup, PrimeGroup, scalar_mul::ScalarMul};
use ark_ff::{BigInt, Field, One, PrimeField, UniformRand, Zero};
use ark_poly::{EvaluationDomain, Radix2EvaluationDomain};
use rayon::prelude::*;

type Lc = Vec<(usize, Fr)>;

struct R1cs {
    n_wires: usize,
    n_public: usize,
    constraints: Vec<[Lc; 3]>,
}

fn u32_at(b: &[u8], at: usize) -> anyhow::Result<u32> {
    Ok(u32::from_le_bytes(
        b.get(at..at + 4).context("r1cs truncated")?.try_into()?,
    ))
}

fn parse_r1cs(b: &[u8]) -> anyhow::Result<R1cs> {
    ensure!(b.get(..4) == Some(b"r1cs".as_slice()), "not an r1cs file");
    let n_sections = u32_at(b, 8)?;
    let mut pos = 12;
    let (mut header, mut body) = (None, None);
    for _ in 0..n_sections {
        let ty = u32_at(b, pos)?;
        let size = u64::from_le_bytes(
            b.get(pos + 4..pos + 12)
                .context("r1cs truncated")?
                .try_into()?,
        ) as usize;
        let data = b.get(pos + 12..pos + 12 + size).context("r1cs truncated")?;
        match ty {
            1 => header = Some(data),
            2 => body = Some(data),
            _ => {}
        }
        pos += 12 + size;
    }
    let h = header.context("no header")?;
    ensure!(u32_at(h, 0)? == 32, "not a BN254 r1cs");
    let n_wires = u32_at(h, 36)? as usize;
    let n_public = (u32_at(h, 40)? + u32_at(h, 44)?) as usize;
    let n_constraints = u32_at(h, 60)? as usize;
    let body = body.context("no constraints")?;
    let mut pos = 0;
    let mut constraints = Vec::with_capacity(n_constraints);
    for _ in 0..n_constraints {
        let mut lcs: [Lc; 3] = Default::default();
        for lc in &mut lcs {
            let n = u32_at(body, pos)? as usize;
            pos += 4;
            for _ in 0..n {
                let wire = u32_at(body, pos)? as usize;
                let bytes = body.get(pos + 4..pos + 36).context("r1cs truncated")?;
                let mut limbs = [0u64; 4];
                for (i, l) in limbs.iter_mut().enumerate() {
                    *l = u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into()?);
                }
                let Some(v) = Fr::from_bigint(BigInt(limbs)) else {
                    bail!("coefficient out of range")
                };
                lc.push((wire, v));
                pos += 36;
            }
        }
        constraints.push(lcs);
    }
    Ok(R1cs {
        n_wires,
        n_public,
        constraints,
    })
}

fn put_u32(o: &mut Vec<u8>, v: u32) {
    o.extend_from_slice(&v.to_le_bytes());
}
fn put_limbs(o: &mut Vec<u8>, l: &[u64; 4]) {
    for x in l {
        o.extend_from_slice(&x.to_le_bytes());
    }
}
fn put_fq(o: &mut Vec<u8>, f: &Fq) {
    put_limbs(o, &f.0.0); // Montgomery form, as snarkjs writes it
}
fn put_g1(o: &mut Vec<u8>, p: &G1Affine) {
    if p.infinity {
        o.extend_from_slice(&[0; 64]);
    } else {
        put_fq(o, &p.x);
        put_fq(o, &p.y);
    }
}
fn put_g2(o: &mut Vec<u8>, p: &G2Affine) {
    if p.infinity {
        o.extend_from_slice(&[0; 128]);
    } else {
        for f in [p.x.c0, p.x.c1, p.y.c0, p.y.c1] {
            put_fq(o, &f);
        }
    }
}
fn section(o: &mut Vec<u8>, ty: u32, body: &[u8]) {
    put_u32(o, ty);
    o.extend_from_slice(&(body.len() as u64).to_le_bytes());
    o.extend_from_slice(body);
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    ensure!(args.len() == 3, "usage: dev-setup circuit.r1cs out.zkey");
    let r1cs = parse_r1cs(&std::fs::read(&args[1])?)?;
    let (n_vars, n_public) = (r1cs.n_wires, r1cs.n_public);
    let rows = r1cs.constraints.len() + n_public + 1;
    let domain = Radix2EvaluationDomain::<Fr>::new(rows).context("circuit too large")?;
    let n = domain.size();
    let double = Radix2EvaluationDomain::<Fr>::new(2 * n).context("circuit too large")?;
    let coset = domain.get_coset(double.group_gen()).context("no coset")?;

    let mut rng = rand::rngs::OsRng;
    let [tau, alpha, beta, gamma, delta] = [(); 5].map(|_| Fr::rand(&mut rng));
    let lagrange = domain.evaluate_all_lagrange_coefficients(tau);

    // u, v, w: the QAP polynomials of each wire at τ; the public inputs get
    // the extra constraints snarkjs adds (A[nConstraints + s][s] = 1).
    let (mut u, mut v, mut w) = (
        vec![Fr::zero(); n_vars],
        vec![Fr::zero(); n_vars],
        vec![Fr::zero(); n_vars],
    );
    let mut coefs = Vec::new();
    let r_squared_factor = Fr::from(2u64).pow([256u64]); // stored coefficients carry an extra R
    for (j, [a, b, c]) in r1cs.constraints.iter().enumerate() {
        for (m, lc) in [(0u32, a), (1, b)] {
            for (wire, val) in lc {
                coefs.push((m, j as u32, *wire as u32, *val));
            }
        }
        for (wire, val) in a {
            u[*wire] += lagrange[j] * val;
        }
        for (wire, val) in b {
            v[*wire] += lagrange[j] * val;
        }
        for (wire, val) in c {
            w[*wire] += lagrange[j] * val;
        }
    }
    for (s, u_s) in u.iter_mut().enumerate().take(n_public + 1) {
        let j = r1cs.constraints.len() + s;
        coefs.push((0, j as u32, s as u32, Fr::one()));
        *u_s += lagrange[j];
    }

    let g1 = G1Projective::generator();
    let g2 = G2Projective::generator();
    let (gamma_inv, delta_inv) = (
        gamma.inverse().context("γ = 0")?,
        delta.inverse().context("δ = 0")?,
    );
    let k: Vec<Fr> = (0..n_vars)
        .into_par_iter()
        .map(|i| beta * u[i] + alpha * v[i] + w[i])
        .collect();
    let ic: Vec<Fr> = k[..=n_public].iter().map(|x| *x * gamma_inv).collect();
    let l: Vec<Fr> = k[n_public + 1..].iter().map(|x| *x * delta_inv).collect();
    // H_i = −Z(τ)·L'_i(τ) / (2δ) over the odd coset, where Z(x) = xⁿ − 1.
    let z_tau = domain.evaluate_vanishing_polynomial(tau);
    let scale = -z_tau * (Fr::from(2u64) * delta).inverse().context("δ = 0")?;
    let h: Vec<Fr> = coset
        .evaluate_all_lagrange_coefficients(tau)
        .iter()
        .map(|x| *x * scale)
        .collect();

    let mut head = Vec::new();
    put_u32(&mut head, 32);
    put_limbs(&mut head, &Fq::MODULUS.0);
    put_u32(&mut head, 32);
    put_limbs(&mut head, &Fr::MODULUS.0);
    put_u32(&mut head, n_vars as u32);
    put_u32(&mut head, n_public as u32);
    put_u32(&mut head, n as u32);
    put_g1(&mut head, &(g1 * alpha).into_affine());
    put_g1(&mut head, &(g1 * beta).into_affine());
    put_g2(&mut head, &(g2 * beta).into_affine());
    put_g2(&mut head, &(g2 * gamma).into_affine());
    put_g1(&mut head, &(g1 * delta).into_affine());
    put_g2(&mut head, &(g2 * delta).into_affine());

    let g1s = |s: &[Fr]| {
        let mut o = Vec::with_capacity(s.len() * 64);
        g1.batch_mul(s).iter().for_each(|p| put_g1(&mut o, p));
        o
    };
    let mut coef_sec = Vec::new();
    put_u32(&mut coef_sec, coefs.len() as u32);
    for (m, c, s, val) in &coefs {
        put_u32(&mut coef_sec, *m);
        put_u32(&mut coef_sec, *c);
        put_u32(&mut coef_sec, *s);
        put_limbs(&mut coef_sec, &(*val * r_squared_factor).0.0);
    }
    let mut b2 = Vec::with_capacity(n_vars * 128);
    g2.batch_mul(&v).iter().for_each(|p| put_g2(&mut b2, p));

    let mut out = Vec::new();
    out.extend_from_slice(b"zkey");
    put_u32(&mut out, 1);
    put_u32(&mut out, 10);
    section(&mut out, 1, &1u32.to_le_bytes());
    section(&mut out, 2, &head);
    section(&mut out, 3, &g1s(&ic));
    section(&mut out, 4, &coef_sec);
    section(&mut out, 5, &g1s(&u));
    section(&mut out, 6, &g1s(&v));
    section(&mut out, 7, &b2);
    section(&mut out, 8, &g1s(&l));
    section(&mut out, 9, &g1s(&h));
    let mut contributions = vec![0u8; 64];
    put_u32(&mut contributions, 0);
    section(&mut out, 10, &contributions);
    std::fs::write(&args[2], out)?;
    eprintln!(
        "dev-setup: {n_vars} signals, {n_public} public, domain 2^{}",
        n.trailing_zeros()
    );
    Ok(())
}
