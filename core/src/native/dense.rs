//! The dense arithmetic of linear models and SVMs, with ONNX Runtime's rounding and at its speed.
//!
//! MLAS (ONNX Runtime's GEMM) accumulates each dot product in float32 with fused multiply-adds,
//! feature by feature. Only an FMA reproduces that rounding, and without the instruction Rust's
//! `mul_add` is a (correct but slow) libm call; so the bodies below are compiled twice, once
//! with FMA enabled, picked at run time. Each output is still summed strictly in feature order:
//! the loops vectorise *across* rows or support vectors, never within one sum, so the answer is
//! the same bit for bit on either path.

/// Rows per block: the block's transposed features stay in L1.
const BLOCK: usize = 64;

/// `out[r * targets + t] = Σ_k x[r, k] · w[t, k]` (fused, in k order), for `rows` rows.
pub fn dot_rows(x: &[f32], rows: usize, cols: usize, w: &[f32], targets: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has FMA and AVX2 (checked just above), all `dot_rows_fma` requires.
        return unsafe { dot_rows_fma(x, rows, cols, w, targets, out) };
    }
    dot_rows_body(x, rows, cols, w, targets, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_rows_fma(x: &[f32], rows: usize, cols: usize, w: &[f32], targets: usize, out: &mut [f32]) {
    dot_rows_body(x, rows, cols, w, targets, out)
}

#[inline(always)]
fn dot_rows_body(x: &[f32], rows: usize, cols: usize, w: &[f32], targets: usize, out: &mut [f32]) {
    // A few rows (per-row SQL calls): no block to transpose, the same sums one by one.
    if rows < 8 {
        for r in 0..rows {
            let xr = &x[r * cols..(r + 1) * cols];
            for t in 0..targets {
                let mut acc = 0f32;
                for (xv, wv) in xr.iter().zip(&w[t * cols..(t + 1) * cols]) {
                    acc = xv.mul_add(*wv, acc);
                }
                out[r * targets + t] = acc;
            }
        }
        return;
    }
    let mut xt = vec![0f32; cols * BLOCK];
    let mut acc = [0f32; BLOCK];
    let mut start = 0;
    while start < rows {
        let nb = BLOCK.min(rows - start);
        let block = &x[start * cols..(start + nb) * cols];
        for k in 0..cols {
            let dst = &mut xt[k * BLOCK..k * BLOCK + nb];
            for (r, d) in dst.iter_mut().enumerate() {
                *d = block[r * cols + k];
            }
        }
        for t in 0..targets {
            acc.fill(0.0);
            for k in 0..cols {
                let wk = w[t * cols + k];
                let col = &xt[k * BLOCK..(k + 1) * BLOCK];
                for (a, xv) in acc.iter_mut().zip(col) {
                    *a = xv.mul_add(wk, *a);
                }
            }
            for r in 0..nb {
                out[(start + r) * targets + t] = acc[r];
            }
        }
        start += nb;
    }
}

/// SVM kernels of the library ONNX Runtime wraps (`batched_kernel_dot`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SvmKernel {
    Linear,
    Poly,
    Rbf,
    Sigmoid,
}

/// Support vectors stored feature-major ([features][vectors]) so one row's kernels against all
/// of them vectorise across vectors.
pub struct Supports {
    pub vectors: usize,
    pub features: usize,
    transposed: Vec<f32>,
}

impl Supports {
    /// `rows` is [vectors, features], row-major, as the ONNX attribute stores it.
    pub fn new(rows: &[f32], vectors: usize) -> Supports {
        let features = rows.len() / vectors.max(1);
        let mut transposed = vec![0f32; rows.len()];
        for v in 0..vectors {
            for k in 0..features {
                transposed[k * vectors + v] = rows[v * features + k];
            }
        }
        Supports { vectors, features, transposed }
    }
}

/// The kernel of row `x` with every support vector. `c` is added to linear kernels (the
/// liblinear intercept); POLY and SIGMOID scale by gamma and add coef0, like ONNX Runtime's GEMM.
pub fn kernels(kind: SvmKernel, params: [f32; 3], x: &[f32], s: &Supports, c: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has FMA and AVX2 (checked just above), all `kernels_fma` requires.
        return unsafe { kernels_fma(kind, params, x, s, c, out) };
    }
    kernels_body(kind, params, x, s, c, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn kernels_fma(kind: SvmKernel, params: [f32; 3], x: &[f32], s: &Supports, c: f32, out: &mut [f32]) {
    kernels_body(kind, params, x, s, c, out)
}

#[inline(always)]
fn kernels_body(kind: SvmKernel, [gamma, coef0, degree]: [f32; 3], x: &[f32], s: &Supports, c: f32, out: &mut [f32]) {
    let v = s.vectors;
    let out = &mut out[..v];
    out.fill(0.0);
    if kind == SvmKernel::Rbf {
        // A plain C++ loop in ONNX Runtime, compiled without FMA: multiply, then add.
        for (k, xk) in x.iter().enumerate().take(s.features) {
            let col = &s.transposed[k * v..(k + 1) * v];
            for (o, sv) in out.iter_mut().zip(col) {
                let d = xk - sv;
                *o += d * d;
            }
        }
        for o in out.iter_mut() {
            *o = (-gamma * *o).exp();
        }
        return;
    }
    for (k, xk) in x.iter().enumerate().take(s.features) {
        let col = &s.transposed[k * v..(k + 1) * v];
        for (o, sv) in out.iter_mut().zip(col) {
            *o = xk.mul_add(*sv, *o);
        }
    }
    let (alpha, c) = if kind == SvmKernel::Linear { (1.0, c) } else { (gamma, coef0) };
    for o in out.iter_mut() {
        let y = alpha.mul_add(*o, c);
        *o = match kind {
            SvmKernel::Poly if degree == 2.0 => y * y,
            SvmKernel::Poly if degree == 3.0 => y * y * y,
            SvmKernel::Poly => y.powf(degree),
            SvmKernel::Sigmoid => y.tanh(),
            _ => y,
        };
    }
}

/// ONNX Runtime's `MlasComputeLogistic`, which its ML kernels use for LOGISTIC over more than one
/// score per row: Eigen's rational approximation on [-18, 18], output clamped to [0, 1]. Both
/// faster than `exp` and closer to ONNX Runtime's own answers.
pub fn logistic_in_place(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has FMA and AVX2 (checked just above), all `logistic_fma` requires.
        return unsafe { logistic_fma(v) };
    }
    logistic_body(v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn logistic_fma(v: &mut [f32]) {
    logistic_body(v)
}

#[inline(always)]
fn logistic_body(v: &mut [f32]) {
    // MLAS's constants, digit for digit.
    #[allow(clippy::excessive_precision)]
    const A: [f32; 5] =
        [4.37031012579801e-11, 1.15627324459942e-07, 6.08574864600143e-05, 8.51377133304701e-03, 2.48287947061529e-01];
    #[allow(clippy::excessive_precision)]
    const B: [f32; 6] = [
        6.10247389755681e-13,
        5.76102136993427e-09,
        6.29106785017040e-06,
        1.70198817374094e-03,
        1.16817656904453e-01,
        9.93151921023180e-01,
    ];
    for x in v.iter_mut() {
        let nan = x.is_nan();
        let value = x.clamp(-18.0, 18.0);
        let sq = value * value;
        let mut p = sq.mul_add(A[0], A[1]);
        p = p.mul_add(sq, A[2]);
        p = p.mul_add(sq, A[3]);
        p = p.mul_add(sq, A[4]);
        p *= value;
        let mut q = sq.mul_add(B[0], B[1]);
        q = q.mul_add(sq, B[2]);
        q = q.mul_add(sq, B[3]);
        q = q.mul_add(sq, B[4]);
        q = q.mul_add(sq, B[5]);
        let y = (p / q + 0.5).clamp(0.0, 1.0);
        *x = if nan { *x } else { y };
    }
}
