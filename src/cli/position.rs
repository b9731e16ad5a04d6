//! Where to start or move to in a partition: `earliest`, `latest`, an offset, a time
//! (`2026-12-01T09:30:00Z`, `@1764581400000` in epoch milliseconds) or a duration ago (`-15m`).

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Earliest,
    Latest,
    Offset(i64),
    /// Epoch milliseconds.
    Timestamp(i64),
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Position {
    pub fn parse(text: &str) -> Result<Position, String> {
        Self::parse_at(text, now_ms())
    }

    fn parse_at(text: &str, now: i64) -> Result<Position, String> {
        let t = text.trim();
        match t.to_ascii_lowercase().as_str() {
            "earliest" | "beginning" | "start" => return Ok(Position::Earliest),
            "latest" | "end" => return Ok(Position::Latest),
            _ => {}
        }
        if let Ok(offset) = t.parse::<i64>() {
            if offset >= 0 {
                return Ok(Position::Offset(offset));
            }
        }
        if let Some(ms) = t.strip_prefix('@') {
            return ms.parse().map(Position::Timestamp).map_err(|_| format!("'{text}': expected @EPOCH_MILLIS"));
        }
        if let Some(ago) = t.strip_prefix('-') {
            return Ok(Position::Timestamp(now - parse_duration_ms(ago)?));
        }
        parse_datetime_ms(t).map(Position::Timestamp).ok_or_else(|| {
            format!(
                "'{text}' is not a position: use earliest, latest, an OFFSET, a time \
                 (2026-12-01T09:30:00Z, @EPOCH_MILLIS) or a duration ago (-15m, -2h, -1d)"
            )
        })
    }
}

/// `1h30m`, `15m`, `90s`, `500ms`, `2d`.
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let bad = || format!("'{text}' is not a duration (e.g. 90s, 15m, 1h30m, 2d)");
    let mut total: i64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
    }
    Ok(total)
}

/// `YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|±HH:MM]`, UTC unless a zone is given.
pub fn parse_datetime_ms(text: &str) -> Option<i64> {
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((d, t)) => (d, t),
        None => (text, "00:00:00Z"),
    };
    let mut d = date.splitn(3, '-');
    let (y, mo, da): (i64, i64, i64) = (d.next()?.parse().ok()?, d.next()?.parse().ok()?, d.next()?.parse().ok()?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || date.len() != 10 {
        return None;
    }
    let (clock, zone_ms) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (c, z) = time.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let (zh, zm) = z[1..].split_once(':').unwrap_or((&z[1..], "0"));
        (c, sign * (zh.parse::<i64>().ok()? * 3_600_000 + zm.parse::<i64>().ok()? * 60_000))
    } else {
        (time, 0)
    };
    let mut parts = clock.splitn(3, ':');
    let h: i64 = parts.next()?.parse().ok()?;
    let mi: i64 = parts.next()?.parse().ok()?;
    let (s, ms) = match parts.next() {
        None => (0, 0),
        Some(sec) => match sec.split_once('.') {
            None => (sec.parse().ok()?, 0),
            Some((s, frac)) => {
                let frac3: String = frac.chars().chain("000".chars()).take(3).collect();
                (s.parse().ok()?, frac3.parse().ok()?)
            }
        },
    };
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, da);
    Some(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms - zone_ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Epoch milliseconds as `2026-12-01T09:30:00.000Z`.
pub fn format_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // civil_from_days (inverse of the above)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let now = 1_000_000_000_000;
        assert_eq!(Position::parse_at("beginning", now), Ok(Position::Earliest));
        assert_eq!(Position::parse_at("END", now), Ok(Position::Latest));
        assert_eq!(Position::parse_at("42", now), Ok(Position::Offset(42)));
        assert_eq!(Position::parse_at("-15m", now), Ok(Position::Timestamp(now - 900_000)));
        assert_eq!(Position::parse_at("-1h30m", now), Ok(Position::Timestamp(now - 5_400_000)));
        assert_eq!(Position::parse_at("@1234", now), Ok(Position::Timestamp(1234)));
        assert_eq!(Position::parse_at("1970-01-02", now), Ok(Position::Timestamp(86_400_000)));
        assert_eq!(
            Position::parse_at("2026-12-01T09:30:00.5+01:00", now),
            Ok(Position::Timestamp(parse_datetime_ms("2026-12-01T08:30:00.500Z").unwrap()))
        );
        assert!(Position::parse_at("-5x", now).is_err());
        assert!(Position::parse_at("yesterday", now).is_err());
        for ms in [0, 1_764_581_400_123, 951_782_400_000] {
            assert_eq!(parse_datetime_ms(&format_ms(ms)), Some(ms));
        }
        assert_eq!(format_ms(1_764_581_400_000), "2025-12-01T09:30:00.000Z");
    }
}
