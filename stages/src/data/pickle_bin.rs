//! InsightFace verification `.bin` files: a pickle of `(bins, issame)`,
//! `bins` a list of 2N encoded images, `issame` a list of N bools.
//!
//! A small pickle machine that understands exactly the opcodes these files
//! use, in the three variants seen in the wild: Python 2 (`BINSTRING`),
//! Python 3 protocol >= 3 (`BINBYTES`, `FRAME`, `MEMOIZE`), and Python 3
//! protocol 2, where each bytes object is `_codecs.encode(str, 'latin1')`.
//! Anything else (numpy arrays, say) is rejected by name.
//!
//! The file is untrusted, so the machine is bounded (issue #11): lists and
//! tuples may nest at most [`MAX_DEPTH`] deep, and everything it allocates,
//! including the images it hands back, may not exceed [`BUILD_FACTOR`]
//! times the file's size plus [`BUILD_SLACK`]. Memo reads share objects
//! (reference counts) instead of copying them, as Python does, so a memo
//! that doubles an object at each step costs nothing until something would
//! really be copied, and that copy is charged. Every error names the byte
//! offset of the opcode at fault.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use super::error::{read_file, DataError, FormatError};

/// How deep lists and tuples may nest. Real files nest two deep (a tuple
/// of lists); the bound keeps drops far from the thread's stack limit.
pub const MAX_DEPTH: u32 = 32;
/// What a file may build, per byte of the file.
pub const BUILD_FACTOR: u64 = 4;
/// What a file may build on top of [`BUILD_FACTOR`] times its size.
pub const BUILD_SLACK: u64 = 1 << 20;

/// A decoded `.bin` file.
#[derive(Debug, Clone, PartialEq)]
pub struct PairFile {
    /// Encoded images; pair i is `(images[2i], images[2i+1])`.
    pub images: Vec<Vec<u8>>,
    /// Whether pair i shows the same identity.
    pub same: Vec<bool>,
}

/// A pickled value: scalars inline, everything else shared.
#[derive(Debug, Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Node(Rc<Obj>),
}

/// A heap object. Containers carry their nesting depth.
#[derive(Debug, Clone)]
enum Obj {
    Bytes(Vec<u8>),
    Str(String),
    Global(String),
    List(Vec<Value>, u32),
    Tuple(Vec<Value>, u32),
}

/// A stack slot: a value, or the MARK that `APPENDS` and `TUPLE` pop to.
#[derive(Debug)]
enum Slot {
    Mark,
    Value(Value),
}

/// What one stack slot or list entry costs, with room for `Vec` growth.
const SLOT: u64 = 2 * std::mem::size_of::<Slot>() as u64;
/// What one heap object costs besides its payload (`Rc` counts included).
const NODE: u64 = std::mem::size_of::<Obj>() as u64 + 16;
/// What one memo entry costs (hash map slot and control bytes).
const MEMO: u64 = 64;

impl Value {
    fn depth(&self) -> u32 {
        match self {
            Value::Node(n) => match &**n {
                Obj::List(_, d) | Obj::Tuple(_, d) => *d,
                _ => 0,
            },
            _ => 0,
        }
    }

    /// What the value is, for messages (never its contents, which may be
    /// huge or deeply nested).
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an int",
            Value::Node(n) => n.kind(),
        }
    }
}

impl Obj {
    fn kind(&self) -> &'static str {
        match self {
            Obj::Bytes(_) => "bytes",
            Obj::Str(_) => "a str",
            Obj::Global(_) => "a global",
            Obj::List(..) => "a list",
            Obj::Tuple(..) => "a tuple",
        }
    }
}

/// Counts what parsing allocates against the file's allowance.
struct Budget {
    spent: u64,
    limit: u64,
}

impl Budget {
    fn for_input(len: usize) -> Self {
        Self {
            spent: 0,
            limit: BUILD_FACTOR * len as u64 + BUILD_SLACK,
        }
    }

    fn charge(&mut self, bytes: u64, at: usize) -> Result<(), FormatError> {
        self.spent = self.spent.saturating_add(bytes);
        if self.spent > self.limit {
            return Err(FormatError::at(
                at as u64,
                format!(
                    "the pickle would build more than {} bytes ({BUILD_FACTOR} x the file's size + {BUILD_SLACK}); a verification file never needs that",
                    self.limit
                ),
            ));
        }
        Ok(())
    }
}

/// The pickle machine's state.
struct Machine<'a> {
    data: &'a [u8],
    /// Next byte to read.
    at: usize,
    /// Offset of the opcode being run, for errors.
    op_at: usize,
    stack: Vec<Slot>,
    memo: HashMap<u64, Value>,
    budget: Budget,
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            at: 0,
            op_at: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
            budget: Budget::for_input(data.len()),
        }
    }

    fn fail(&self, message: impl Into<String>) -> FormatError {
        FormatError::at(self.op_at as u64, message)
    }

    fn charge(&mut self, bytes: u64) -> Result<(), FormatError> {
        self.budget.charge(bytes, self.op_at)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(self.fail(format!(
                "{} needs {n} more bytes but the file ends at byte {}",
                op_name(self.data[self.op_at]),
                self.data.len()
            )));
        };
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn uint(&mut self, width: usize) -> Result<u64, FormatError> {
        Ok(le(self.take(width)?))
    }

    fn push(&mut self, v: Value) -> Result<(), FormatError> {
        self.charge(SLOT)?;
        self.stack.push(Slot::Value(v));
        Ok(())
    }

    fn push_obj(&mut self, obj: Obj, payload: usize) -> Result<(), FormatError> {
        self.charge(NODE + payload as u64)?;
        self.push(Value::Node(Rc::new(obj)))
    }

    fn pop(&mut self) -> Result<Value, FormatError> {
        match self.stack.pop() {
            Some(Slot::Value(v)) => Ok(v),
            Some(Slot::Mark) => Err(self.fail(format!(
                "{} found a MARK where it needs a value",
                op_name(self.data[self.op_at])
            ))),
            None => Err(self.fail(format!(
                "{} on an empty stack",
                op_name(self.data[self.op_at])
            ))),
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, FormatError> {
        let at = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or_else(|| self.fail("no MARK to pop to"))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        self.charge(SLOT * items.len() as u64)?;
        Ok(items
            .into_iter()
            .map(|s| match s {
                Slot::Value(v) => v,
                Slot::Mark => unreachable!("the last MARK was found above"),
            })
            .collect())
    }

    /// A container's depth from its items, checked against [`MAX_DEPTH`].
    fn depth_of(&self, items: &[Value]) -> Result<u32, FormatError> {
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(self.fail(format!(
                "lists and tuples nested {depth} deep (at most {MAX_DEPTH}); a verification file nests 2 deep"
            )));
        }
        Ok(depth)
    }

    fn push_tuple(&mut self, items: Vec<Value>) -> Result<(), FormatError> {
        let depth = self.depth_of(&items)?;
        let n = items.len();
        self.push_obj(Obj::Tuple(items, depth), n * std::mem::size_of::<Value>())
    }

    /// `APPEND` and `APPENDS`: the list below the items gets them. A list
    /// that is also in the memo is copied first (charged), so the memo keeps
    /// what it saw.
    fn append(&mut self, items: Vec<Value>) -> Result<(), FormatError> {
        let extra = self.depth_of(&items)?;
        let copy = match self.stack.last() {
            Some(Slot::Value(Value::Node(n))) => match &**n {
                Obj::List(l, _) if Rc::strong_count(n) > 1 => Some(l.len()),
                Obj::List(..) => None,
                _ => return Err(self.fail("APPEND to something that is not a list")),
            },
            _ => return Err(self.fail("APPEND to something that is not a list")),
        };
        if let Some(len) = copy {
            self.charge(NODE + SLOT * len as u64)?;
        }
        self.charge(SLOT * items.len() as u64)?;
        let Some(Slot::Value(Value::Node(n))) = self.stack.last_mut() else {
            unreachable!("checked above");
        };
        let Obj::List(list, depth) = Rc::make_mut(n) else {
            unreachable!("checked above");
        };
        *depth = (*depth).max(extra);
        list.extend(items);
        Ok(())
    }

    /// Runs to `STOP`; returns the result and STOP's offset.
    fn run(&mut self) -> Result<(Value, usize), FormatError> {
        loop {
            self.op_at = self.at;
            let op = *self
                .data
                .get(self.at)
                .ok_or_else(|| FormatError::at(self.at as u64, "the file ends without STOP"))?;
            self.at += 1;
            match op {
                b'.' => return Ok((self.pop()?, self.op_at)),
                0x80 => {
                    let p = self.uint(1)?;
                    if p > 5 {
                        return Err(self.fail(format!("unknown pickle protocol {p}")));
                    }
                }
                0x95 => {
                    self.uint(8)?;
                }
                b'(' => {
                    self.charge(SLOT)?;
                    self.stack.push(Slot::Mark);
                }
                b']' => self.push_obj(Obj::List(Vec::new(), 1), 0)?,
                b')' => self.push_tuple(Vec::new())?,
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'a' => {
                    let item = self.pop()?;
                    self.append(vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_tuple(items)?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>, _>>()?;
                    items.reverse();
                    self.push_tuple(items)?;
                }
                _ => self.other(op)?,
            }
        }
    }

    /// Opcodes with operands: literals, globals, `REDUCE` and the memo.
    fn other(&mut self, op: u8) -> Result<(), FormatError> {
        match op {
            b'K' => {
                let v = self.uint(1)?;
                self.push(Value::Int(v as i64))
            }
            b'M' => {
                let v = self.uint(2)?;
                self.push(Value::Int(v as i64))
            }
            b'J' => {
                let v = self.uint(4)?;
                self.push(Value::Int(i64::from(v as u32 as i32)))
            }
            b'U' | b'C' => self.bytes(1),
            b'T' | b'B' => self.bytes(4),
            0x8e => self.bytes(8),
            0x8c => self.text(1),
            b'X' => self.text(4),
            0x8d => self.text(8),
            b'c' => self.global(),
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Some(m), Some(n)) = (as_str(&module), as_str(&name)) else {
                    return Err(self.fail("STACK_GLOBAL needs two strings"));
                };
                let g = format!("{m} {n}");
                let len = g.len();
                self.push_obj(Obj::Global(g), len)
            }
            b'R' => {
                let args = self.pop()?;
                let func = self.pop()?;
                let bytes = reduce(&func, &args).map_err(|m| self.fail(m))?;
                let len = bytes.len();
                self.push_obj(Obj::Bytes(bytes), len)
            }
            b'q' | b'r' | 0x94 => {
                let key = match op {
                    b'q' => self.uint(1)?,
                    b'r' => self.uint(4)?,
                    _ => self.memo.len() as u64,
                };
                let top = match self.stack.last() {
                    Some(Slot::Value(v)) => v.clone(),
                    _ => return Err(self.fail("memo store with no value on the stack")),
                };
                self.charge(MEMO)?;
                self.memo.insert(key, top);
                Ok(())
            }
            b'h' | b'j' => {
                let key = self.uint(if op == b'h' { 1 } else { 4 })?;
                let v = self
                    .memo
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| self.fail(format!("memo key {key} was never stored")))?;
                self.push(v)
            }
            other => Err(self.fail(format!(
                "unsupported pickle opcode {other:#04x} ({}); a verification file holds lists of bytes and bools",
                op_name(other)
            ))),
        }
    }

    fn sized(&mut self, width: usize) -> Result<&'a [u8], FormatError> {
        let n = self.uint(width)?;
        let n = usize::try_from(n).map_err(|_| self.fail(format!("length {n} is too large")))?;
        self.take(n)
    }

    fn bytes(&mut self, width: usize) -> Result<(), FormatError> {
        let b = self.sized(width)?;
        self.push_obj(Obj::Bytes(b.to_vec()), b.len())
    }

    fn text(&mut self, width: usize) -> Result<(), FormatError> {
        let b = self.sized(width)?;
        let s = std::str::from_utf8(b).map_err(|e| self.fail(format!("invalid UTF-8: {e}")))?;
        self.push_obj(Obj::Str(s.to_owned()), s.len())
    }

    fn global(&mut self) -> Result<(), FormatError> {
        let mut line = || -> Result<String, FormatError> {
            let rest = &self.data[self.at..];
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or_else(|| self.fail("GLOBAL name has no end of line"))?;
            let s = String::from_utf8_lossy(&rest[..end]).into_owned();
            self.at += end + 1;
            Ok(s)
        };
        let module = line()?;
        let name = line()?;
        let g = format!("{module} {name}");
        let len = g.len();
        self.push_obj(Obj::Global(g), len)
    }
}

fn le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0, |acc, &x| (acc << 8) | u64::from(x))
}

fn as_str(v: &Value) -> Option<&str> {
    match v {
        Value::Node(n) => match &**n {
            Obj::Str(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// The one call these files make: `_codecs.encode(str, 'latin1')`, which
/// is how Python 3's protocol 2 stores bytes.
fn reduce(func: &Value, args: &Value) -> Result<Vec<u8>, String> {
    let Value::Node(f) = func else {
        return Err(format!("REDUCE calls {}, not a global", func.kind()));
    };
    let Obj::Global(g) = &**f else {
        return Err(format!("REDUCE calls {}, not a global", func.kind()));
    };
    if g != "_codecs encode" {
        return Err(format!(
            "unsupported object `{g}` (expected encoded image bytes)"
        ));
    }
    let args = match args {
        Value::Node(a) => match &**a {
            Obj::Tuple(items, _) => items.as_slice(),
            _ => &[],
        },
        _ => &[],
    };
    match args {
        [s, enc] if matches!(as_str(enc), Some("latin1" | "latin-1")) => as_str(s)
            .ok_or("_codecs.encode of something that is not a str")?
            .chars()
            .map(|c| {
                u8::try_from(u32::from(c)).map_err(|_| format!("character {c:?} is not latin-1"))
            })
            .collect(),
        _ => Err("unsupported _codecs.encode arguments (expected a str and 'latin1')".into()),
    }
}

/// A name for an opcode, for messages.
fn op_name(op: u8) -> &'static str {
    match op {
        0x80 => "PROTO",
        0x95 => "FRAME",
        b'.' => "STOP",
        b'(' => "MARK",
        b']' => "EMPTY_LIST",
        b')' => "EMPTY_TUPLE",
        b'a' => "APPEND",
        b'e' => "APPENDS",
        b't' => "TUPLE",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        b'K' | b'M' | b'J' => "BININT",
        b'U' | b'T' => "BINSTRING",
        b'C' | b'B' | 0x8e => "BINBYTES",
        0x8c | b'X' | 0x8d => "BINUNICODE",
        b'c' => "GLOBAL",
        0x93 => "STACK_GLOBAL",
        b'R' => "REDUCE",
        b'q' | b'r' => "BINPUT",
        0x94 => "MEMOIZE",
        b'h' | b'j' => "BINGET",
        b'}' => "EMPTY_DICT",
        b's' | b'u' => "SETITEM",
        b'b' => "BUILD",
        0x81 => "NEWOBJ",
        b'G' => "BINFLOAT",
        _ => "unknown",
    }
}

/// The `(bins, issame)` result turned into a [`PairFile`]; `stop` is the
/// offset of STOP, where every error here is reported.
fn pair_file(result: Value, stop: usize, budget: &mut Budget) -> Result<PairFile, FormatError> {
    let fail = |m: String| FormatError::at(stop as u64, m);
    let expected = "expected a (bins, issame) tuple of two lists";
    let parts = match result {
        Value::Node(n) => match Rc::try_unwrap(n).unwrap_or_else(|rc| (*rc).clone()) {
            Obj::Tuple(items, _) => items,
            other => return Err(fail(format!("{expected}, found {}", other.kind()))),
        },
        other => return Err(fail(format!("{expected}, found {}", other.kind()))),
    };
    let [bins, same] = <[Value; 2]>::try_from(parts)
        .map_err(|p| fail(format!("{expected}, found a tuple of {}", p.len())))?;
    let list = |v: Value, what: &str| match v {
        Value::Node(n) => match Rc::try_unwrap(n).unwrap_or_else(|rc| (*rc).clone()) {
            Obj::List(items, _) => Ok(items),
            other => Err(fail(format!("{what} is {}, not a list", other.kind()))),
        },
        other => Err(fail(format!("{what} is {}, not a list", other.kind()))),
    };
    let (bins, same) = (list(bins, "bins")?, list(same, "issame")?);
    if bins.len() != 2 * same.len() {
        return Err(fail(format!(
            "{} images for {} pairs (expected twice as many)",
            bins.len(),
            same.len()
        )));
    }
    let same = same
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Bool(b) => Ok(*b),
            Value::Int(n) => Ok(*n != 0),
            other => Err(fail(format!(
                "issame item {i} is {}, not a bool",
                other.kind()
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    budget.charge(24 * bins.len() as u64, stop)?;
    let mut images = Vec::with_capacity(bins.len());
    for (i, v) in bins.into_iter().enumerate() {
        let Value::Node(n) = v else {
            return Err(fail(format!(
                "bins item {i} is {}, not encoded image bytes",
                v.kind()
            )));
        };
        // Unique objects move out; one the list holds twice is copied.
        let bytes = match Rc::try_unwrap(n) {
            Ok(Obj::Bytes(b)) => b,
            Ok(other) => {
                return Err(fail(format!(
                    "bins item {i} is {}, not encoded image bytes",
                    other.kind()
                )));
            }
            Err(shared) => match &*shared {
                Obj::Bytes(b) => {
                    budget.charge(b.len() as u64, stop)?;
                    b.clone()
                }
                other => {
                    return Err(fail(format!(
                        "bins item {i} is {}, not encoded image bytes",
                        other.kind()
                    )))
                }
            },
        };
        images.push(bytes);
    }
    Ok(PairFile { images, same })
}

/// Decodes a `.bin` pair file held in memory.
pub fn parse(data: &[u8]) -> Result<PairFile, FormatError> {
    let mut machine = Machine::new(data);
    let (result, stop) = machine.run()?;
    let Machine { mut budget, .. } = machine;
    // The stack and memo are gone: images referenced once now move out.
    pair_file(result, stop, &mut budget)
}

/// Reads and decodes a `.bin` pair file; errors name the file and offset.
pub fn read(path: &Path) -> Result<PairFile, DataError> {
    let bytes = read_file(path)?;
    parse(&bytes).map_err(|e| {
        let message = format!("not a verification .bin file: {}", e.message);
        FormatError { message, ..e }.in_file(path)
    })
}

/// Encodes a pair file as Python 2's `pickle.dump(..., protocol=2)` would.
pub fn encode_py2(file: &PairFile) -> Vec<u8> {
    let mut out = vec![0x80, 2, b']', b'('];
    for img in &file.images {
        if img.len() < 256 {
            out.push(b'U');
            out.push(img.len() as u8);
        } else {
            out.push(b'T');
            out.extend_from_slice(&(img.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(img);
    }
    out.extend_from_slice(b"e](");
    for s in &file.same {
        out.push(if *s { 0x88 } else { 0x89 });
    }
    out.extend_from_slice(&[b'e', 0x86, b'.']);
    out
}

#[cfg(test)]
#[path = "pickle_bin_tests.rs"]
mod tests;
