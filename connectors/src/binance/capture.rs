//! Capture files: raw WebSocket frames with their arrival times, as gzip-compressed JSON lines
//! `{"t": <arrival, ms since the epoch>, "frame": "<the frame's text>"}`.
//!
//! `sluice capture binance` writes them, the replay server serves them, and the bundled sample
//! is one.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

/// One recorded frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedFrame {
    /// When the frame arrived, in ms since the Unix epoch.
    #[serde(rename = "t")]
    pub arrival_ms: i64,
    /// The frame's text, unchanged.
    #[serde(rename = "frame")]
    pub text: String,
}

/// Errors reading or writing a capture file.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file could not be opened, read or written.
    #[error("capture file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a captured frame.
    #[error("capture file {path}, line {line}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// Appends frames to a new capture file; call [`CaptureWriter::finish`] to complete it (a
/// file cut short by a crash still reads up to its last complete line).
pub struct CaptureWriter {
    path: PathBuf,
    out: GzEncoder<BufWriter<File>>,
}

impl CaptureWriter {
    /// Creates (or truncates) `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, CaptureError> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|source| CaptureError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            out: GzEncoder::new(BufWriter::new(file), Compression::default()),
            path,
        })
    }

    /// Writes one frame.
    pub fn write(&mut self, frame: &CapturedFrame) -> Result<(), CaptureError> {
        let io = |source| CaptureError::Io {
            path: self.path.clone(),
            source,
        };
        serde_json::to_writer(&mut self.out, frame).map_err(|e| io(e.into()))?;
        self.out.write_all(b"\n").map_err(io)
    }

    /// Flushes and closes the file.
    pub fn finish(self) -> Result<(), CaptureError> {
        let path = self.path;
        let io = |source| CaptureError::Io {
            path: path.clone(),
            source,
        };
        let mut writer = self.out.finish().map_err(io)?;
        writer.flush().map_err(io)?;
        writer.get_ref().sync_all().map_err(io)
    }
}

/// Reads every frame of a capture file.
pub fn read_capture(path: impl AsRef<Path>) -> Result<Vec<CapturedFrame>, CaptureError> {
    let path = path.as_ref().to_path_buf();
    let file = File::open(&path).map_err(|source| CaptureError::Io {
        path: path.clone(),
        source,
    })?;
    read_capture_from(file, path)
}

/// Reads every frame of a capture held in `reader` (gzip-compressed JSON lines, as a capture
/// file); `name` names it in errors. For a capture compiled into a binary.
pub fn read_capture_from(
    reader: impl std::io::Read,
    name: impl AsRef<Path>,
) -> Result<Vec<CapturedFrame>, CaptureError> {
    let path = name.as_ref().to_path_buf();
    let mut frames = Vec::new();
    for (index, line) in BufReader::new(MultiGzDecoder::new(reader))
        .lines()
        .enumerate()
    {
        let line = match line {
            Ok(line) => line,
            // A file cut short by a crash ends in a partial gzip member: keep what was read.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !frames.is_empty() => {
                tracing::warn!(path = %path.display(), "capture file ends early; read {} frames", frames.len());
                break;
            }
            Err(source) => return Err(CaptureError::Io { path, source }),
        };
        if line.trim().is_empty() {
            continue;
        }
        let frame = serde_json::from_str(&line).map_err(|e| CaptureError::Format {
            path: path.clone(),
            line: index + 1,
            message: e.to_string(),
        })?;
        frames.push(frame);
    }
    Ok(frames)
}
