//! Where each value of a YAML document sits, so semantic errors can point at a line and column.
//!
//! serde_yaml reports positions for syntax and type errors only; reference and topology checks
//! run on typed structs afterwards. This index maps a dotted path such as
//! `topology.nodes[2].site` to the position of that value in the text.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::error::Location;

/// Path (`a.b[3].c`) → position of the value there (and of the key, for mapping entries).
#[derive(Debug, Default)]
pub struct PositionIndex {
    values: HashMap<String, Location>,
    keys: HashMap<String, Location>,
    scalars: Vec<(String, String, Location)>,
}

impl PositionIndex {
    /// Index every value of the first document in `text`. A text the event parser cannot read
    /// yields an empty index; serde_yaml reports the syntax error itself.
    pub fn build(text: &str) -> PositionIndex {
        let mut builder = IndexBuilder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, false).is_err() {
            return PositionIndex::default();
        }
        PositionIndex {
            values: builder.values,
            keys: builder.keys,
            scalars: builder.scalars,
        }
    }

    /// Position of the key of the mapping entry at `path`.
    pub fn locate_key(&self, path: &str) -> Option<Location> {
        self.keys.get(path).copied()
    }

    /// The first scalar below `path` whose text is `text`, in file order.
    pub fn locate_scalar_below(&self, path: &str, text: &str) -> Option<Location> {
        self.scalars
            .iter()
            .filter(|(p, t, _)| t == text && is_below(p, path))
            .map(|(_, _, at)| *at)
            .min()
    }

    /// Position of the value at `path`, or of its nearest indexed ancestor.
    pub fn locate(&self, path: &str) -> Option<Location> {
        let mut current = path;
        loop {
            if let Some(at) = self.values.get(current) {
                return Some(*at);
            }
            current = parent(current)?;
        }
    }
}

/// True when `path` is `ancestor` or inside it.
fn is_below(path: &str, ancestor: &str) -> bool {
    ancestor.is_empty()
        || path == ancestor
        || path
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.starts_with(['.', '[']))
}

/// `a.b[3]` → `a.b`, `a.b` → `a`, `a` → none.
fn parent(path: &str) -> Option<&str> {
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct IndexBuilder {
    stack: Vec<Frame>,
    values: HashMap<String, Location>,
    keys: HashMap<String, Location>,
    scalars: Vec<(String, String, Location)>,
    documents: usize,
}

impl IndexBuilder {
    /// Path of the value about to be read in the innermost container, advancing that container.
    fn next_value_path(&mut self) -> String {
        match self.stack.last_mut() {
            None => String::new(),
            Some(Frame::Map { path, key }) => {
                let key = key.take().unwrap_or_default();
                if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                }
            }
            Some(Frame::Seq { path, next }) => {
                let child = format!("{path}[{next}]");
                *next += 1;
                child
            }
        }
    }

    /// True when the next scalar of the innermost mapping is a key.
    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn record(&mut self, path: &str, mark: Marker) {
        self.values.entry(path.to_owned()).or_insert(location(mark));
    }
}

fn location(mark: Marker) -> Location {
    Location {
        line: mark.line(),
        // yaml-rust2 columns start at 0.
        column: mark.col() + 1,
    }
}

impl MarkedEventReceiver for IndexBuilder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.documents > 1 {
            return;
        }
        match event {
            Event::DocumentStart => self.documents += 1,
            Event::Scalar(text, ..) => {
                if self.expecting_key() {
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        let child = if path.is_empty() {
                            text.clone()
                        } else {
                            format!("{path}.{text}")
                        };
                        self.keys.entry(child).or_insert(location(mark));
                        *key = Some(text);
                    }
                } else {
                    let path = self.next_value_path();
                    self.record(&path, mark);
                    self.scalars.push((path, text, location(mark)));
                }
            }
            Event::Alias(_) => {
                let path = self.next_value_path();
                self.record(&path, mark);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                // A mapping used as a key has no path; index it under a placeholder key.
                if self.expecting_key()
                    && let Some(Frame::Map { key, .. }) = self.stack.last_mut()
                {
                    *key = Some("?".to_owned());
                }
                let path = self.next_value_path();
                self.record(&path, mark);
                let frame = if matches!(event, Event::MappingStart(..)) {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, next: 0 }
                };
                self.stack.push(frame);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "top:\n  list:\n    - name: a\n      ip: 10.0.0.1\n    - {name: b}\nother: 3\n";

    #[test]
    fn values_are_located_by_path() {
        let index = PositionIndex::build(TEXT);
        let at = |p: &str| index.locate(p).map(|l| (l.line, l.column));
        assert_eq!(at("top.list[0].name"), Some((3, 13)));
        assert_eq!(at("top.list[0].ip"), Some((4, 11)));
        assert_eq!(at("top.list[1].name"), Some((5, 14)));
        assert_eq!(at("other"), Some((6, 8)));
    }

    #[test]
    fn keys_and_scalars_are_located() {
        let index = PositionIndex::build(TEXT);
        let at = |l: Option<Location>| l.map(|l| (l.line, l.column));
        assert_eq!(at(index.locate_key("top.list[0].ip")), Some((4, 7)));
        assert_eq!(
            at(index.locate_scalar_below("top.list", "b")),
            Some((5, 14))
        );
        assert_eq!(index.locate_scalar_below("other", "b"), None);
    }

    #[test]
    fn missing_paths_fall_back_to_the_nearest_ancestor() {
        let index = PositionIndex::build(TEXT);
        let ancestor = index.locate("top.list[1]").expect("entry is indexed");
        assert_eq!(index.locate("top.list[1].missing.deeper"), Some(ancestor));
        assert_eq!(index.locate("nowhere"), None);
    }
}
