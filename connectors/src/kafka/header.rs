//! `kafka_header(headers, name)`: the value of a message's header, for SQL over the
//! `_headers` column (`headers` in raw rows) that [`KafkaSource::include_headers`] adds.
//!
//! Kafka allows a name to repeat in a message's headers; as Kafka's `Headers.lastHeader`, the
//! last one wins. The value is binary (`CAST(… AS VARCHAR)` reads UTF-8 text); a message
//! without that header, or without headers, gives null.
//!
//! [`KafkaSource::include_headers`]: super::KafkaSource::include_headers

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The `kafka_header` SQL function, to register in the query's session (pipeline files have
/// it).
pub fn kafka_header_function() -> ScalarUDF {
    ScalarUDF::new_from_impl(KafkaHeader {
        signature: Signature::any(2, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct KafkaHeader {
    signature: Signature,
}

impl ScalarUDFImpl for KafkaHeader {
    fn name(&self) -> &str {
        "kafka_header"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match (&args[0], &args[1]) {
            (DataType::List(item), DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
                if matches!(item.data_type(), DataType::Struct(fields)
                    if matches!(fields.find("key"), Some((_, f)) if f.data_type() == &DataType::Utf8)
                        && matches!(fields.find("value"), Some((_, f)) if f.data_type() == &DataType::Binary)) =>
            {
                Ok(DataType::Binary)
            }
            (headers, name) => Err(DataFusionError::Plan(format!(
                "kafka_header(headers, name) takes the headers column (a list of {{key, value}}, \
                 from include_headers) and a header name; got ({headers}, {name})"
            ))),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let headers = args.args[0].to_array(rows)?;
        let names = args.args[1].to_array(rows)?;
        let names = arrow::compute::cast(&names, &DataType::Utf8)?;
        let names: &StringArray = names.as_string();
        let lists = headers.as_list::<i32>();
        let mut out = BinaryBuilder::new();
        for row in 0..rows {
            if lists.is_null(row) || names.is_null(row) {
                out.append_null();
                continue;
            }
            let list = lists.value(row);
            let Some(entries) = list.as_struct_opt() else {
                return exec_err!("kafka_header: the headers are not a list of {{key, value}}");
            };
            let (Some(keys), Some(values)) = (
                entries.column_by_name("key"),
                entries.column_by_name("value"),
            ) else {
                return exec_err!("kafka_header: the headers have no key or value field");
            };
            let (Some(keys), Some(values)) =
                (keys.as_string_opt::<i32>(), values.as_binary_opt::<i32>())
            else {
                return exec_err!("kafka_header: the headers are not {{key: text, value: binary}}");
            };
            let name = names.value(row);
            match (0..keys.len())
                .rev()
                .find(|&i| keys.is_valid(i) && keys.value(i) == name)
            {
                Some(i) if values.is_valid(i) => out.append_value(values.value(i)),
                _ => out.append_null(),
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        match &args.args[..] {
            [ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)] => Ok(ColumnarValue::Scalar(
                ScalarValue::try_from_array(&array, 0)?,
            )),
            _ => Ok(ColumnarValue::Array(array)),
        }
    }
}
