//! Request parameters and identifiers: parsing and validation (everything a browser sends is
//! checked here before it reaches SQL, and is then bound, never spliced).

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};

use crate::error::ApiError;

/// Default number of rows an endpoint returns.
pub(crate) const DEFAULT_LIMIT: u32 = 1_000;
/// Largest accepted `limit`.
pub(crate) const MAX_LIMIT: u32 = 10_000;
/// Most symbols accepted in one request.
pub(crate) const MAX_SYMBOLS: usize = 50;
/// Longest accepted symbol.
const MAX_SYMBOL_LEN: usize = 32;
/// Symbols shown when the request names none and they are present.
const DEFAULT_SYMBOLS: [&str; 2] = ["BTCUSDT", "ETHUSDT"];

/// The period filter: how far back from the newest snapshot in the table rows are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Period {
    /// The last hour.
    Hour,
    /// The last 24 hours.
    Day,
    /// The last 7 days.
    Week,
    /// The last 30 days.
    Month,
    /// Every row.
    All,
}

impl Period {
    /// Parses `1h`, `24h`, `7d`, `30d` or `all` (case-insensitive).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "1h" => Some(Self::Hour),
            "24h" => Some(Self::Day),
            "7d" => Some(Self::Week),
            "30d" => Some(Self::Month),
            "all" => Some(Self::All),
            _ => None,
        }
    }

    /// The canonical name (`1h`, `24h`, `7d`, `30d`, `all`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "1h",
            Self::Day => "24h",
            Self::Week => "7d",
            Self::Month => "30d",
            Self::All => "all",
        }
    }

    /// The period's length; `None` for [`Period::All`].
    pub(crate) fn duration(self) -> Option<TimeDelta> {
        match self {
            Self::Hour => Some(TimeDelta::hours(1)),
            Self::Day => Some(TimeDelta::hours(24)),
            Self::Week => Some(TimeDelta::days(7)),
            Self::Month => Some(TimeDelta::days(30)),
            Self::All => None,
        }
    }

    /// The first instant of the period ending at `end` (the Unix epoch for [`Period::All`]).
    pub(crate) fn start(self, end: DateTime<Utc>) -> DateTime<Utc> {
        match self.duration() {
            Some(length) => end - length,
            None => DateTime::UNIX_EPOCH,
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `name` is a valid table name: `name` or `schema.name`, each part an ASCII SQL
/// identifier (`[A-Za-z_][A-Za-z0-9_]*`, at most 63 bytes).
pub(crate) fn is_valid_table_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() <= 2
        && parts.iter().all(|part| {
            let mut chars = part.chars();
            part.len() <= 63
                && chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Quotes a table name validated by [`is_valid_table_name`] (`"schema"."name"`).
pub(crate) fn quote_table_name(name: &str) -> String {
    name.split('.')
        .map(|part| format!("\"{part}\""))
        .collect::<Vec<_>>()
        .join(".")
}

/// Whether `symbol` looks like a market symbol: 1 to 32 characters from `A-Z a-z 0-9 _ - .`.
pub(crate) fn is_valid_symbol(symbol: &str) -> bool {
    !symbol.is_empty()
        && symbol.len() <= MAX_SYMBOL_LEN
        && symbol
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The symbols a request naming none is about, among the `symbols` present: BTCUSDT and
/// ETHUSDT when present, else the first two symbols.
pub(crate) fn default_symbols(symbols: &[String]) -> Vec<String> {
    let present: Vec<String> = DEFAULT_SYMBOLS
        .iter()
        .filter(|d| symbols.iter().any(|s| s == *d))
        .map(|d| (*d).to_owned())
        .collect();
    if present.is_empty() {
        symbols.iter().take(2).cloned().collect()
    } else {
        present
    }
}

/// The parameters of a data request, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Params {
    /// `symbols=A,B` (or repeated `symbols=`/`symbol=`): empty when not given.
    pub(crate) symbols: Vec<String>,
    /// `period=` (default `24h`).
    pub(crate) period: Period,
    /// `limit=` (default [`DEFAULT_LIMIT`], 1 to [`MAX_LIMIT`]).
    pub(crate) limit: u32,
}

impl Default for Params {
    /// No symbol (the defaults), `24h`, [`DEFAULT_LIMIT`].
    fn default() -> Self {
        Self {
            symbols: Vec::new(),
            period: Period::Day,
            limit: DEFAULT_LIMIT,
        }
    }
}

impl Params {
    /// Validates the query-string pairs of a request. Unknown keys are ignored.
    pub(crate) fn from_pairs(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let Params {
            mut symbols,
            mut period,
            mut limit,
        } = Params::default();
        for (key, value) in pairs {
            match key.as_str() {
                "symbols" | "symbol" => {
                    for symbol in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        if !is_valid_symbol(symbol) {
                            return Err(ApiError::BadRequest(
                                "invalid symbol: expected 1 to 32 characters from A-Z, a-z, 0-9, _, - and .".into(),
                            ));
                        }
                        if !symbols.iter().any(|s| s == symbol) {
                            symbols.push(symbol.to_owned());
                        }
                    }
                }
                "period" => {
                    period = Period::parse(value).ok_or_else(|| {
                        ApiError::BadRequest(
                            "invalid period: expected one of 1h, 24h, 7d, 30d, all".into(),
                        )
                    })?;
                }
                "limit" => {
                    limit = value
                        .trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|l| (1..=MAX_LIMIT).contains(l))
                        .ok_or_else(|| {
                            ApiError::BadRequest(format!(
                                "invalid limit: expected an integer from 1 to {MAX_LIMIT}"
                            ))
                        })?;
                }
                _ => {}
            }
        }
        if symbols.len() > MAX_SYMBOLS {
            return Err(ApiError::BadRequest(format!(
                "too many symbols: at most {MAX_SYMBOLS}"
            )));
        }
        Ok(Self {
            symbols,
            period,
            limit,
        })
    }

    /// A stable cache key for these parameters.
    pub(crate) fn key(&self) -> String {
        format!("{}|{}|{}", self.symbols.join(","), self.period, self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn table_names() {
        assert!(is_valid_table_name("projet_bdcc"));
        assert!(is_valid_table_name("public.candles_1m"));
        assert!(!is_valid_table_name("a.b.c"));
        assert!(!is_valid_table_name("1abc"));
        assert!(!is_valid_table_name("x; DROP TABLE y"));
        assert!(!is_valid_table_name("x\""));
        assert!(!is_valid_table_name(""));
        assert_eq!(quote_table_name("public.t"), "\"public\".\"t\"");
    }

    #[test]
    fn params() {
        let p = Params::from_pairs(&pairs(&[
            ("symbols", "BTCUSDT, ETHUSDT"),
            ("symbols", "BTCUSDT"),
            ("period", "7D"),
            ("limit", "10"),
        ]))
        .unwrap();
        assert_eq!(p.symbols, ["BTCUSDT", "ETHUSDT"]);
        assert_eq!(p.period, Period::Week);
        assert_eq!(p.limit, 10);
        for bad in [
            ("symbols", "BTCUSDT';DROP TABLE x;--"),
            ("period", "2h"),
            ("period", "1h' OR 1=1"),
            ("limit", "0"),
            ("limit", "10001"),
            ("limit", "99999999999999999999"),
            ("limit", "-1"),
            ("limit", "1e3"),
        ] {
            assert!(Params::from_pairs(&pairs(&[bad])).is_err(), "{bad:?}");
        }
        let d = Params::from_pairs(&[]).unwrap();
        assert_eq!((d.period, d.limit), (Period::Day, DEFAULT_LIMIT));
    }

    #[test]
    fn defaults() {
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            default_symbols(&s(&["AAA", "ETHUSDT", "ZZZ"])),
            s(&["ETHUSDT"])
        );
        assert_eq!(
            default_symbols(&s(&["AAA", "BBB", "C"])),
            s(&["AAA", "BBB"])
        );
        assert_eq!(default_symbols(&[]), Vec::<String>::new());
    }
}
