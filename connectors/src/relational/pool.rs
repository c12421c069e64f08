//! The connection pools of the relational back ends.

/// Pool options with sqlx's maintenance task off: no idle timeout, no maximum lifetime and no
/// minimum of connections, so the task is never spawned. In sqlx-core 0.9.0 that task can race
/// with a connection's release, wrap the idle-connection count below zero and spin a runtime
/// worker at 100 % (upstream issue #3645, fixed after 0.9.0 by PR #4289); a query then hangs
/// between its offsets and its commit. A sink's connections are few and in constant use, so
/// reaping idle ones is worth nothing here. A connection the server closed is replaced on its
/// next use.
pub fn pool_options<DB: sqlx::Database>() -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .idle_timeout(None)
        .max_lifetime(None)
        .min_connections(0)
}
