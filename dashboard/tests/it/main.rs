//! Dashboard integration tests: the JSON API and live updates on SQLite and PostgreSQL
//! (`DATABASE_URL`), and the page in headless Chromium.

mod api;
mod browser;
mod fixtures;
mod http;
mod limits;
mod live;
mod refresh;
