//! The Binance stream as pipeline files declare it (`connector = 'binance'` or
//! `'websocket'`): its options and how validated options become a [`BinanceSource`] per
//! query.

use std::sync::Arc;
use std::time::Duration;

use sluice_engine::connector::{
    Configure, ConnectorSpec, OptionDefault, OptionResult, OptionSpec, OptionType, Settings,
    SourceFactory, SourceTable,
};
use sluice_engine::{Result, Source};

use super::client::ClientOptions;
use super::client::MINI_TICKER_URL;
use super::source::BinanceSource;

/// The options of both connectors.
const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "url",
        kind: OptionType::Text,
        default: OptionDefault::Value(MINI_TICKER_URL),
        doc: "the WebSocket stream (Binance's, or a replay server's)",
    },
    OptionSpec {
        name: "idle_timeout",
        kind: OptionType::Duration,
        default: OptionDefault::Value("10 seconds"),
        doc: "how long without a frame before the connection is replaced",
    },
];

/// Binance's stream, as the seed's normalized ticker messages.
pub static BINANCE_SOURCE: ConnectorSpec = ConnectorSpec {
    name: "binance",
    doc: "Binance's WebSocket stream as the seed's normalized ticker messages, one connection \
          per URL for all queries; **at-most-once** across restarts",
    options: OPTIONS,
    configure: Configure::Source {
        reads_json: true,
        configure: |settings, table| configure(settings, table, false),
    },
};

/// Any Binance-style event stream, decoded as it is.
pub static WEBSOCKET_SOURCE: ConnectorSpec = ConnectorSpec {
    name: "websocket",
    doc: "As `binance`, but Binance-style event objects are decoded as they are \
          (`{\"e\":\"trade\",\"s\":…,\"p\":…}`: columns named after their fields)",
    options: OPTIONS,
    configure: Configure::Source {
        reads_json: true,
        configure: |settings, table| configure(settings, table, true),
    },
};

/// Either connector; `raw_events` for `websocket`.
fn configure(
    settings: &mut Settings,
    table: &SourceTable<'_>,
    raw_events: bool,
) -> OptionResult<Arc<dyn SourceFactory>> {
    let mut client = ClientOptions::new(settings.value::<String>("url")?);
    client.idle_timeout = settings.value::<Duration>("idle_timeout")?;
    let (name, schema, json) = (
        table.name.to_string(),
        table.schema.clone(),
        table.json.clone(),
    );
    Ok(Arc::new(move || -> Result<Box<dyn Source>> {
        let source = BinanceSource::new(&name, client.clone(), schema.clone(), json.clone());
        Ok(Box::new(if raw_events {
            source.raw_events()
        } else {
            source
        }))
    }))
}
