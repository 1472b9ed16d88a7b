//! InsightFace verification `.bin` files: a pickle of `(bins, issame)`,
//! `bins` a list of 2N encoded images, `issame` a list of N bools.
//!
//! A small pickle machine that understands exactly the opcodes these files
//! use, in the three variants seen in the wild: Python 2 (`BINSTRING`),
//! Python 3 protocol >= 3 (`BINBYTES`, `FRAME`, `MEMOIZE`), and Python 3
//! protocol 2, where each bytes object is `_codecs.encode(str, 'latin1')`.
//! Anything else (numpy arrays, say) is rejected by name.

/// A decoded `.bin` file.
#[derive(Debug, Clone, PartialEq)]
pub struct PairFile {
    /// Encoded images; pair i is `(images[2i], images[2i+1])`.
    pub images: Vec<Vec<u8>>,
    /// Whether pair i shows the same identity.
    pub same: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq)]
enum Obj {
    Bytes(Vec<u8>),
    Str(String),
    Bool(bool),
    Int(i64),
    None,
    List(Vec<Obj>),
    Tuple(Vec<Obj>),
    Global(String),
    Mark,
}

fn take<'a>(data: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], String> {
    let s = data
        .get(*at..*at + n)
        .ok_or_else(|| format!("truncated at byte {}", *at))?;
    *at += n;
    Ok(s)
}

fn le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0, |acc, &x| (acc << 8) | u64::from(x))
}

fn pop_mark(stack: &mut Vec<Obj>) -> Result<Vec<Obj>, String> {
    let at = stack
        .iter()
        .rposition(|o| *o == Obj::Mark)
        .ok_or("MARK missing")?;
    let items = stack.split_off(at + 1);
    stack.pop();
    Ok(items)
}

fn reduce(func: Obj, args: Obj) -> Result<Obj, String> {
    match (func, args) {
        (Obj::Global(g), Obj::Tuple(a)) if g == "_codecs encode" => match &a[..] {
            [Obj::Str(s), Obj::Str(enc)] if enc == "latin1" || enc == "latin-1" => s
                .chars()
                .map(|c| u8::try_from(u32::from(c)).map_err(|_| "non-latin-1 character".to_owned()))
                .collect::<Result<Vec<u8>, _>>()
                .map(Obj::Bytes),
            _ => Err("unsupported _codecs.encode arguments".into()),
        },
        (Obj::Global(g), _) => Err(format!(
            "unsupported object `{g}` (expected encoded image bytes)"
        )),
        _ => Err("REDUCE on a non-callable".into()),
    }
}

fn run(data: &[u8]) -> Result<Obj, String> {
    let mut stack: Vec<Obj> = Vec::new();
    let mut memo: std::collections::HashMap<u64, Obj> = std::collections::HashMap::new();
    let mut at = 0;
    let pop = |stack: &mut Vec<Obj>| stack.pop().ok_or_else(|| "stack underflow".to_owned());
    loop {
        let op = *data.get(at).ok_or("missing STOP")?;
        at += 1;
        match op {
            0x80 => at += 1,                        // PROTO
            0x95 => at += 8,                        // FRAME
            b'.' => return pop(&mut stack),         // STOP
            b'(' => stack.push(Obj::Mark),          // MARK
            b']' => stack.push(Obj::List(vec![])),  // EMPTY_LIST
            b')' => stack.push(Obj::Tuple(vec![])), // EMPTY_TUPLE
            b'N' => stack.push(Obj::None),
            0x88 => stack.push(Obj::Bool(true)),
            0x89 => stack.push(Obj::Bool(false)),
            b'c' => {
                let line = |at: &mut usize| -> Result<String, String> {
                    let end = data[*at..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .ok_or("unterminated GLOBAL")?;
                    let s = String::from_utf8_lossy(&data[*at..*at + end]).into_owned();
                    *at += end + 1;
                    Ok(s)
                };
                let module = line(&mut at)?;
                let name = line(&mut at)?;
                stack.push(Obj::Global(format!("{module} {name}")));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module, name) {
                    (Obj::Str(m), Obj::Str(n)) => stack.push(Obj::Global(format!("{m} {n}"))),
                    _ => return Err("STACK_GLOBAL needs two strings".into()),
                }
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let func = pop(&mut stack)?;
                stack.push(reduce(func, args)?);
            }
            b'a' => {
                let item = pop(&mut stack)?;
                match stack.last_mut() {
                    Some(Obj::List(l)) => l.push(item),
                    _ => return Err("APPEND to a non-list".into()),
                }
            }
            b'e' => {
                let items = pop_mark(&mut stack)?;
                match stack.last_mut() {
                    Some(Obj::List(l)) => l.extend(items),
                    _ => return Err("APPENDS to a non-list".into()),
                }
            }
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Obj::Tuple(items));
            }
            0x85 => {
                let a = pop(&mut stack)?;
                stack.push(Obj::Tuple(vec![a]));
            }
            0x86 => {
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                stack.push(Obj::Tuple(vec![a, b]));
            }
            0x87 => {
                let c = pop(&mut stack)?;
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                stack.push(Obj::Tuple(vec![a, b, c]));
            }
            other => {
                if let Some(obj) = literal(other, data, &mut at)? {
                    stack.push(obj);
                } else if !memo_op(other, data, &mut at, &mut stack, &mut memo)? {
                    return Err(format!(
                        "unsupported pickle opcode {other:#04x} at byte {}",
                        at - 1
                    ));
                }
            }
        }
    }
}

/// Memo opcodes (PUT, GET, MEMOIZE); `false` if `op` is not one of them.
fn memo_op(
    op: u8,
    data: &[u8],
    at: &mut usize,
    stack: &mut Vec<Obj>,
    memo: &mut std::collections::HashMap<u64, Obj>,
) -> Result<bool, String> {
    match op {
        b'q' | b'r' | 0x94 => {
            let k = match op {
                b'q' => le(take(data, at, 1)?),
                b'r' => le(take(data, at, 4)?),
                _ => memo.len() as u64,
            };
            memo.insert(k, stack.last().ok_or("empty stack")?.clone());
        }
        b'h' | b'j' => {
            let k = le(take(data, at, if op == b'h' { 1 } else { 4 })?);
            stack.push(memo.get(&k).cloned().ok_or("bad memo key")?);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Opcodes that push one literal (ints, bytes, strings); `None` if `op` is
/// not one of them.
fn literal(op: u8, data: &[u8], at: &mut usize) -> Result<Option<Obj>, String> {
    let mut sized = |width: usize| -> Result<&[u8], String> {
        let n = le(take(data, at, width)?) as usize;
        take(data, at, n)
    };
    Ok(Some(match op {
        b'K' => Obj::Int(le(take(data, at, 1)?) as i64),
        b'M' => Obj::Int(le(take(data, at, 2)?) as i64),
        b'J' => Obj::Int(i64::from(le(take(data, at, 4)?) as u32 as i32)),
        b'U' | b'C' => Obj::Bytes(sized(1)?.to_vec()),
        b'T' | b'B' => Obj::Bytes(sized(4)?.to_vec()),
        0x8e => Obj::Bytes(sized(8)?.to_vec()),
        0x8c | b'X' | 0x8d => {
            let width = match op {
                0x8c => 1,
                b'X' => 4,
                _ => 8,
            };
            let s = std::str::from_utf8(sized(width)?).map_err(|e| e.to_string())?;
            Obj::Str(s.to_owned())
        }
        _ => return Ok(None),
    }))
}

/// Decodes a `.bin` pair file.
pub fn parse(data: &[u8]) -> Result<PairFile, String> {
    let Obj::Tuple(parts) = run(data)? else {
        return Err("expected a (bins, issame) tuple".into());
    };
    let [Obj::List(bins), Obj::List(same)] = &parts[..] else {
        return Err("expected a (bins, issame) tuple of two lists".into());
    };
    let images = bins
        .iter()
        .map(|b| match b {
            Obj::Bytes(v) => Ok(v.clone()),
            other => Err(format!("expected encoded image bytes, found {other:?}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let same = same
        .iter()
        .map(|b| match b {
            Obj::Bool(v) => Ok(*v),
            Obj::Int(i) => Ok(*i != 0),
            other => Err(format!("expected a bool, found {other:?}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if images.len() != 2 * same.len() {
        return Err(format!(
            "{} images for {} pairs (expected twice as many)",
            images.len(),
            same.len()
        ));
    }
    Ok(PairFile { images, same })
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
mod tests {
    use super::*;

    fn sample() -> PairFile {
        PairFile {
            images: vec![vec![0xff, 0xd8, 1], vec![2; 300], vec![3], vec![]],
            same: vec![true, false],
        }
    }

    #[test]
    fn python2_variant_round_trips() {
        assert_eq!(parse(&encode_py2(&sample())).unwrap(), sample());
    }

    // Bytes printed by CPython 3.11: pickle.dumps(([b'\xff\xd8', b'ab'], [True]), protocol=P).
    const PY3_PROTOCOL2: &[u8] = b"\x80\x02]q\x00(c_codecs\nencode\nq\x01X\x04\x00\x00\x00\xc3\xbf\xc3\x98q\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05h\x01X\x02\x00\x00\x00abq\x06h\x03\x86q\x07Rq\x08e]q\t\x88a\x86q\n.";
    const PY3_PROTOCOL4: &[u8] = b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00]\x94(C\x02\xff\xd8\x94C\x02ab\x94e]\x94\x88a\x86\x94.";

    #[test]
    fn python3_variants_decode() {
        for data in [PY3_PROTOCOL2, PY3_PROTOCOL4] {
            let f = parse(data).unwrap();
            assert_eq!(f.images, vec![vec![0xff, 0xd8], b"ab".to_vec()]);
            assert_eq!(f.same, vec![true]);
        }
    }

    #[test]
    fn rejects_mismatched_counts_and_foreign_objects() {
        let mut bad = sample();
        bad.same.push(true);
        assert!(parse(&encode_py2(&bad))
            .unwrap_err()
            .contains("4 images for 3 pairs"));
        let numpy = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00)R.";
        assert!(parse(numpy)
            .unwrap_err()
            .contains("numpy.core.multiarray _reconstruct"));
    }
}
