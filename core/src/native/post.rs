//! ONNX-ML post transforms (`post_transform`) exactly as ONNX Runtime's CPU kernels apply them,
//! in float32, including its approximations (ErfInv for PROBIT) and its binary-case quirks.

/// `post_transform` of the ML operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

impl Transform {
    /// The attribute's text (opsets 1-3); empty means NONE.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "" | "NONE" => Transform::None,
            "LOGISTIC" => Transform::Logistic,
            "SOFTMAX" => Transform::Softmax,
            "SOFTMAX_ZERO" => Transform::SoftmaxZero,
            "PROBIT" => Transform::Probit,
            other => return Err(format!("post_transform {other}")),
        })
    }

    /// The integer form of TreeEnsemble (opset 5).
    pub fn from_int(v: i64) -> Result<Self, String> {
        Ok(match v {
            0 => Transform::None,
            1 => Transform::Softmax,
            2 => Transform::Logistic,
            3 => Transform::SoftmaxZero,
            4 => Transform::Probit,
            other => return Err(format!("post_transform {other}")),
        })
    }
}

pub fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 {
        1.0 - v
    } else {
        v
    }
}

/// ONNX Runtime's ErfInv (Winitzki's approximation, a = 0.147), not an exact inverse; 1.32 uses
/// the float value of pi here.
fn erf_inv(x: f32) -> f32 {
    let sgn = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147f32 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sgn * v3.sqrt()
}

pub fn probit(x: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * x - 1.0)
}

pub fn softmax(row: &mut [f32]) {
    let m = row.iter().copied().fold(-f32::MAX, |a, b| if b > a { b } else { a });
    let mut s = 0f32;
    for v in row.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    for v in row.iter_mut() {
        *v /= s;
    }
}

pub fn softmax_zero(row: &mut [f32]) {
    let m = row.iter().copied().fold(-f32::MAX, |a, b| if b > a { b } else { a });
    let e = (-m).exp();
    let mut s = 0f32;
    for v in row.iter_mut() {
        if *v > 0.000_000_1 || *v < -0.000_000_1 {
            *v = (*v - m).exp();
            s += *v;
        } else {
            *v *= e;
        }
    }
    for v in row.iter_mut() {
        *v /= s;
    }
}

/// `batched_update_scores_inplace` without a second class: rows of `width` scores. With one
/// score per row only PROBIT applies (ONNX Runtime ignores LOGISTIC/SOFTMAX there).
pub fn batched(scores: &mut [f32], width: usize, t: Transform) {
    if width == 0 {
        return;
    }
    match t {
        Transform::Probit => scores.iter_mut().for_each(|v| *v = probit(*v)),
        _ if width == 1 => {}
        Transform::Logistic => super::dense::logistic_in_place(scores),
        Transform::Softmax => scores.chunks_mut(width).for_each(softmax),
        Transform::SoftmaxZero => scores.chunks_mut(width).for_each(softmax_zero),
        Transform::None => {}
    }
}

/// One score per row expanded to two columns, as ONNX Runtime's `add_second_class` does:
/// 0/1 (all weights positive) -> [1 - s, s]; 2/3 (mixed) -> [-s, s], or the logistic of both
/// with LOGISTIC. Callers refuse PROBIT here (ONNX Runtime leaves half the output unwritten).
pub fn second_class(scores: &[f32], t: Transform, mode: u8) -> Vec<f32> {
    let mut out = Vec::with_capacity(scores.len() * 2);
    for &s in scores {
        match mode {
            0 | 1 => out.extend([1.0 - s, s]),
            _ if t == Transform::Logistic => out.extend([logistic(-s), logistic(s)]),
            _ => out.extend([-s, s]),
        }
    }
    out
}
