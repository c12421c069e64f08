//! The relational sink's errors, and how a database error or URL is shown in them: located
//! by the fields the database gives, passwords masked.

use sqlx::postgres::PgDatabaseError;

/// Errors of the relational sink.
#[derive(Debug, thiserror::Error)]
pub enum RelationalError {
    /// An option, URL or the query's shape does not fit the sink.
    #[error("relational sink: {0}")]
    Config(String),

    /// The existing table cannot take the query's rows.
    #[error("table {table} does not match the query: {message}")]
    Schema {
        /// The table.
        table: String,
        /// What does not match, naming the column.
        message: String,
    },

    /// The database refused or failed an operation (after retries, when retrying made sense).
    #[error("{database}: {operation} failed after {attempts} attempt(s): {message}")]
    Database {
        /// The database URL, password masked.
        database: String,
        /// What the sink was doing.
        operation: String,
        /// How many times it tried.
        attempts: u32,
        /// The database's message, with its column, constraint and detail when given.
        message: String,
    },
}

/// A database URL with its password replaced by `***`, for descriptions, logs and errors.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Setting a password only fails on URLs that cannot have one.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "<unparseable database URL>".to_string(),
    }
}

/// The database's message with the fields that locate the problem, `password` masked.
pub(crate) fn describe_error(error: &sqlx::Error, password: Option<&str>) -> String {
    let mut message = match error.as_database_error() {
        Some(db) => {
            let mut message = db.message().to_string();
            if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
                message += &format!(" (SQLSTATE {}", pg.code());
                for (label, value) in [
                    ("column", pg.column()),
                    ("constraint", pg.constraint()),
                    ("detail", pg.detail()),
                    ("where", pg.r#where()),
                ] {
                    if let Some(value) = value {
                        message += &format!(", {label}: {value}");
                    }
                }
                message += ")";
            } else if let Some(code) = db.code() {
                message += &format!(" (code {code})");
            }
            message
        }
        None => error.to_string(),
    };
    if let Some(password) = password.filter(|p| !p.is_empty()) {
        message = message.replace(password, "***");
    }
    message
}
