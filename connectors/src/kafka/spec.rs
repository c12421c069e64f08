//! The Kafka source and sink as pipeline files declare them (`connector = 'kafka'`): their
//! options and how validated options become a [`KafkaSource`] or [`KafkaSink`] per query.

use std::sync::Arc;
use std::time::Duration;

use sluice_engine::connector::{
    Configure, ConnectorSpec, OptionDefault, OptionError, OptionResult, OptionSpec, OptionType,
    Settings, SinkFactory, SinkTable, SourceFactory, SourceTable, config_message,
};
use sluice_engine::{Result, Sink, Source};

use super::broker::{BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP};
use super::offsets::{StartingOffsets, TopicPartition};
use super::partitions::Subscription;
use super::sink::KafkaSink;
use super::source::KafkaSource;

/// The `bootstrap` option of the source and the sink.
const BOOTSTRAP: OptionSpec = OptionSpec {
    name: "bootstrap",
    kind: OptionType::Text,
    default: OptionDefault::Unset("`$KAFKA_BOOTSTRAP`, else `localhost:9092`"),
    doc: "the brokers, `host:port[,host:port]`",
};

/// The `properties.*` options of the source and the sink.
const PROPERTIES: OptionSpec = OptionSpec {
    name: "properties",
    kind: OptionType::Prefix,
    default: OptionDefault::Unset("—"),
    doc: "any librdkafka property (`properties.security.protocol`: SSL, SASL, timeouts, …)",
};

/// The Kafka source ([`KafkaSource`]).
pub static KAFKA_SOURCE: ConnectorSpec = ConnectorSpec {
    name: "kafka",
    doc: "Spark's Kafka source: the offsets of each batch are kept in the checkpoint, partitions \
          are assigned (no consumer group rebalancing)",
    options: &[
        OptionSpec {
            name: "topic",
            kind: OptionType::List,
            default: OptionDefault::Unset("—"),
            doc: "the topics read (`subscribe`); exactly one of `topic`, `topic_pattern` and \
                  `assign` is given",
        },
        OptionSpec {
            name: "topic_pattern",
            kind: OptionType::Text,
            default: OptionDefault::Unset("—"),
            doc: "a regular expression matching whole topic names (`subscribePattern`)",
        },
        OptionSpec {
            name: "assign",
            kind: OptionType::Text,
            default: OptionDefault::Unset("—"),
            doc: "exactly these partitions, `{\"topic\":[0,1]}` (`assign`)",
        },
        BOOTSTRAP,
        OptionSpec {
            name: "starting_offsets",
            kind: OptionType::Text,
            default: OptionDefault::Value("latest"),
            doc: "where a new query starts: `latest`, `earliest` or Spark's JSON \
                  `{\"topic\":{\"0\":23}}`; a restart resumes from the checkpoint",
        },
        OptionSpec {
            name: "max_offsets_per_trigger",
            kind: OptionType::Count,
            default: OptionDefault::Unset("all"),
            doc: "offsets per micro-batch at most, split across partitions by backlog",
        },
        OptionSpec {
            name: "fail_on_data_loss",
            kind: OptionType::Bool,
            default: OptionDefault::Value("true"),
            doc: "whether offsets deleted before they were read, or gone backwards (a recreated \
                  topic), stop the query (else they are logged, counted and read past)",
        },
        OptionSpec {
            name: "group_id",
            kind: OptionType::Text,
            default: OptionDefault::Unset("none: offsets are only in the checkpoint"),
            doc: "a consumer group the committed offsets are also written to, for lag tools",
        },
        OptionSpec {
            name: "include_metadata",
            kind: OptionType::Bool,
            default: OptionDefault::Value("false"),
            doc: "adds `_key`, `_topic`, `_partition`, `_offset`, `_timestamp`, \
                  `_timestamp_type` after the value's columns",
        },
        OptionSpec {
            name: "include_headers",
            kind: OptionType::Bool,
            default: OptionDefault::Value("false"),
            doc: "adds the metadata columns with `_headers` (Spark's `includeHeaders`): a list \
                  of `{key, value}`, read in SQL with `kafka_header(_headers, 'name')`",
        },
        OptionSpec {
            name: "fetch_timeout",
            kind: OptionType::Duration,
            default: OptionDefault::Value("60 seconds"),
            doc: "how long reading a batch, or reaching the brokers, may go without progress",
        },
        PROPERTIES,
    ],
    configure: Configure::Source {
        reads_json: true,
        configure: configure_source,
    },
};

/// The Kafka sink ([`KafkaSink`]).
pub static KAFKA_SINK: ConnectorSpec = ConnectorSpec {
    name: "kafka",
    doc: "One message per row, idempotent producer; **at-least-once**, as Spark's Kafka sink",
    options: &[
        OptionSpec {
            name: "topic",
            kind: OptionType::Text,
            default: OptionDefault::Required,
            doc: "the topic written",
        },
        BOOTSTRAP,
        OptionSpec {
            name: "key",
            kind: OptionType::List,
            default: OptionDefault::Unset("none"),
            doc: "the columns making the message key: one column's text, or a JSON object of \
                  several",
        },
        OptionSpec {
            name: "format",
            kind: OptionType::Text,
            default: OptionDefault::Value("json"),
            doc: "`json`, the only format: each row as a JSON object",
        },
        PROPERTIES,
    ],
    configure: Configure::Sink(configure_sink),
};

/// The `bootstrap` option, else `KAFKA_BOOTSTRAP`, else `localhost:9092`.
fn bootstrap(
    settings: &mut Settings,
    variable: &dyn Fn(&str) -> Option<String>,
) -> OptionResult<String> {
    Ok(settings
        .get::<String>("bootstrap")?
        .or_else(|| variable(BOOTSTRAP_ENV).filter(|v| !v.is_empty()))
        .unwrap_or_else(|| DEFAULT_BOOTSTRAP.to_string()))
}

fn configure_source(
    settings: &mut Settings,
    table: &SourceTable<'_>,
) -> OptionResult<Arc<dyn SourceFactory>> {
    let topic = settings.get::<Vec<String>>("topic")?;
    let pattern = settings.get::<String>("topic_pattern")?;
    let assign = settings.get::<String>("assign")?;
    let subscription = match (topic, pattern, assign) {
        (Some(topics), None, None) => Subscription::Topics(topics),
        (None, Some(pattern), None) => Subscription::Pattern(pattern),
        (None, None, Some(assign)) => Subscription::Assign(
            parse_assign(&assign)
                .map_err(|e| OptionError::value("assign", format!("option 'assign': {e}")))?,
        ),
        _ => {
            return Err(OptionError::table(
                "a Kafka source takes exactly one of 'topic', 'topic_pattern' or 'assign'",
            ));
        }
    };
    let bootstrap = bootstrap(settings, table.variable)?;
    let starting = settings.parse_value("starting_offsets", |v| {
        v.parse::<StartingOffsets>().map_err(config_message)
    })?;
    let max_offsets_per_trigger: Option<u64> = settings.get("max_offsets_per_trigger")?;
    let fail_on_data_loss: bool = settings.value("fail_on_data_loss")?;
    let group: Option<String> = settings.get("group_id")?;
    let include_headers: bool = settings.value("include_headers")?;
    let include_metadata: bool = settings.value("include_metadata")?;
    // The headers come with the other metadata columns.
    let include_metadata = include_metadata || include_headers;
    let fetch_timeout: Duration = settings.value("fetch_timeout")?;
    let properties = settings.prefixed("properties");
    let (name, schema, json) = (
        table.name.to_string(),
        table.schema.clone(),
        table.json.clone(),
    );
    Ok(Arc::new(move || -> Result<Box<dyn Source>> {
        let mut source = KafkaSource::new(&name, &bootstrap, subscription.clone())?
            .starting_offsets(starting.clone())
            .fail_on_data_loss(fail_on_data_loss)
            .include_metadata(include_metadata)
            .include_headers(include_headers)
            .fetch_timeout(fetch_timeout)
            .json(schema.clone(), json.clone());
        if let Some(n) = max_offsets_per_trigger {
            source = source.max_offsets_per_trigger(n);
        }
        if let Some(group) = &group {
            source = source.commit_to_group(group);
        }
        for (key, value) in &properties {
            source = source.property(key, value);
        }
        Ok(Box::new(source))
    }))
}

/// Spark's `assign` JSON: `{"topic":[0,1]}`.
fn parse_assign(text: &str) -> std::result::Result<Vec<TopicPartition>, String> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("expected JSON like {{\"topic\":[0,1]}}: {e}"))?;
    let topics = value
        .as_object()
        .ok_or("expected a JSON object like {\"topic\":[0,1]}")?;
    let mut partitions = Vec::new();
    for (topic, list) in topics {
        let list = list
            .as_array()
            .ok_or_else(|| format!("topic {topic}: expected an array of partitions"))?;
        for partition in list {
            let partition = partition
                .as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .filter(|p| *p >= 0)
                .ok_or_else(|| format!("topic {topic}: '{partition}' is not a partition number"))?;
            partitions.push(TopicPartition::new(topic, partition));
        }
    }
    if partitions.is_empty() {
        return Err("no partitions".into());
    }
    Ok(partitions)
}

fn configure_sink(
    settings: &mut Settings,
    table: &SinkTable<'_>,
) -> OptionResult<Arc<dyn SinkFactory>> {
    let format: String = settings.value("format")?;
    if !format.eq_ignore_ascii_case("json") {
        return Err(OptionError::value(
            "format",
            format!("format '{format}': the Kafka sink writes 'json'"),
        ));
    }
    let bootstrap = bootstrap(settings, table.variable)?;
    let topic: String = settings.value("topic")?;
    let key: Option<Vec<String>> = settings.get("key")?;
    let properties = settings.prefixed("properties");
    Ok(Arc::new(move |_: &str| -> Result<Box<dyn Sink>> {
        let mut sink = KafkaSink::new(&bootstrap, &topic);
        if let Some(key) = &key {
            sink = sink.key_columns(key.clone());
        }
        for (k, v) in &properties {
            sink = sink.property(k, v);
        }
        Ok(Box::new(sink))
    }))
}
