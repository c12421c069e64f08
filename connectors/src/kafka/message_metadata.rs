//! The message-metadata columns of the Kafka source: `key`, `topic`, `partition`, `offset`,
//! `timestamp`, `timestamp_type` and, on request, `headers` — their schema and the builders
//! that fill them message by message.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, StructBuilder,
    TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use rdkafka::message::{Headers, Message, Timestamp};

/// The metadata columns, named with `prefix` (`""` for raw rows, `"_"` after decoded
/// columns); `headers` adds the headers column.
pub(crate) fn fields(prefix: &str, headers: bool) -> Vec<Field> {
    let mut fields = vec![
        Field::new(format!("{prefix}key"), DataType::Binary, true),
        Field::new(format!("{prefix}topic"), DataType::Utf8, false),
        Field::new(format!("{prefix}partition"), DataType::Int32, false),
        Field::new(format!("{prefix}offset"), DataType::Int64, false),
        Field::new(
            format!("{prefix}timestamp"),
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
        Field::new(format!("{prefix}timestamp_type"), DataType::Int32, false),
    ];
    if headers {
        fields.push(Field::new(
            format!("{prefix}headers"),
            DataType::List(Arc::new(Field::new("item", header_type(), true))),
            true,
        ));
    }
    fields
}

/// `{key: string, value: binary}`, one message header.
fn header_type() -> DataType {
    DataType::Struct(header_fields())
}

fn header_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, true),
        Field::new("value", DataType::Binary, true),
    ])
}

/// Builders of the metadata columns, in the order of [`fields`].
pub(crate) struct MessageMetadata {
    key: BinaryBuilder,
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    timestamp: TimestampMillisecondBuilder,
    timestamp_type: Int32Builder,
    headers: Option<ListBuilder<StructBuilder>>,
}

impl MessageMetadata {
    /// Empty builders; `headers` adds the headers column.
    pub(crate) fn new(headers: bool) -> Self {
        Self {
            key: BinaryBuilder::new(),
            topic: StringBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            timestamp: TimestampMillisecondBuilder::new(),
            timestamp_type: Int32Builder::new(),
            headers: headers
                .then(|| ListBuilder::new(StructBuilder::from_fields(header_fields(), 0))),
        }
    }

    /// Appends the metadata of one message.
    pub(crate) fn append<M: Message>(&mut self, message: &M) {
        self.key.append_option(message.key());
        self.topic.append_value(message.topic());
        self.partition.append_value(message.partition());
        self.offset.append_value(message.offset());
        let (millis, kind) = match message.timestamp() {
            Timestamp::NotAvailable => (None, -1),
            Timestamp::CreateTime(t) => (Some(t), 0),
            Timestamp::LogAppendTime(t) => (Some(t), 1),
        };
        self.timestamp.append_option(millis.filter(|t| *t >= 0));
        self.timestamp_type.append_value(kind);
        if let Some(list) = &mut self.headers {
            if let Some(headers) = message.headers() {
                let entries = list.values();
                for header in headers.iter() {
                    if let Some(key) = entries.field_builder::<StringBuilder>(0) {
                        key.append_value(header.key);
                    }
                    if let Some(value) = entries.field_builder::<BinaryBuilder>(1) {
                        value.append_option(header.value);
                    }
                    entries.append(true);
                }
            }
            list.append(true);
        }
    }

    /// The columns built so far, in the order of [`fields`].
    pub(crate) fn finish(&mut self) -> Vec<ArrayRef> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.key.finish()),
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.timestamp_type.finish()),
        ];
        if let Some(headers) = &mut self.headers {
            columns.push(Arc::new(headers.finish()));
        }
        columns
    }
}
