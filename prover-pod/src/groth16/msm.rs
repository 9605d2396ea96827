//! Multi-scalar multiplication over the proving key's affine bases.
//!
//! Pippenger with signed window digits (windows in parallel, as arkworks
//! does), but the buckets are kept in affine form and filled with batched
//! affine additions: a batch of independent bucket additions shares one
//! field inversion (Montgomery's trick), so an addition costs about 6
//! multiplications instead of the 11 of a mixed Jacobian addition.

use ark_ec::short_weierstrass::{Affine, Projective, SWCurveConfig};
use ark_ec::{AdditiveGroup, AffineRepr, CurveGroup, VariableBaseMSM};
use ark_ff::{BigInteger, Field, PrimeField, Zero};
use rayon::prelude::*;

use crate::cancel::Cancel;

type BigInt<P> = <<P as ark_ec::CurveConfig>::ScalarField as PrimeField>::BigInt;

/// Below this many terms the plain arkworks MSM is as fast.
const SMALL: usize = 1 << 10;

/// Windows with fewer buckets (the top one) keep them in projective form:
/// a batch would hold few additions before hitting a busy bucket.
const MIN_BUCKETS: usize = 1 << 10;

/// Scalars in the canonical (non-Montgomery) form the MSM reads.
pub fn to_bigints<F: PrimeField>(scalars: &[F]) -> Vec<F::BigInt> {
    scalars.par_iter().map(|s| s.into_bigint()).collect()
}

/// Scalars cut into signed window digits, once for every MSM over them: the proof's A,
/// B1 and B2 all run over the witness, and the digits are n × windows words each.
pub struct Digits<'a, F: PrimeField> {
    scalars: &'a [F::BigInt],
    /// Window width in bits; 0 when there are too few scalars for windows to pay.
    c: usize,
    windows: usize,
    /// `digits[i * windows + w]` is window `w` of scalar `i`.
    digits: Vec<i32>,
}

impl<'a, F: PrimeField> Digits<'a, F> {
    pub fn new(scalars: &'a [F::BigInt]) -> Self {
        let n = scalars.len();
        if n < SMALL {
            return Digits {
                scalars,
                c: 0,
                windows: 0,
                digits: Vec::new(),
            };
        }
        let c = window_bits(n);
        // The top window has fewer than c bits, so its digit (plus the carry from
        // below) never exceeds 2^(c-1) and needs no further carry.
        let windows = F::MODULUS_BIT_SIZE as usize / c + 1;
        let mut digits = vec![0i32; n * windows];
        digits
            .par_chunks_mut(windows)
            .zip(scalars.par_iter())
            .for_each(|(d, s)| signed_digits(s, c, d));
        Digits {
            scalars,
            c,
            windows,
            digits,
        }
    }
}

/// `sum(scalars[i] * bases[i])` over the common prefix of both slices.
///
/// Once `cancel` is raised, windows not yet started are skipped and the sum is
/// meaningless; the caller checks `cancel` and discards it.
pub fn msm<P: SWCurveConfig>(
    bases: &[Affine<P>],
    scalars: &[BigInt<P>],
    cancel: &Cancel,
) -> Projective<P>
where
    Projective<P>: VariableBaseMSM<MulBase = Affine<P>, ScalarField = P::ScalarField>,
{
    let n = bases.len().min(scalars.len());
    msm_digits(bases, &Digits::new(&scalars[..n]), cancel)
}

/// [`msm`] over scalars already cut into digits, over the common prefix of both.
pub fn msm_digits<P: SWCurveConfig>(
    bases: &[Affine<P>],
    digits: &Digits<'_, P::ScalarField>,
    cancel: &Cancel,
) -> Projective<P>
where
    Projective<P>: VariableBaseMSM<MulBase = Affine<P>, ScalarField = P::ScalarField>,
{
    let n = bases.len().min(digits.scalars.len());
    let bases = &bases[..n];
    let (c, windows) = (digits.c, digits.windows);
    if c == 0 {
        return <Projective<P> as VariableBaseMSM>::msm_bigint(bases, &digits.scalars[..n]);
    }
    let num_bits = P::ScalarField::MODULUS_BIT_SIZE as usize;
    let digits = &digits.digits;
    let sums: Vec<Projective<P>> = (0..windows)
        .into_par_iter()
        .map(|w| {
            if cancel.is_cancelled() {
                return Projective::<P>::zero();
            }
            // Digits of the top window are at most 2^(its bits).
            let top = num_bits - c * (windows - 1);
            let n_buckets = if w + 1 == windows {
                1 << top
            } else {
                1 << (c - 1)
            };
            window_sum(bases, digits, windows, w, n_buckets)
        })
        .collect();
    let mut total = Projective::<P>::zero();
    for sum in sums.iter().rev() {
        for _ in 0..c {
            total.double_in_place();
        }
        total += sum;
    }
    total
}

fn window_bits(n: usize) -> usize {
    let log = usize::BITS as usize - 1 - n.leading_zeros() as usize;
    (log * 69 / 100 + 2).clamp(4, 16)
}

/// Signed base-2^c digits in (-2^(c-1), 2^(c-1)], least significant first.
fn signed_digits<B: BigInteger>(s: &B, c: usize, out: &mut [i32]) {
    let limbs = s.as_ref();
    let half = 1i64 << (c - 1);
    let mut carry = 0i64;
    for (w, d) in out.iter_mut().enumerate() {
        let lo = w * c;
        let (limb, shift) = (lo / 64, lo % 64);
        let mut bits = limbs.get(limb).map_or(0, |l| l >> shift);
        if shift + c > 64 {
            bits |= limbs.get(limb + 1).map_or(0, |l| l << (64 - shift));
        }
        let mut v = (bits & ((1u64 << c) - 1)) as i64 + carry;
        carry = 0;
        if v > half {
            v -= 1 << c;
            carry = 1;
        }
        *d = v as i32;
    }
}

/// The sum over buckets `k * bucket[k]` of one window.
fn window_sum<P: SWCurveConfig>(
    bases: &[Affine<P>],
    digits: &[i32],
    windows: usize,
    w: usize,
    n_buckets: usize,
) -> Projective<P> {
    let digit = |i: usize| digits[i * windows + w];
    if n_buckets < MIN_BUCKETS {
        let mut buckets = vec![Projective::<P>::zero(); n_buckets];
        for (i, base) in bases.iter().enumerate() {
            let d = digit(i);
            if d > 0 {
                buckets[d as usize - 1] += base;
            } else if d < 0 {
                buckets[d.unsigned_abs() as usize - 1] -= base;
            }
        }
        let mut running = Projective::<P>::zero();
        let mut sum = Projective::<P>::zero();
        for b in buckets.iter().rev() {
            running += b;
            sum += &running;
        }
        return sum;
    }
    let mut acc = Accumulator::<P>::new(n_buckets);
    for (i, base) in bases.iter().enumerate() {
        let d = digit(i);
        if d == 0 {
            continue;
        }
        let p = if d > 0 { *base } else { -*base };
        acc.add(d.unsigned_abs() as usize - 1, p);
    }
    acc.finish();
    let mut running = Projective::<P>::zero();
    let mut sum = Projective::<P>::zero();
    for (i, b) in acc.buckets.iter().enumerate().rev() {
        running += b;
        if let Some(extra) = acc.overflow.get(i).filter(|e| !e.is_zero()) {
            running += extra;
        }
        sum += &running;
    }
    sum
}

/// Affine buckets with a batch of pending additions `buckets[b] += p`.
///
/// An addition to a bucket already in the batch waits for the next batch;
/// past a batch of those (many equal digits, as from many witness values
/// equal to one) they go to a projective bucket beside the affine one, so
/// repeated digits cost a mixed addition each instead of a batch each.
struct Accumulator<P: SWCurveConfig> {
    buckets: Vec<Affine<P>>,
    overflow: Vec<Projective<P>>,
    busy: Vec<bool>,
    pending: Vec<(usize, Affine<P>)>,
    denominators: Vec<P::BaseField>,
    scratch: Vec<P::BaseField>,
    deferred: Vec<(usize, Affine<P>)>,
}

impl<P: SWCurveConfig> Accumulator<P> {
    const BATCH: usize = 512;

    fn new(n_buckets: usize) -> Self {
        Accumulator {
            buckets: vec![Affine::identity(); n_buckets],
            overflow: Vec::new(),
            busy: vec![false; n_buckets],
            pending: Vec::with_capacity(Self::BATCH),
            denominators: Vec::with_capacity(Self::BATCH),
            scratch: Vec::with_capacity(Self::BATCH),
            deferred: Vec::new(),
        }
    }

    /// Queues `buckets[b] += p`, adding the queued batch once it is full.
    fn add(&mut self, b: usize, p: Affine<P>) {
        self.schedule(b, p);
        if self.pending.len() >= Self::BATCH {
            self.flush();
            for (b, p) in std::mem::take(&mut self.deferred) {
                self.schedule(b, p);
            }
        }
    }

    fn schedule(&mut self, b: usize, p: Affine<P>) {
        if self.busy[b] {
            if self.deferred.len() < Self::BATCH {
                self.deferred.push((b, p));
            } else {
                self.add_projective(b, p);
            }
            return;
        }
        let q = self.buckets[b];
        if q.infinity {
            self.buckets[b] = p;
            return;
        }
        if p.infinity {
            return;
        }
        if q.x == p.x {
            // Doubling or cancellation: rare, done directly.
            self.buckets[b] = if q.y == p.y {
                q.into_group().double().into_affine()
            } else {
                Affine::identity()
            };
            return;
        }
        self.busy[b] = true;
        self.denominators.push(p.x - q.x);
        self.pending.push((b, p));
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        batch_invert(&mut self.denominators, &mut self.scratch);
        for (&(b, p), inv) in self.pending.iter().zip(&self.denominators) {
            let q = &mut self.buckets[b];
            let lambda = (p.y - q.y) * inv;
            let x = lambda.square() - q.x - p.x;
            let y = lambda * (q.x - x) - q.y;
            *q = Affine::new_unchecked(x, y);
            self.busy[b] = false;
        }
        self.pending.clear();
        self.denominators.clear();
    }

    fn finish(&mut self) {
        self.flush();
        for (b, p) in std::mem::take(&mut self.deferred) {
            self.add_projective(b, p);
        }
    }

    fn add_projective(&mut self, b: usize, p: Affine<P>) {
        if self.overflow.is_empty() {
            self.overflow = vec![Projective::zero(); self.buckets.len()];
        }
        self.overflow[b] += p;
    }
}

/// Inverts every (non-zero) element in place with one field inversion.
fn batch_invert<F: Field>(v: &mut [F], prefix: &mut Vec<F>) {
    prefix.clear();
    let mut acc = F::one();
    for x in v.iter() {
        prefix.push(acc);
        acc *= x;
    }
    let mut inv = acc.inverse().expect("non-zero denominators");
    for (x, before) in v.iter_mut().zip(prefix.iter()).rev() {
        let next = inv * *x;
        *x = inv * before;
        inv = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_ff::{One, UniformRand};

    fn check<P: SWCurveConfig>(n: usize)
    where
        Projective<P>: VariableBaseMSM<MulBase = Affine<P>, ScalarField = P::ScalarField>,
    {
        let mut rng = ark_std::test_rng();
        let (g, step) = (
            Projective::<P>::rand(&mut rng),
            Projective::<P>::rand(&mut rng),
        );
        // Distinct bases g + i·step, cheap to make; repeated and opposite
        // ones exercise the doubling and cancellation paths, zero and ±1
        // scalars the skipped and single-digit ones.
        let mut points: Vec<Projective<P>> = Vec::with_capacity(n);
        let mut p = g;
        for _ in 0..n {
            points.push(p);
            p += step;
        }
        for i in (0..n).step_by(7) {
            points[i] = g;
        }
        for i in (3..n).step_by(11) {
            points[i] = -g;
        }
        if n > 5 {
            points[5] = Projective::zero();
        }
        let bases = Projective::normalize_batch(&points);
        let mut scalars: Vec<P::ScalarField> =
            (0..n).map(|_| P::ScalarField::rand(&mut rng)).collect();
        for i in (0..n).step_by(5) {
            scalars[i] = P::ScalarField::zero();
        }
        for i in (1..n).step_by(13) {
            scalars[i] = P::ScalarField::one();
        }
        for i in (2..n).step_by(17) {
            scalars[i] = -P::ScalarField::one();
        }
        let expected = <Projective<P> as VariableBaseMSM>::msm_unchecked(&bases, &scalars);
        let bigints = to_bigints(&scalars);
        assert_eq!(msm(&bases, &bigints, &Cancel::new()), expected, "n = {n}");
    }

    #[test]
    fn matches_arkworks() {
        // The larger sizes have windows of 2^10 and more buckets, which are
        // filled with batched affine additions.
        for n in [0, 1, 100, SMALL, 3000, 1 << 14, 20000] {
            check::<ark_bn254::g1::Config>(n);
        }
        check::<ark_bn254::g2::Config>(1 << 14);
    }
}
