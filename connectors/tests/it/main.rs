//! Integration tests of the connectors, in one binary (each test binary links DataFusion).
//!
//! Service-backed tests use PostgreSQL at `DATABASE_URL` (or a throwaway cluster) and the
//! broker at `KAFKA_BOOTSTRAP` (or librdkafka's in-process mock cluster); what this machine
//! lacks is listed as ignored, with the reason (`sluice_testkit::build`).

mod binance;
mod common;
mod kafka;
mod postgres;
mod relational;
mod table;
