//! The Kafka source and sink as pipeline files declare them (`connector = 'kafka'`): their
//! options and how validated options become a [`KafkaSource`] or [`KafkaSink`] per query.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;

use sluice_engine::connector::{
    Configure, ConnectorSpec, OptionDefault, OptionError, OptionResult, OptionSpec, OptionType,
    Settings, SinkFactory, SinkTable, SourceFactory, SourceTable, config_message,
};
use sluice_engine::{JsonOptions, Result, Sink, Source};

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
          are assigned (no consumer group rebalancing); a distributed query \
          (`distribution = 'kafka_partitions'`) splits them into tasks among its workers",
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
            name: "partitioned_by",
            kind: OptionType::Text,
            default: OptionDefault::Unset("none"),
            doc: "the column the producer keys messages by (ours: `symbol`), so that one \
                  key's messages are in one partition; a distributed query \
                  (`distribution = 'kafka_partitions'`) must group by it",
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
    let partitioned_by: Option<String> = settings.get("partitioned_by")?;
    if let Some(column) = &partitioned_by
        && table.schema.field_with_name(column).is_err()
    {
        return Err(OptionError::value(
            "partitioned_by",
            format!("partitioned_by: {column} is not a column of the table"),
        ));
    }
    let include_headers: bool = settings.value("include_headers")?;
    let include_metadata: bool = settings.value("include_metadata")?;
    Ok(Arc::new(KafkaSourceFactory {
        name: table.name.to_string(),
        bootstrap,
        subscription,
        starting,
        max_offsets_per_trigger: settings.get("max_offsets_per_trigger")?,
        fail_on_data_loss: settings.value("fail_on_data_loss")?,
        group: settings.get("group_id")?,
        // The headers come with the other metadata columns.
        include_metadata: include_metadata || include_headers,
        include_headers,
        fetch_timeout: settings.value("fetch_timeout")?,
        properties: settings.prefixed("properties").into_iter().collect(),
        schema: table.schema.clone(),
        json: table.json.clone(),
        partitioned_by,
    }))
}

/// A validated Kafka source table: builds its sources, for a whole query or for one task of
/// a distributed query (`distribution = 'kafka_partitions'`, see [`super::group`]).
pub struct KafkaSourceFactory {
    name: String,
    bootstrap: String,
    subscription: Subscription,
    starting: StartingOffsets,
    max_offsets_per_trigger: Option<u64>,
    fail_on_data_loss: bool,
    group: Option<String>,
    include_metadata: bool,
    include_headers: bool,
    fetch_timeout: Duration,
    properties: BTreeMap<String, String>,
    schema: SchemaRef,
    json: JsonOptions,
    partitioned_by: Option<String>,
}

impl KafkaSourceFactory {
    /// The brokers.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The user's librdkafka properties (SSL, SASL, timeouts), for the group membership too.
    pub fn properties(&self) -> &BTreeMap<String, String> {
        &self.properties
    }

    /// The column the producer keys messages by (`partitioned_by`), if declared.
    pub fn partitioned_by(&self) -> Option<&str> {
        self.partitioned_by.as_deref()
    }

    /// The topics subscribed to (`topic`), which a distributed query's tasks split by
    /// partition; an error for `topic_pattern` and `assign`, whose partitions are not a
    /// fixed set of tasks.
    pub fn topics(&self) -> Result<&[String]> {
        match &self.subscription {
            Subscription::Topics(topics) => Ok(topics),
            _ => Err(sluice_engine::SluiceError::Config(format!(
                "source {}: a distributed query reads its Kafka topics with 'topic' (not \
                 'topic_pattern' or 'assign'), one task per partition",
                self.name
            ))),
        }
    }

    /// The source of task `task`: partition `task` of each topic, starting where the
    /// `starting_offsets` say for those partitions.
    pub fn build_task(&self, task: i32) -> Result<Box<dyn Source>> {
        let partitions: Vec<TopicPartition> = self
            .topics()?
            .iter()
            .map(|topic| TopicPartition::new(topic, task))
            .collect();
        let starting = match &self.starting {
            StartingOffsets::Specific(offsets) => StartingOffsets::Specific(
                offsets
                    .iter()
                    .filter(|(tp, _)| partitions.contains(tp))
                    .map(|(tp, offset)| (tp.clone(), *offset))
                    .collect(),
            ),
            other => other.clone(),
        };
        self.source(Subscription::Assign(partitions), starting)
    }

    fn source(
        &self,
        subscription: Subscription,
        starting: StartingOffsets,
    ) -> Result<Box<dyn Source>> {
        let mut source = KafkaSource::new(&self.name, &self.bootstrap, subscription)?
            .starting_offsets(starting)
            .fail_on_data_loss(self.fail_on_data_loss)
            .include_metadata(self.include_metadata)
            .include_headers(self.include_headers)
            .fetch_timeout(self.fetch_timeout)
            .json(self.schema.clone(), self.json.clone());
        if let Some(n) = self.max_offsets_per_trigger {
            source = source.max_offsets_per_trigger(n);
        }
        if let Some(group) = &self.group {
            source = source.commit_to_group(group);
        }
        for (key, value) in &self.properties {
            source = source.property(key, value);
        }
        Ok(Box::new(source))
    }
}

impl SourceFactory for KafkaSourceFactory {
    fn build(&self) -> Result<Box<dyn Source>> {
        self.source(self.subscription.clone(), self.starting.clone())
    }
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
