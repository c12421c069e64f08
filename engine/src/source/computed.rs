//! Computed columns: a source wrapper that appends columns computed by SQL expressions over the
//! source's own columns, batch by batch (Flink's `name AS expr` columns in `CREATE TABLE`).
//!
//! Computing them at the source, before the query, is what lets a watermark be declared on a
//! derived event time (e.g. `ts AS to_timestamp_millis("timestamp")`): the engine reads event
//! times from the source's batches.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

use super::{ReadLimit, Source, SourceBatch};
use crate::error::{Result, SluiceError};
use crate::offset::Offset;

/// A source whose batches get extra columns computed from each row.
///
/// ```
/// use std::sync::Arc;
/// use arrow::datatypes::{DataType, Field, Schema};
/// use sluice_engine::source::{ComputedColumns, MemorySource, Source};
///
/// let schema = Arc::new(Schema::new(vec![Field::new("timestamp", DataType::Int64, true)]));
/// let ticks = MemorySource::new("ticks", schema);
/// let session = sluice_engine::streaming_session();
/// let computed = ComputedColumns::new(
///     Box::new(ticks),
///     &session,
///     &[("ts".to_string(), "to_timestamp_millis(\"timestamp\")".to_string())],
/// )
/// .unwrap();
/// assert_eq!(computed.schema().field(1).name(), "ts");
/// ```
pub struct ComputedColumns {
    inner: Box<dyn Source>,
    schema: SchemaRef,
    exprs: Vec<Arc<dyn PhysicalExpr>>,
}

impl ComputedColumns {
    /// Wraps `inner`, appending one column per `(name, sql expression)` in order. Expressions
    /// see the source's columns only (not each other) and are planned in `session`, so its
    /// functions, including user-defined ones, are available.
    pub fn new(
        inner: Box<dyn Source>,
        session: &SessionContext,
        columns: &[(String, String)],
    ) -> Result<Self> {
        let input = inner.schema();
        let df_schema = DFSchema::try_from(input.as_ref().clone())?;
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut exprs = Vec::with_capacity(columns.len());
        for (name, sql) in columns {
            if fields.iter().any(|f| f.name() == name) {
                return Err(SluiceError::Config(format!(
                    "computed column '{name}' has the name of another column"
                )));
            }
            let invalid = |e: datafusion::error::DataFusionError| {
                SluiceError::Config(format!("computed column '{name}' AS {sql}: {e}"))
            };
            let expr = session.parse_sql_expr(sql, &df_schema).map_err(invalid)?;
            let physical = session
                .create_physical_expr(expr, &df_schema)
                .map_err(invalid)?;
            let data_type = physical.data_type(&input).map_err(invalid)?;
            fields.push(Field::new(name, data_type, true));
            exprs.push(physical);
        }
        Ok(Self {
            inner,
            schema: Arc::new(Schema::new(fields)),
            exprs,
        })
    }

    fn compute(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let mut columns = batch.columns().to_vec();
        for expr in &self.exprs {
            columns.push(expr.evaluate(&batch)?.into_array(batch.num_rows())?);
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

#[async_trait]
impl Source for ComputedColumns {
    fn description(&self) -> String {
        self.inner.description()
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn set_parallelism(&mut self, threads: usize) {
        self.inner.set_parallelism(threads);
    }

    async fn initial_offset(&mut self) -> Result<Offset> {
        self.inner.initial_offset().await
    }

    fn default_read_limit(&self) -> ReadLimit {
        self.inner.default_read_limit()
    }

    async fn latest_offset(&mut self, start: &Offset, limit: ReadLimit) -> Result<Offset> {
        self.inner.latest_offset(start, limit).await
    }

    async fn get_batch(&mut self, start: &Offset, end: &Offset) -> Result<SourceBatch> {
        let read = self.inner.get_batch(start, end).await?;
        let batches = read
            .batches
            .into_iter()
            .map(|batch| self.compute(batch))
            .collect::<Result<_>>()?;
        Ok(SourceBatch {
            batches,
            malformed: read.malformed,
        })
    }

    async fn commit(&mut self, end: &Offset) -> Result<()> {
        self.inner.commit(end).await
    }

    async fn prepare_for_available_now(&mut self) -> Result<()> {
        self.inner.prepare_for_available_now().await
    }

    fn backlog(&self, start: &Offset) -> Option<u64> {
        self.inner.backlog(start)
    }

    fn metrics(&self, end: &Offset) -> std::collections::BTreeMap<String, String> {
        self.inner.metrics(end)
    }
}
