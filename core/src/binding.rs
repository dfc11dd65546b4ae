//! Matching the caller's columns to the model's inputs: by position (`score('m', a, b, c)`) or,
//! when the caller passes a whole row, by name (`score('m', t)`). All type checks happen here,
//! once per call, so the per-row loops that fill tensors never fail.

use crate::batch::{Batch, Column};
use crate::error::{Dialect, Error, Plural, Result};
use crate::model::{ElemType, InputInfo, ModelInfo};

/// Where each feature slot of each input reads from: `(column, offset within the column)`.
#[derive(Debug, Clone)]
pub struct Binding {
    pub slots: Vec<Vec<(usize, usize)>>,
    /// Columns actually read, for NULL checks.
    pub used_columns: Vec<usize>,
}

pub fn bind(model: &str, info: &ModelInfo, batch: &Batch<'_>, d: &Dialect) -> Result<Binding> {
    let named = !batch.by_position && !batch.columns.is_empty() && batch.columns.iter().all(|c| c.name.is_some());
    let slots = if named {
        bind_by_name(model, info, &batch.columns, d)?
    } else {
        bind_by_position(model, info, &batch.columns, d)?
    };
    let mut used_columns: Vec<usize> = slots.iter().flatten().map(|(c, _)| *c).collect();
    used_columns.sort_unstable();
    used_columns.dedup();
    for (input, input_slots) in info.inputs.iter().zip(&slots) {
        for &(col, _) in input_slots {
            check_type(model, input, &batch.columns[col], col, d)?;
        }
    }
    Ok(Binding { slots, used_columns })
}

fn bind_by_position(
    model: &str,
    info: &ModelInfo,
    columns: &[Column<'_>],
    d: &Dialect,
) -> Result<Vec<Vec<(usize, usize)>>> {
    // A column of a type sqlscore cannot read says so, rather than skewing the arity count.
    let mut position = 0;
    for (i, c) in columns.iter().enumerate() {
        if matches!(c.data, crate::batch::ColumnData::Unsupported { .. }) {
            let mut seen = 0;
            let input = info
                .inputs
                .iter()
                .find(|inp| {
                    seen += inp.width;
                    position < seen
                })
                .or(info.inputs.last())
                .ok_or_else(|| Error::Internal("model without inputs".into()))?;
            check_type(model, input, c, i, d)?;
        }
        position += c.data.width();
    }
    let flat: Vec<(usize, usize)> =
        columns.iter().enumerate().flat_map(|(i, c)| (0..c.data.width()).map(move |k| (i, k))).collect();
    if flat.len() != info.feature_count() {
        return Err(Error::Arity {
            model: model.into(),
            expected: info.feature_count(),
            got: flat.len(),
            signature: info.signature(),
        });
    }
    let mut it = flat.into_iter();
    Ok(info.inputs.iter().map(|input| it.by_ref().take(input.width).collect()).collect())
}

fn bind_by_name(
    model: &str,
    info: &ModelInfo,
    columns: &[Column<'_>],
    d: &Dialect,
) -> Result<Vec<Vec<(usize, usize)>>> {
    let find = |name: &str| {
        columns
            .iter()
            .position(|c| c.name.as_deref() == Some(name))
            .or_else(|| columns.iter().position(|c| c.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name))))
    };
    let mut slots = Vec::with_capacity(info.inputs.len());
    for input in &info.inputs {
        match find(&input.name) {
            Some(col) if columns[col].data.width() == input.width => {
                slots.push((0..input.width).map(|k| (col, k)).collect());
            }
            Some(col) => {
                return Err(Error::TypeMismatch {
                    model: model.into(),
                    input: input.name.clone(),
                    column: columns[col].describe(col),
                    expected: format!("{} value(s) per row", input.width),
                    got: format!("{} value(s)", columns[col].data.width()),
                })
            }
            // No field carries any input's name (`X: float[8]` over fields x0..x7, or an
            // anonymous record): the fields are the features, in order, when their count fits.
            None if !info.inputs.iter().any(|i| find(&i.name).is_some())
                && columns.iter().map(|c| c.data.width()).sum::<usize>() == info.feature_count() =>
            {
                return bind_by_position(model, info, columns, d);
            }
            None => {
                return Err(Error::MissingInput {
                    model: model.into(),
                    input: input.name.clone(),
                    expected: Plural(input.elem.name(), input.width).to_string(),
                    available: columns.iter().filter_map(|c| c.name.clone()).collect::<Vec<_>>().join(", "),
                })
            }
        }
    }
    Ok(slots)
}

fn check_type(model: &str, input: &InputInfo, column: &Column<'_>, position: usize, d: &Dialect) -> Result<()> {
    let data = &column.data;
    let ok = matches!(data, crate::batch::ColumnData::Null)
        || match input.elem {
            ElemType::String => data.is_text(),
            ElemType::Float | ElemType::Double => data.is_numeric(),
            // Feeding 2.7 to an integer input would silently truncate: ask for an explicit cast.
            ElemType::Int64 | ElemType::Int32 | ElemType::Bool => data.is_integer(),
        };
    if ok {
        return Ok(());
    }
    let expected = match input.elem {
        ElemType::String if d.text == "text" => "text".to_string(),
        ElemType::String => format!("text ({})", d.text),
        ElemType::Float | ElemType::Double => format!("a number ({})", input.elem.name()),
        ElemType::Int64 | ElemType::Int32 => format!("an integer ({})", input.elem.name()),
        ElemType::Bool => format!("a {}", d.boolean),
    };
    Err(Error::TypeMismatch {
        model: model.into(),
        input: input.name.clone(),
        column: column.describe(position),
        expected,
        got: column.type_name(d),
    })
}
