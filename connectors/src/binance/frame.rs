//! Binance WebSocket frames into one message per ticker (pure: no socket, no broker).
//!
//! A frame is a JSON array of events (`!miniTicker@arr`, `!ticker@arr`), one event object
//! (`<symbol>@miniTicker`, `<symbol>@trade`), a combined-stream wrapper
//! `{"stream": …, "data": …}` around either, or a reply to a subscription request
//! (`{"result": null, "id": 1}`, ignored). Event fields as Binance documents them, every
//! number a string: `e` event type, `E` event time (ms), `s` symbol; tickers: `c`/`o`/`h`/`l`
//! close/open/high/low price, `v` base and `q` quote volume; trades: `p` price, `q` quantity,
//! `T` trade time (ms), `t` trade id (`a` for an aggregate trade).
//!
//! Normalized messages are the seed producer's, with Binance's string numbers written as JSON
//! numbers, digit for digit (no float round trip):
//!
//! - `24hrMiniTicker`, `24hrTicker` → `{"symbol","close_price","open_price","high_price",
//!   "low_price","volume","quote_volume","timestamp"}`, `timestamp` being the event time `E`;
//! - `trade`, `aggTrade` → `{"symbol","price","quantity","trade_id","timestamp"}`,
//!   `timestamp` being the trade time `T`.
//!
//! Every message is keyed by its symbol. In raw mode each event object is forwarded unchanged.

use std::borrow::Cow;
use std::fmt::Write;

use serde::Deserialize;

/// How events become messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The seed's normalized JSON.
    #[default]
    Normalized,
    /// Binance's event objects, unchanged.
    Raw,
}

/// One message for the broker: the symbol and the JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickerMessage {
    /// The symbol (the Kafka key).
    pub key: String,
    /// The JSON value.
    pub value: String,
}

/// The messages of one frame, and the events that could not be used.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DecodedFrame {
    /// One message per usable event, in frame order.
    pub messages: Vec<TickerMessage>,
    /// Why each rejected event was rejected (missing field, non-numeric number, unknown
    /// event type in normalized mode).
    pub rejected: Vec<String>,
}

/// Every field an event may carry; which ones matter depends on the event type.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "e", borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(rename = "E", default)]
    event_time: Option<i64>,
    #[serde(rename = "s", borrow, default)]
    symbol: Option<Cow<'a, str>>,
    #[serde(rename = "c", borrow, default)]
    close: Option<Cow<'a, str>>,
    #[serde(rename = "o", borrow, default)]
    open: Option<Cow<'a, str>>,
    #[serde(rename = "h", borrow, default)]
    high: Option<Cow<'a, str>>,
    #[serde(rename = "l", borrow, default)]
    low: Option<Cow<'a, str>>,
    #[serde(rename = "v", borrow, default)]
    volume: Option<Cow<'a, str>>,
    /// Quote volume for tickers, quantity for trades.
    #[serde(rename = "q", borrow, default)]
    q: Option<Cow<'a, str>>,
    #[serde(rename = "p", borrow, default)]
    price: Option<Cow<'a, str>>,
    #[serde(rename = "T", default)]
    trade_time: Option<i64>,
    #[serde(rename = "t", default)]
    trade_id: Option<i64>,
    #[serde(rename = "a", default)]
    agg_id: Option<i64>,
}

/// Decodes one text frame. `Err` when the frame as a whole is not JSON of a known shape.
pub fn decode_frame(frame: &str, mode: Mode) -> Result<DecodedFrame, String> {
    let mut decoded = DecodedFrame::default();
    decode_value(frame, mode, &mut decoded, 0)?;
    Ok(decoded)
}

fn decode_value(text: &str, mode: Mode, out: &mut DecodedFrame, depth: u8) -> Result<(), String> {
    let members = top_level(text)?;
    if text.trim_start().starts_with('[') {
        for (_, event) in members {
            decode_event(event, mode, out);
        }
        return Ok(());
    }
    let get = |name: &str| {
        members
            .iter()
            .find(|(k, _)| *k == Some(name))
            .map(|(_, v)| *v)
    };
    match (get("data"), get("e"), get("id")) {
        (Some(data), _, _) if depth == 0 => decode_value(data, mode, out, 1),
        (_, Some(_), _) => {
            decode_event(text, mode, out);
            Ok(())
        }
        // A reply to a SUBSCRIBE / LIST_SUBSCRIPTIONS request.
        (None, None, Some(_)) => Ok(()),
        _ => Err("an object that is neither an event nor a stream wrapper".into()),
    }
}

/// The members of a JSON array or object, as slices of `text` (object keys as written, which
/// for Binance's keys is their value). Values are not validated here; each is parsed when used.
fn top_level(text: &str) -> Result<Vec<(Option<&str>, &str)>, String> {
    let bytes = text.as_bytes();
    let start = text.len() - text.trim_start().len();
    let (open, close) = match bytes.get(start) {
        Some(b'[') => (b'[', b']'),
        Some(b'{') => (b'{', b'}'),
        _ => return Err("not a JSON array or object".into()),
    };
    let mut members = Vec::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut member_start = start + 1;
    let mut key: Option<&str> = None;
    let mut key_start = None;
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => {
                    in_string = false;
                    if depth == 1 && open == b'{' && key.is_none() {
                        key = key_start.map(|k| &text[k..i]);
                    }
                }
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                if depth == 1 && open == b'{' && key.is_none() {
                    key_start = Some(i + 1);
                }
            }
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                depth = depth.checked_sub(1).ok_or("unbalanced JSON")?;
                if depth == 0 {
                    if b != close {
                        return Err("unbalanced JSON".into());
                    }
                    push_member(text, member_start, i, open, &mut key, &mut members)?;
                    if !text[i + 1..].trim().is_empty() {
                        return Err("trailing characters after the JSON value".into());
                    }
                    return Ok(members);
                }
            }
            b',' if depth == 1 => {
                push_member(text, member_start, i, open, &mut key, &mut members)?;
                member_start = i + 1;
            }
            _ => {}
        }
    }
    Err("truncated JSON".into())
}

fn push_member<'a>(
    text: &'a str,
    from: usize,
    to: usize,
    open: u8,
    key: &mut Option<&'a str>,
    members: &mut Vec<(Option<&'a str>, &'a str)>,
) -> Result<(), String> {
    let member = text[from..to].trim();
    if member.is_empty() {
        // `[]` and `{}` have no member; anything else empty is malformed.
        return if members.is_empty() && key.is_none() {
            Ok(())
        } else {
            Err("empty member in JSON".into())
        };
    }
    if open == b'[' {
        members.push((None, member));
        return Ok(());
    }
    let (_, value) = member.split_once(':').ok_or("object member without ':'")?;
    members.push((key.take(), value.trim()));
    Ok(())
}

fn decode_event(text: &str, mode: Mode, out: &mut DecodedFrame) {
    match normalize(text, mode) {
        Ok(message) => out.messages.push(message),
        Err(reason) => out.rejected.push(reason),
    }
}

/// One event object into one message.
fn normalize(text: &str, mode: Mode) -> Result<TickerMessage, String> {
    let event: Event<'_> =
        serde_json::from_str(text).map_err(|e| format!("event is not a JSON object: {e}"))?;
    let symbol = event
        .symbol
        .as_deref()
        .ok_or("event without a symbol (s)")?;
    if mode == Mode::Raw {
        return Ok(TickerMessage {
            key: symbol.to_string(),
            value: text.to_string(),
        });
    }
    let kind = event.event.as_deref().unwrap_or_default();
    let mut value = String::with_capacity(200);
    let field = |name: &str, raw: &Option<Cow<'_, str>>| -> Result<String, String> {
        let raw = raw
            .as_deref()
            .ok_or_else(|| format!("{symbol}: {kind} event without '{name}'"))?;
        if is_json_number(raw) {
            Ok(raw.to_string())
        } else {
            Err(format!("{symbol}: '{name}' is not a number: {raw:?}"))
        }
    };
    let quoted = serde_json::to_string(symbol).map_err(|e| e.to_string())?;
    match kind {
        "24hrMiniTicker" | "24hrTicker" => {
            let time = event
                .event_time
                .ok_or_else(|| format!("{symbol}: {kind} event without 'E'"))?;
            let _ = write!(
                value,
                r#"{{"symbol":{quoted},"close_price":{},"open_price":{},"high_price":{},"low_price":{},"volume":{},"quote_volume":{},"timestamp":{time}}}"#,
                field("c", &event.close)?,
                field("o", &event.open)?,
                field("h", &event.high)?,
                field("l", &event.low)?,
                field("v", &event.volume)?,
                field("q", &event.q)?,
            );
        }
        "trade" | "aggTrade" => {
            let time = event
                .trade_time
                .ok_or_else(|| format!("{symbol}: {kind} event without 'T'"))?;
            let id = if kind == "trade" {
                event.trade_id
            } else {
                event.agg_id
            }
            .ok_or_else(|| format!("{symbol}: {kind} event without a trade id"))?;
            let _ = write!(
                value,
                r#"{{"symbol":{quoted},"price":{},"quantity":{},"trade_id":{id},"timestamp":{time}}}"#,
                field("p", &event.price)?,
                field("q", &event.q)?,
            );
        }
        other => {
            return Err(format!(
                "{symbol}: event type '{other}' has no normalized form (use raw mode)"
            ));
        }
    }
    Ok(TickerMessage {
        key: symbol.to_string(),
        value,
    })
}

/// Whether `text` is a JSON number (RFC 8259 §6), so it can be written without quotes.
pub fn is_json_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < bytes.len() && bytes[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if bytes.first() == Some(&b'-') {
        i += 1;
    }
    match bytes.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == bytes.len()
}
