//! Values and tables the way a person reads them, as DuckDB's and psql's own clients print them:
//! timestamps as `2026-01-01 10:00:00`, lists as `[0.94, 0.06]`, structs as `{'a': 1}`, an
//! aligned table with a row count, never Rust's debug forms.

use duckdb::arrow::datatypes::DataType;
use duckdb::types::{TimeUnit, Value};

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn micros(unit: TimeUnit, v: i64) -> i64 {
    match unit {
        TimeUnit::Second => v.saturating_mul(1_000_000),
        TimeUnit::Millisecond => v.saturating_mul(1_000),
        TimeUnit::Microsecond => v,
        TimeUnit::Nanosecond => v.div_euclid(1_000),
    }
}

/// `HH:MM:SS` plus `.ffffff` without trailing zeros when there is a fraction.
fn time_of_day(us: i64) -> String {
    let (secs, frac) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
    let s = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac == 0 {
        s
    } else {
        format!("{s}.{}", format!("{frac:06}").trim_end_matches('0'))
    }
}

fn date(days: i64) -> String {
    let (y, m, d) = civil(days);
    format!("{y:04}-{m:02}-{d:02}")
}

pub fn timestamp(us: i64, with_zone: bool) -> String {
    let days = us.div_euclid(86_400_000_000);
    let rest = us.rem_euclid(86_400_000_000);
    format!("{} {}{}", date(days), time_of_day(rest), if with_zone { "+00" } else { "" })
}

fn blob(b: &[u8]) -> String {
    const SHOWN: usize = 16;
    let hex: String = b.iter().take(SHOWN).map(|x| format!("\\x{x:02X}")).collect();
    if b.len() > SHOWN {
        format!("{hex}... ({} bytes)", b.len())
    } else {
        hex
    }
}

/// A value as DuckDB's client prints it; `ty` (the column's type) tells a TIMESTAMPTZ from a
/// TIMESTAMP. Nested values are printed in DuckDB's literal style.
pub fn value(v: &Value, ty: Option<&DataType>) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Boolean(b) => b.to_string(),
        Value::TinyInt(x) => x.to_string(),
        Value::SmallInt(x) => x.to_string(),
        Value::Int(x) => x.to_string(),
        Value::BigInt(x) => x.to_string(),
        Value::HugeInt(x) => x.to_string(),
        Value::UTinyInt(x) => x.to_string(),
        Value::USmallInt(x) => x.to_string(),
        Value::UInt(x) => x.to_string(),
        Value::UBigInt(x) => x.to_string(),
        Value::Float(x) => x.to_string(),
        Value::Double(x) => x.to_string(),
        Value::Decimal(d) => d.to_string(),
        Value::Timestamp(unit, t) => timestamp(micros(*unit, *t), matches!(ty, Some(DataType::Timestamp(_, Some(_))))),
        Value::Text(s) => s.clone(),
        Value::Blob(b) => blob(b),
        Value::Date32(d) => date(i64::from(*d)),
        Value::Time64(unit, t) => time_of_day(micros(*unit, *t)),
        Value::Interval { months, days, nanos } => {
            let mut parts = Vec::new();
            if *months != 0 {
                parts.push(format!("{} months", months));
            }
            if *days != 0 {
                parts.push(format!("{days} days"));
            }
            if *nanos != 0 || parts.is_empty() {
                parts.push(time_of_day(nanos / 1_000));
            }
            parts.join(" ")
        }
        Value::List(items) | Value::Array(items) => {
            let child = match ty {
                Some(DataType::List(f)) | Some(DataType::LargeList(f)) | Some(DataType::FixedSizeList(f, _)) => {
                    Some(f.data_type().clone())
                }
                _ => None,
            };
            format!("[{}]", items.iter().map(|x| value(x, child.as_ref())).collect::<Vec<_>>().join(", "))
        }
        Value::Enum(s) => s.clone(),
        Value::Struct(fields) => format!(
            "{{{}}}",
            fields.iter().map(|(k, x)| format!("'{k}': {}", value(x, None))).collect::<Vec<_>>().join(", ")
        ),
        Value::Map(m) => format!(
            "{{{}}}",
            m.iter().map(|(k, x)| format!("{}={}", value(k, None), value(x, None))).collect::<Vec<_>>().join(", ")
        ),
        Value::Union(inner) => value(inner, None),
        #[allow(unreachable_patterns)]
        other => format!("{other:?}"),
    }
}

fn numeric(v: &Value) -> bool {
    matches!(
        v,
        Value::TinyInt(_)
            | Value::SmallInt(_)
            | Value::Int(_)
            | Value::BigInt(_)
            | Value::HugeInt(_)
            | Value::UTinyInt(_)
            | Value::USmallInt(_)
            | Value::UInt(_)
            | Value::UBigInt(_)
            | Value::Float(_)
            | Value::Double(_)
            | Value::Decimal(_)
    )
}

/// psql's aligned format: a header, a rule, numbers right-aligned, then `(N rows)`.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    print_aligned(header, rows, &vec![false; header.len()]);
}

fn print_aligned(header: &[&str], rows: &[Vec<String>], right: &[bool]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < width.len() {
                width[i] = width[i].max(c.chars().count());
            }
        }
    }
    let pad = |s: &str, w: usize, right: bool| {
        let n = w.saturating_sub(s.chars().count());
        if right {
            format!("{}{s}", " ".repeat(n))
        } else {
            format!("{s}{}", " ".repeat(n))
        }
    };
    let head: Vec<String> = header.iter().enumerate().map(|(i, h)| pad(h, width[i], false)).collect();
    println!(" {}", head.join(" | ").trim_end());
    println!("{}", width.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"));
    for r in rows {
        let cells: Vec<String> =
            r.iter().enumerate().map(|(i, c)| pad(c, width[i], right.get(i).copied().unwrap_or(false))).collect();
        println!(" {}", cells.join(" | ").trim_end());
    }
    println!("({} row{})", rows.len(), if rows.len() == 1 { "" } else { "s" });
}

/// Runs a query and prints its result as a table.
pub fn print_query(conn: &duckdb::Connection, query: &str) -> Result<(), crate::BoxError> {
    let mut stmt = conn.prepare(query)?;
    let mut rows = stmt.query([])?;
    let mut header: Vec<String> = Vec::new();
    let mut types: Vec<DataType> = Vec::new();
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut right: Vec<bool> = Vec::new();
    while let Some(row) = rows.next()? {
        let st = row.as_ref();
        let n = st.column_count();
        if header.is_empty() {
            header = (0..n).map(|i| st.column_name(i).map(|s| s.to_string()).unwrap_or_default()).collect();
            types = (0..n).map(|i| st.column_type(i)).collect();
            right = vec![true; n];
        }
        let values: Vec<Value> = (0..n).map(|i| row.get::<_, Value>(i).unwrap_or(Value::Null)).collect();
        for (i, v) in values.iter().enumerate() {
            if !numeric(v) && !matches!(v, Value::Null) {
                right[i] = false;
            }
        }
        out.push(values.iter().enumerate().map(|(i, v)| value(v, types.get(i))).collect());
    }
    if header.is_empty() {
        let st = rows.as_ref();
        if let Some(st) = st {
            header =
                (0..st.column_count()).map(|i| st.column_name(i).map(|s| s.to_string()).unwrap_or_default()).collect();
        }
        right = vec![false; header.len()];
    }
    let h: Vec<&str> = header.iter().map(String::as_str).collect();
    print_aligned(&h, &out, &right);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times() {
        assert_eq!(timestamp(0, false), "1970-01-01 00:00:00");
        // 2026-11-27 10:00:00.5 UTC
        assert_eq!(timestamp(1_795_773_600_500_000, true), "2026-11-27 10:00:00.5+00");
        assert_eq!(date(-1), "1969-12-31");
        assert_eq!(date(19_723), "2024-01-01");
    }

    #[test]
    fn nested_values() {
        let l = Value::List(vec![Value::Double(0.94), Value::Double(0.06)]);
        assert_eq!(value(&l, None), "[0.94, 0.06]");
        assert_eq!(value(&Value::Timestamp(TimeUnit::Microsecond, 0), None), "1970-01-01 00:00:00");
        assert_eq!(value(&Value::Blob(vec![1, 2]), None), "\\x01\\x02");
    }
}
