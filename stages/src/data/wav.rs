//! WAV files: 16-bit PCM, mono, at a required sample rate. Anything else is
//! rejected with the file's path and what was found, never resampled.

use std::path::Path;

use super::error::{read_file, DataError, FormatError};

/// Samples of a 16-bit mono file.
#[derive(Debug, Clone, PartialEq)]
pub struct Wav {
    /// Samples per second.
    pub sample_rate: u32,
    /// The samples.
    pub samples: Vec<i16>,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A `data` size that streaming writers leave when they cannot seek back:
/// the samples run to the end of the file.
fn is_streaming_size(len: u32) -> bool {
    len == 0 || len == u32::MAX
}

/// Parses WAV bytes, requiring 16-bit PCM mono at `rate` Hz. Errors carry
/// the offset of the chunk at fault.
pub fn parse(bytes: &[u8], rate: u32) -> Result<Wav, FormatError> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(FormatError::at(
            0,
            "not a WAV file: expected a RIFF/WAVE header",
        ));
    }
    let mut at = 12;
    let mut format = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32_at(bytes, at + 4);
        let body = at + 8;
        match id {
            b"fmt " => {
                if len < 16 || body + 16 > bytes.len() {
                    return Err(FormatError::at(
                        at as u64,
                        format!("fmt chunk of {len} bytes (expected at least 16, in the file)"),
                    ));
                }
                let tag = u16_at(bytes, body);
                let channels = u16_at(bytes, body + 2);
                let sample_rate = u32_at(bytes, body + 4);
                let bits = u16_at(bytes, body + 14);
                format = Some((at, tag, channels, sample_rate, bits));
            }
            b"data" => {
                let (fmt_at, tag, channels, sample_rate, bits) = format
                    .ok_or_else(|| FormatError::at(at as u64, "data chunk before the fmt chunk"))?;
                let pcm = tag == 1 || tag == 0xFFFE;
                if !pcm || channels != 1 || bits != 16 || sample_rate != rate {
                    return Err(FormatError::at(
                        fmt_at as u64,
                        format!(
                            "expected 16-bit PCM mono at {rate} Hz, found {} {bits}-bit, {channels} channel(s), {sample_rate} Hz",
                            if pcm { "PCM" } else { "non-PCM" }
                        ),
                    ));
                }
                let end = match body.checked_add(len as usize) {
                    _ if is_streaming_size(len) => bytes.len(),
                    Some(end) if end <= bytes.len() => end,
                    _ => {
                        return Err(FormatError::at(
                            at as u64,
                            format!(
                                "data chunk of {len} bytes, but the file ends {} bytes after its start: the file is truncated",
                                bytes.len() - body
                            ),
                        ))
                    }
                };
                let samples = bytes[body..end]
                    .chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect();
                return Ok(Wav {
                    sample_rate,
                    samples,
                });
            }
            _ => {}
        }
        at = body + len as usize + (len as usize & 1);
    }
    Err(FormatError::at(
        bytes.len() as u64,
        "no data chunk before the end of the file",
    ))
}

/// Reads and parses a file; errors name it and the chunk at fault.
pub fn read(path: &Path, rate: u32) -> Result<Wav, DataError> {
    parse(&read_file(path)?, rate).map_err(|e| e.in_file(path))
}

/// Writes 16-bit mono PCM (fixtures and tests).
pub fn encode(sample_rate: u32, samples: &[i16]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_other_rates_and_widths() {
        let samples: Vec<i16> = (0..100).map(|i| (i * 37 - 1000) as i16).collect();
        let bytes = encode(16000, &samples);
        assert_eq!(parse(&bytes, 16000).unwrap().samples, samples);
        let err = parse(&encode(22050, &samples), 16000).unwrap_err();
        assert_eq!(
            err.to_string(),
            "at byte 12: expected 16-bit PCM mono at 16000 Hz, found PCM 16-bit, 1 channel(s), 22050 Hz"
        );
        let mut eight_bit = bytes.clone();
        eight_bit[34] = 8;
        assert!(parse(&eight_bit, 16000)
            .unwrap_err()
            .message
            .contains("found PCM 8-bit"));
        assert_eq!(parse(&bytes[..20], 16000).unwrap_err().offset, Some(12));
        assert_eq!(parse(b"garbage", 16000).unwrap_err().offset, Some(0));
    }

    /// Issue #11: a file cut short inside its samples was read as a
    /// shorter utterance. Only the streaming sizes (0, 0xFFFFFFFF) mean
    /// "to the end of the file".
    #[test]
    fn truncated_data_is_an_error_but_streaming_sizes_are_read_to_the_end() {
        let bytes = encode(16000, &[1; 100]);
        let err = parse(&bytes[..150], 16000).unwrap_err();
        assert_eq!(err.offset, Some(36), "{err}");
        assert!(err.message.contains("truncated"), "{err}");
        for size in [0u32, u32::MAX] {
            let mut streamed = bytes.clone();
            streamed[40..44].copy_from_slice(&size.to_le_bytes());
            assert_eq!(parse(&streamed, 16000).unwrap().samples.len(), 100);
        }
    }

    #[test]
    fn read_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        std::fs::write(&path, &encode(8000, &[0; 10])[..]).unwrap();
        let err = read(&path, 16000).unwrap_err().to_string();
        assert!(err.contains("a.wav` at byte 12: expected"), "{err}");
        let err = read(&dir.path().join("missing.wav"), 16000)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("failed to read `") && err.contains("missing.wav"),
            "{err}"
        );
    }
}
