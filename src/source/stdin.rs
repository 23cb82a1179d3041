//! One stream from standard input (or any reader), stored as a single file named `name`.

use std::io::Read;

use bytes::Bytes;

use crate::pipeline::{BackupSession, PipelineError};
use crate::repo::blob::BlobKind;
use crate::repo::tree::Tree;

use super::{Source, SourceOutcome, SourceReport};

pub struct StdinSource<R: Read + Send> {
    reader: Option<R>,
    name: String,
}

impl<R: Read + Send> StdinSource<R> {
    pub fn new(reader: R, name: impl Into<String>) -> Self {
        StdinSource {
            reader: Some(reader),
            name: name.into(),
        }
    }
}

impl<R: Read + Send> Source for StdinSource<R> {
    fn kind(&self) -> &'static str {
        "stdin"
    }

    fn run(&mut self, session: &mut BackupSession) -> Result<SourceOutcome, PipelineError> {
        let reader = self.reader.take().ok_or(PipelineError::Stopped)?;
        let mut splitter = session.content_splitter();
        let pending = session.add_stream(reader, &mut splitter, None, "standard input")?;
        let content = session.wait(pending)?;
        let node = super::stream_node(self.name.as_bytes(), content);
        let tree = Tree { nodes: vec![node] };
        let tree_id = session.add_blob(BlobKind::Tree, Bytes::from(tree.encode()))?;
        let mut report = SourceReport::default();
        report.stats.files = 1;
        Ok(SourceOutcome {
            tree: tree_id,
            report,
        })
    }
}
