//! A seeded mutator: damages real inputs the way disks, truncated copies
//! and hostile files do (bit flips, interesting integers, truncation,
//! inserted, deleted and duplicated ranges, splices), and sometimes
//! replaces them with random bytes.

use rand::rngs::StdRng;
use rand::Rng;

/// Bytes that matter to the formats: delimiters, opcodes, extremes.
const BYTES: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, b'\n', b'\t', b' ', b'.', b'/', b'[', b']', b'(', b'a', b'e', b'h',
    b'q', 0x85, 0x86, 0x95,
];

/// 32-bit values that matter: zero, extremes, RecordIO's magic and length
/// mask.
const WORDS: &[u32] = &[
    0,
    1,
    4,
    0x7FFF_FFFF,
    0xFFFF_FFFF,
    0x1FFF_FFFF,
    0x8000_0000,
    0xCED7_230A,
    0x2000_0000,
    0x6000_0000,
];

/// Text that matters to index files.
const TOKENS: &[&[u8]] = &[
    b"../",
    b"/",
    b"..",
    b"\t",
    b" 1 ",
    b"999999999999",
    b"-1",
    b"1e400",
    b"\n",
];

/// One damaged input from `seeds`.
pub fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if rng.gen_ratio(1, 20) {
        let n = rng.gen_range(0..512);
        return (0..n).map(|_| rng.gen()).collect();
    }
    let mut v = seeds[rng.gen_range(0..seeds.len())].clone();
    if rng.gen_ratio(1, 50) {
        return v;
    }
    for _ in 0..rng.gen_range(1..=6) {
        edit(rng, &mut v, seeds);
    }
    v
}

fn edit(rng: &mut StdRng, v: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let len = v.len();
    let at = if len == 0 { 0 } else { rng.gen_range(0..len) };
    match rng.gen_range(0..10) {
        0 if len > 0 => v[at] ^= 1 << rng.gen_range(0..8),
        1 if len > 0 => v[at] = rng.gen(),
        2 if len > 0 => v[at] = BYTES[rng.gen_range(0..BYTES.len())],
        3 if len >= 4 => {
            let at = rng.gen_range(0..=len - 4) & !if rng.gen() { 3 } else { 0 };
            let word = match rng.gen_range(0..3) {
                0 => len as u32 + rng.gen_range(0..8),
                _ => WORDS[rng.gen_range(0..WORDS.len())],
            };
            v[at..at + 4].copy_from_slice(&word.to_le_bytes());
        }
        4 => {
            let n = rng.gen_range(1..16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            v.splice(at..at, bytes);
        }
        5 if len > 0 => {
            let end = (at + rng.gen_range(1..64)).min(len);
            v.drain(at..end);
        }
        6 => v.truncate(at),
        7 if len > 0 => {
            let end = (at + rng.gen_range(1..256)).min(len);
            let chunk = v[at..end].to_vec();
            let to = rng.gen_range(0..=len);
            v.splice(to..to, chunk);
        }
        8 => {
            let other = &seeds[rng.gen_range(0..seeds.len())];
            let from = rng.gen_range(0..=other.len());
            v.truncate(at);
            v.extend_from_slice(&other[from..]);
        }
        _ => {
            let token = TOKENS[rng.gen_range(0..TOKENS.len())];
            v.splice(at..at, token.iter().copied());
        }
    }
}

/// A random pickle opcode stream: the machine's own alphabet, so memo,
/// nesting and framing paths are reached far more often than by byte
/// noise.
pub fn opcodes(rng: &mut StdRng) -> Vec<u8> {
    const OPS: &[&[u8]] = &[
        b"]",
        b")",
        b"(",
        b"a",
        b"e",
        b"t",
        b"\x85",
        b"\x86",
        b"\x87",
        b"N",
        b"\x88",
        b"\x89",
        b"q\x00",
        b"q\x01",
        b"h\x00",
        b"h\x01",
        b"\x94",
        b"K\x05",
        b"U\x03abc",
        b"C\x02\xff\xd8",
        b"X\x06\x00\x00\x00latin1",
        b"c_codecs\nencode\n",
        b"R",
        b"T\xff\xff\xff\x7f",
    ];
    let mut out = vec![0x80, rng.gen_range(2..=5)];
    for _ in 0..rng.gen_range(1..400) {
        out.extend_from_slice(OPS[rng.gen_range(0..OPS.len())]);
    }
    out.push(b'.');
    out
}
