//! `INCLUDE 'file.sql';`: another file's statements, read as if they were written in place of
//! the `INCLUDE`, and the map from a position back to the file it is in.
//!
//! An included path is relative to the directory of the file that includes it (an absolute
//! path is taken as it is); variables are substituted in an included file as in the file
//! given, and it may include files in turn. Including a file that is already being included
//! (a cycle) and a file that cannot be read are errors at the `INCLUDE`.
//!
//! Every file loaded gets its own range of lines in one numbering for the whole pipeline: the
//! file given keeps its lines 1…n, the first included file takes the next lines, and so on.
//! So the [`Position`]s of statements, and of errors about them, tell which file they are in
//! without the parser, the connectors' options or the settings knowing about files;
//! [`SourceMap`] turns them back into a file name, that file's own line and column, and the
//! chain of `INCLUDE`s that led to it.

use std::path::{Component, Path, PathBuf};

use crate::error::{Located, PipelineError, Position, Site};
use crate::parse::{IncludeDecl, Item, Statement, parse};
use crate::vars::substitute;

/// Reads an included file: from disk ([`read_from_disk`]), or from files compiled into the
/// program (the demo's).
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<String>;

/// How deep `INCLUDE`s may nest: a cycle the paths do not show (through a symbolic link) ends
/// here instead of never.
pub const MAX_DEPTH: usize = 16;

/// How many files one pipeline may load in all, counting a file each time it is included: a
/// file that includes the next one twice, nested, would otherwise load exponentially many.
pub const MAX_FILES: usize = 256;

/// Reads an included file from disk.
pub fn read_from_disk(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

/// The files of a pipeline, each with its range of lines in the pipeline's numbering.
#[derive(Debug, Clone)]
pub struct SourceMap {
    /// In load order; the first is the file given, whose lines are the pipeline's first.
    files: Vec<SourceFile>,
}

/// One file of a pipeline.
#[derive(Debug, Clone)]
struct SourceFile {
    /// As given, or (included) its path joined to the including file's directory, without
    /// `.` and `dir/..`.
    name: String,
    /// The pipeline's lines before this file's first.
    offset: usize,
    /// How many lines the file has.
    lines: usize,
    /// Where the `INCLUDE` that brought the file in is, in the pipeline's numbering; `None`
    /// for the file given.
    included_at: Option<Position>,
}

impl SourceMap {
    /// The file `position` (in the pipeline's numbering) is in.
    fn file(&self, position: Position) -> &SourceFile {
        self.files
            .iter()
            .find(|f| position.line > f.offset && position.line <= f.offset + f.lines)
            .unwrap_or(&self.files[0])
    }

    /// The file and its own line and column of `position`.
    pub fn site(&self, position: Position) -> Site {
        let file = self.file(position);
        Site {
            file: file.name.clone(),
            position: position.up(file.offset),
        }
    }

    /// The `INCLUDE`s that brought in the file of `position`, innermost first.
    fn included_from(&self, position: Position) -> Vec<Site> {
        let mut sites = Vec::new();
        let mut file = self.file(position);
        while let Some(at) = file.included_at {
            sites.push(self.site(at));
            file = self.file(at);
        }
        sites
    }

    /// `position` as another error's message mentions it: `line:column` in the file of
    /// `from`, else `file:line:column`.
    pub fn mention(&self, position: Position, from: Position) -> String {
        let site = self.site(position);
        if site.file == self.file(from).name {
            site.position.to_string()
        } else {
            site.to_string()
        }
    }

    /// The error `error`, naming its file, line and column, and the `INCLUDE`s that led there.
    pub fn error(&self, error: Located) -> PipelineError {
        let Site { file, position } = self.site(error.position);
        PipelineError::At {
            file,
            position,
            message: error.message,
            included_from: self.included_from(error.position),
        }
    }

    /// The error of query `query`, whose `INSERT` is at `position`.
    pub fn query_error(
        &self,
        position: Position,
        query: &str,
        error: sluice_engine::SluiceError,
    ) -> PipelineError {
        let Site { file, position: at } = self.site(position);
        PipelineError::Query {
            file,
            position: at,
            included_from: self.included_from(position),
            query: query.to_string(),
            error: Box::new(error),
        }
    }
}

/// The statements of pipeline `text` (named `file`), `INCLUDE`s replaced by the included files'
/// statements, with variables substituted from `lookup` and included files read by `read`;
/// and the map from their positions back to the files.
pub fn load(
    file: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    read: ReadFile<'_>,
) -> Result<(Vec<Statement>, SourceMap), PipelineError> {
    let mut loader = Loader {
        map: SourceMap { files: Vec::new() },
        lookup,
        read,
        open: Vec::new(),
    };
    let dir = Path::new(file).parent().unwrap_or(Path::new(""));
    match loader.file(file.to_string(), dir, text, None) {
        Ok(statements) => Ok((statements, loader.map)),
        Err(error) => Err(loader.map.error(error)),
    }
}

/// Loads files, following their `INCLUDE`s.
struct Loader<'a> {
    map: SourceMap,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    read: ReadFile<'a>,
    /// The files being loaded (each includes the next), as normalized paths, to find cycles.
    open: Vec<PathBuf>,
}

/// `path` without `.` and with `dir/..` removed, written alike however it was reached.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            component => out.push(component),
        }
    }
    out
}

impl Loader<'_> {
    /// The statements of file `name`, in directory `dir`, brought in by the `INCLUDE` at
    /// `included_at`.
    fn file(
        &mut self,
        name: String,
        dir: &Path,
        text: &str,
        included_at: Option<Position>,
    ) -> Result<Vec<Statement>, Located> {
        // A UTF-8 byte-order mark (some Windows editors write one) is not part of the text;
        // columns on the first line are counted without it, as an editor shows them.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let offset = self.map.files.last().map_or(0, |f| f.offset + f.lines);
        self.open.push(normalize(Path::new(&name)));
        self.map.files.push(SourceFile {
            name,
            offset,
            lines: text.split('\n').count(),
            included_at,
        });
        let substituted = substitute(text, self.lookup)
            .map_err(|e| Located::new(e.position.down(offset), e.message))?;
        let mut statements = Vec::new();
        for item in parse(&substituted, offset)? {
            match item {
                Item::Statement(statement) => statements.push(statement),
                Item::Include(include) => statements.extend(self.include(dir, &include)?),
            }
        }
        self.open.pop();
        Ok(statements)
    }

    /// The statements of the file `include` names, relative to `dir`.
    fn include(&mut self, dir: &Path, include: &IncludeDecl) -> Result<Vec<Statement>, Located> {
        let path = dir.join(&include.path);
        let key = normalize(&path);
        let error = |message: String| Located::new(include.position, message);
        if let Some(first) = self.open.iter().position(|open| *open == key) {
            let cycle: Vec<String> = self.open[first..]
                .iter()
                .chain([&key])
                .map(|p| p.display().to_string())
                .collect();
            return Err(error(format!(
                "INCLUDE '{}' makes a cycle: {}",
                include.path,
                cycle.join(" → ")
            )));
        }
        if self.open.len() > MAX_DEPTH {
            return Err(error(format!(
                "INCLUDE '{}': files include each other more than {MAX_DEPTH} deep",
                include.path
            )));
        }
        if self.map.files.len() >= MAX_FILES {
            return Err(error(format!(
                "INCLUDE '{}': the pipeline loads more than {MAX_FILES} files",
                include.path
            )));
        }
        let text = (self.read)(&path).map_err(|e| {
            error(format!(
                "INCLUDE '{}': cannot read {}: {e}",
                include.path,
                path.display()
            ))
        })?;
        // Named as the cycles are found, read (and its own includes resolved) as written.
        let dir = path.parent().unwrap_or(Path::new(""));
        self.file(
            key.display().to_string(),
            dir,
            &text,
            Some(include.position),
        )
    }
}
