//! A YAML tree that remembers where every node was written.
//!
//! Rule files are reported on as `file:line:col: message`, with the position
//! of the offending key or value; serde_yaml does not expose positions, so
//! rule files are read through yaml-rust2's event parser into this tree.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A position in a YAML source: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Self {
        Pos {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

/// One YAML node with its position.
#[derive(Debug, Clone)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub enum Value {
    /// A scalar, as text (rule files convert numbers and booleans themselves).
    Scalar {
        text: String,
    },
    Seq(Vec<Node>),
    /// Key/value pairs in source order (keys are scalars in rule files).
    Map(Vec<(Node, Node)>),
    /// An alias (`*name`); rule files have no use for anchors.
    Alias,
}

impl Node {
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
            Value::Alias => "an alias",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// Parses `src` into the first document's root node (`None` for an empty file).
pub fn parse(src: &str) -> Result<Option<Node>, (Pos, String)> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(src);
    parser
        .load(&mut builder, false)
        .map_err(|e| (Pos::from(*e.marker()), e.info().to_string()))?;
    Ok(builder.root)
}

#[derive(Default)]
struct Builder {
    /// Open collections; a mapping also holds its key waiting for a value.
    stack: Vec<(Node, Option<Node>)>,
    root: Option<Node>,
}

impl Builder {
    fn push_value(&mut self, node: Node) {
        let Some((parent, pending_key)) = self.stack.last_mut() else {
            self.root.get_or_insert(node);
            return;
        };
        match &mut parent.value {
            Value::Seq(items) => items.push(node),
            Value::Map(pairs) => match pending_key.take() {
                Some(key) => pairs.push((key, node)),
                None => *pending_key = Some(node),
            },
            _ => {}
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from(mark);
        let open = |value| (Node { pos, value }, None);
        match ev {
            Event::Scalar(text, ..) => self.push_value(Node {
                pos,
                value: Value::Scalar { text },
            }),
            Event::Alias(_) => self.push_value(Node {
                pos,
                value: Value::Alias,
            }),
            Event::SequenceStart(..) => self.stack.push(open(Value::Seq(Vec::new()))),
            Event::MappingStart(..) => self.stack.push(open(Value::Map(Vec::new()))),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, _)) = self.stack.pop() {
                    self.push_value(node);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_point_at_the_node() {
        let root = parse("a: 1\nlist:\n  - x\n  - {k: v}\n").unwrap().unwrap();
        let Value::Map(pairs) = &root.value else {
            panic!("not a map")
        };
        assert_eq!(pairs[0].0.pos, Pos { line: 1, col: 1 });
        assert_eq!(pairs[0].1.pos, Pos { line: 1, col: 4 });
        let Value::Seq(items) = &pairs[1].1.value else {
            panic!("not a seq")
        };
        assert_eq!(items[0].pos, Pos { line: 3, col: 5 });
        assert!(matches!(items[1].value, Value::Map(_)));
    }
}
