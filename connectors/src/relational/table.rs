//! The target table of a relational sink, derived from the query's Arrow schema: column types,
//! the flattening of struct columns, the key, the DDL, and the check of an existing table.
//!
//! Everything here is pure: no connection, so the mapping and every error message are tested
//! without a database.
//!
//! | Arrow type                   | PostgreSQL          | SQLite                     |
//! |------------------------------|---------------------|----------------------------|
//! | Utf8, LargeUtf8, Utf8View    | `text`              | `TEXT`                     |
//! | Float64                      | `double precision`  | `REAL`                     |
//! | Float32                      | `real`              | `REAL`                     |
//! | Int64, UInt32                | `bigint`            | `INTEGER`                  |
//! | Int32, UInt16                | `integer`           | `INTEGER`                  |
//! | Int16, Int8, UInt8           | `smallint`          | `INTEGER`                  |
//! | UInt64                       | `numeric(20,0)`     | `TEXT` (decimal digits)    |
//! | Boolean                      | `boolean`           | `INTEGER` (0/1)            |
//! | Timestamp (any unit or zone) | `timestamptz`       | `TEXT` `YYYY-MM-DD HH:MM:SS.ffffff` UTC |
//! | Date32                       | `date`              | `TEXT` `YYYY-MM-DD`        |
//! | Decimal128(p, s)             | `numeric(p,s)`      | `TEXT` (decimal digits)    |
//! | Binary, LargeBinary          | `bytea`             | `BLOB`                     |
//! | Struct (e.g. `window`)       | one column per field, named `<column>_<field>` | same |
//!
//! A timestamp without a time zone is an instant in UTC, as Spark's `TimestampType` is. SQLite
//! timestamps are fixed-width text, so they sort and compare in time order and SQLite's date
//! functions read them. Any other Arrow type is refused when the sink opens, naming the column.

use std::fmt;

use arrow::datatypes::{DataType, Fields, Schema};

use super::error::RelationalError;

/// The SQL dialect a statement is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// The SQL type a column is stored as (see the module's mapping table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// Text.
    Text,
    /// 64-bit float.
    Double,
    /// 32-bit float.
    Real,
    /// 64-bit integer.
    BigInt,
    /// 32-bit integer.
    Integer,
    /// 16-bit integer.
    SmallInt,
    /// Boolean.
    Boolean,
    /// An instant, microsecond precision.
    Timestamp,
    /// A calendar date.
    Date,
    /// Exact decimal with precision and scale.
    Numeric {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: i8,
    },
    /// Bytes.
    Bytes,
}

impl SqlType {
    /// The type a column of Arrow type `data_type` is stored as, if it has one.
    pub fn of(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Self::Text,
            DataType::Float64 => Self::Double,
            DataType::Float32 => Self::Real,
            DataType::Int64 | DataType::UInt32 => Self::BigInt,
            DataType::Int32 | DataType::UInt16 => Self::Integer,
            DataType::Int16 | DataType::Int8 | DataType::UInt8 => Self::SmallInt,
            DataType::UInt64 => Self::Numeric {
                precision: 20,
                scale: 0,
            },
            DataType::Boolean => Self::Boolean,
            DataType::Timestamp(_, _) => Self::Timestamp,
            DataType::Date32 => Self::Date,
            DataType::Decimal128(precision, scale) => Self::Numeric {
                precision: *precision,
                scale: *scale,
            },
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Self::Bytes,
            _ => return None,
        })
    }

    /// The type's name in `dialect`'s DDL.
    pub fn ddl(&self, dialect: Dialect) -> String {
        match dialect {
            Dialect::Postgres => match self {
                Self::Text => "text".into(),
                Self::Double => "double precision".into(),
                Self::Real => "real".into(),
                Self::BigInt => "bigint".into(),
                Self::Integer => "integer".into(),
                Self::SmallInt => "smallint".into(),
                Self::Boolean => "boolean".into(),
                Self::Timestamp => "timestamptz".into(),
                Self::Date => "date".into(),
                Self::Numeric { precision, scale } => format!("numeric({precision},{scale})"),
                Self::Bytes => "bytea".into(),
            },
            Dialect::Sqlite => match self {
                Self::Double | Self::Real => "REAL",
                Self::BigInt | Self::Integer | Self::SmallInt | Self::Boolean => "INTEGER",
                Self::Text | Self::Timestamp | Self::Date | Self::Numeric { .. } => "TEXT",
                Self::Bytes => "BLOB",
            }
            .into(),
        }
    }

    /// Whether an existing column declared as `declared` (as the database reports it) stores
    /// this type. PostgreSQL names come from `information_schema.columns.data_type`; SQLite's
    /// declared types are compared by type affinity.
    pub fn accepts(&self, dialect: Dialect, declared: &str) -> bool {
        let declared = declared.trim().to_ascii_lowercase();
        match dialect {
            Dialect::Postgres => match self {
                Self::Text => matches!(declared.as_str(), "text" | "character varying"),
                Self::Double => declared == "double precision",
                Self::Real => declared == "real",
                Self::BigInt => declared == "bigint",
                Self::Integer => declared == "integer",
                Self::SmallInt => declared == "smallint",
                Self::Boolean => declared == "boolean",
                Self::Timestamp => declared.starts_with("timestamp"),
                Self::Date => declared == "date",
                Self::Numeric { .. } => declared == "numeric",
                Self::Bytes => declared == "bytea",
            },
            Dialect::Sqlite => sqlite_affinity(&declared) == sqlite_affinity(&self.ddl(dialect)),
        }
    }
}

/// SQLite's type affinity of a declared column type (section 3.1 of SQLite's datatype docs).
fn sqlite_affinity(declared: &str) -> &'static str {
    let declared = declared.to_ascii_uppercase();
    if declared.contains("INT") {
        "INTEGER"
    } else if ["CHAR", "CLOB", "TEXT"]
        .iter()
        .any(|t| declared.contains(t))
    {
        "TEXT"
    } else if declared.is_empty() || declared.contains("BLOB") {
        "BLOB"
    } else if ["REAL", "FLOA", "DOUB"]
        .iter()
        .any(|t| declared.contains(t))
    {
        "REAL"
    } else {
        "NUMERIC"
    }
}

/// A table name, optionally qualified by a schema (`schema.table`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// The schema, if given.
    pub schema: Option<String>,
    /// The table.
    pub name: String,
}

impl TableName {
    /// Parses `table` or `schema.table`; names are taken as written (case-sensitive).
    pub fn parse(text: &str) -> Result<Self, RelationalError> {
        let invalid = || RelationalError::Config(format!("invalid table name '{text}'"));
        let mut parts = text.split('.');
        let (schema, name) = match (parts.next(), parts.next(), parts.next()) {
            (Some(name), None, None) => (None, name),
            (Some(schema), Some(name), None) => (Some(schema.to_string()), name),
            _ => return Err(invalid()),
        };
        if name.is_empty() || schema.as_deref() == Some("") {
            return Err(invalid());
        }
        Ok(Self {
            schema,
            name: name.to_string(),
        })
    }

    /// The quoted, qualified name for SQL statements.
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(&self.name)),
            None => quote_ident(&self.name),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Quotes an identifier for PostgreSQL and SQLite (`"name"`, inner quotes doubled).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One column of the table and the Arrow values it is written from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlColumn {
    /// The column's name in the table.
    pub name: String,
    /// The index of the Arrow column in the query's output.
    pub column: usize,
    /// For a flattened struct, the index of the field in the struct.
    pub field: Option<usize>,
    /// The SQL type.
    pub sql_type: SqlType,
    /// Whether the Arrow values may be null.
    pub nullable: bool,
}

/// A column of an existing table, as the database describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingColumn {
    /// The column's name.
    pub name: String,
    /// The declared type, as the database reports it.
    pub declared_type: String,
    /// Whether the column is `NOT NULL`.
    pub not_null: bool,
    /// Whether the column has a default value (or is generated).
    pub has_default: bool,
}

/// The table a sink writes: its name, its columns in output order, and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLayout {
    /// The table.
    pub table: TableName,
    /// Its columns, struct fields flattened.
    pub columns: Vec<SqlColumn>,
    /// Positions in `columns` of the key (primary key, upsert conflict target); empty if none.
    pub key: Vec<usize>,
}

impl TableLayout {
    /// Derives the table from the query's output `schema`. `key` names output columns (or
    /// already flattened table columns such as `window_start`); a window struct in the key
    /// stands for its start, any other struct for all its fields.
    pub fn from_schema(
        table: TableName,
        schema: &Schema,
        key: &[String],
    ) -> Result<Self, RelationalError> {
        let mut columns = Vec::new();
        for (index, field) in schema.fields().iter().enumerate() {
            match field.data_type() {
                DataType::Struct(children) => {
                    for (child_index, child) in children.iter().enumerate() {
                        columns.push(SqlColumn {
                            name: format!("{}_{}", field.name(), child.name()),
                            column: index,
                            field: Some(child_index),
                            sql_type: sql_type(&table, child.name(), child.data_type())?,
                            nullable: field.is_nullable() || child.is_nullable(),
                        });
                    }
                }
                data_type => columns.push(SqlColumn {
                    name: field.name().clone(),
                    column: index,
                    field: None,
                    sql_type: sql_type(&table, field.name(), data_type)?,
                    nullable: field.is_nullable(),
                }),
            }
        }
        let mut positions = Vec::new();
        for name in key {
            let position = |column: &str| columns.iter().position(|c| c.name == column);
            match schema.field_with_name(name).map(|f| f.data_type()) {
                Ok(DataType::Struct(children)) if is_window(children) => {
                    positions.extend(position(&format!("{name}_start")));
                }
                Ok(DataType::Struct(children)) => {
                    positions.extend(
                        children
                            .iter()
                            .filter_map(|child| position(&format!("{name}_{}", child.name()))),
                    );
                }
                _ => match position(name) {
                    Some(p) => positions.push(p),
                    None => {
                        return Err(RelationalError::Config(format!(
                            "table {table}: key column '{name}' is not an output column of the query \
                             (columns: {})",
                            columns
                                .iter()
                                .map(|c| c.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                },
            }
        }
        Ok(Self {
            table,
            columns,
            key: positions,
        })
    }

    /// The names of the key columns.
    pub fn key_names(&self) -> Vec<&str> {
        self.key
            .iter()
            .map(|&i| self.columns[i].name.as_str())
            .collect()
    }

    /// The quoted column list `"a", "b", …`.
    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `CREATE TABLE IF NOT EXISTS` with the key as primary key (key columns `NOT NULL`).
    pub fn create_table(&self, dialect: Dialect) -> String {
        let mut definitions: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let not_null = if self.key.contains(&i) {
                    " NOT NULL"
                } else {
                    ""
                };
                format!(
                    "{} {}{not_null}",
                    quote_ident(&c.name),
                    c.sql_type.ddl(dialect)
                )
            })
            .collect();
        if !self.key.is_empty() {
            definitions.push(format!("PRIMARY KEY ({})", self.quoted_key()));
        }
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            self.table.quoted(),
            definitions.join(", ")
        )
    }

    /// `CREATE INDEX IF NOT EXISTS` on `columns`, named after the table and the columns.
    pub fn create_index(&self, columns: &[String]) -> Result<String, RelationalError> {
        for column in columns {
            if !self.columns.iter().any(|c| &c.name == column) {
                return Err(RelationalError::Config(format!(
                    "table {}: index column '{column}' is not a column of the table",
                    self.table
                )));
            }
        }
        let name = format!("{}_{}_idx", self.table.name, columns.join("_"));
        let quoted: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
        Ok(format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
            quote_ident(&name),
            self.table.quoted(),
            quoted.join(", ")
        ))
    }

    /// The quoted key columns, comma-separated.
    pub fn quoted_key(&self) -> String {
        self.key_names()
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The `ON CONFLICT (key) DO UPDATE SET …` clause that makes an insert an upsert.
    pub fn upsert_clause(&self) -> String {
        let updates: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.key.contains(i))
            .map(|(_, c)| format!("{0} = excluded.{0}", quote_ident(&c.name)))
            .collect();
        if updates.is_empty() {
            format!(" ON CONFLICT ({}) DO NOTHING", self.quoted_key())
        } else {
            format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                self.quoted_key(),
                updates.join(", ")
            )
        }
    }

    /// Checks that an existing table can take the query's rows: every column present with a
    /// type that stores it, no other `NOT NULL` column without a default, and — when the sink
    /// upserts — a unique index or primary key on exactly the key columns (`unique_keys`).
    pub fn validate(
        &self,
        dialect: Dialect,
        existing: &[ExistingColumn],
        unique_keys: &[Vec<String>],
        needs_unique_key: bool,
    ) -> Result<(), RelationalError> {
        let table = &self.table;
        let mismatch = |message: String| RelationalError::Schema {
            table: table.to_string(),
            message,
        };
        for column in &self.columns {
            let Some(found) = existing.iter().find(|e| e.name == column.name) else {
                return Err(mismatch(format!(
                    "it has no column \"{}\" ({} expected); add the column, or drop the table \
                     and let the sink create it",
                    column.name,
                    column.sql_type.ddl(dialect)
                )));
            };
            if !column.sql_type.accepts(dialect, &found.declared_type) {
                return Err(mismatch(format!(
                    "column \"{}\" is {}, but the query writes {}",
                    column.name,
                    found.declared_type,
                    column.sql_type.ddl(dialect)
                )));
            }
        }
        if let Some(extra) = existing.iter().find(|e| {
            e.not_null && !e.has_default && !self.columns.iter().any(|c| c.name == e.name)
        }) {
            return Err(mismatch(format!(
                "column \"{}\" is NOT NULL without a default and the query does not write it",
                extra.name
            )));
        }
        if needs_unique_key {
            let mut key: Vec<&str> = self.key_names();
            key.sort_unstable();
            let covered = unique_keys.iter().any(|unique| {
                let mut unique: Vec<&str> = unique.iter().map(String::as_str).collect();
                unique.sort_unstable();
                unique == key
            });
            if !covered {
                return Err(mismatch(format!(
                    "upserts need a primary key or unique index on ({}), and the table has none",
                    key.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// Whether a struct is an event-time window (`start`, `end`).
fn is_window(children: &Fields) -> bool {
    children.len() == 2 && children[0].name() == "start" && children[1].name() == "end"
}

fn sql_type(
    table: &TableName,
    column: &str,
    data_type: &DataType,
) -> Result<SqlType, RelationalError> {
    SqlType::of(data_type).ok_or_else(|| {
        RelationalError::Config(format!(
            "table {table}: column '{column}' has type {data_type}, which the relational sink \
             cannot store; cast it in the query (e.g. to a string)"
        ))
    })
}
