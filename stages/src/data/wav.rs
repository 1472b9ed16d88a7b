//! WAV files: 16-bit PCM, mono, at a required sample rate. Anything else is
//! rejected with the file's path and what was found, never resampled.

use std::path::Path;

/// Why a WAV file was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WavError {
    /// Not a RIFF/WAVE file, or a chunk runs past the end.
    #[error("not a valid WAV file: {0}")]
    Malformed(String),
    /// Not 16-bit PCM mono at the expected rate.
    #[error("expected {expected}, found {found}")]
    Unsupported {
        /// What tuneflow reads.
        expected: String,
        /// What the file holds.
        found: String,
    },
}

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

/// Parses WAV bytes, requiring 16-bit PCM mono at `rate` Hz.
pub fn parse(bytes: &[u8], rate: u32) -> Result<Wav, WavError> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::Malformed("missing RIFF/WAVE header".into()));
    }
    let mut at = 12;
    let mut format = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32_at(bytes, at + 4) as usize;
        let body = at + 8;
        match id {
            b"fmt " => {
                if len < 16 || body + 16 > bytes.len() {
                    return Err(WavError::Malformed("short fmt chunk".into()));
                }
                let tag = u16_at(bytes, body);
                let channels = u16_at(bytes, body + 2);
                let sample_rate = u32_at(bytes, body + 4);
                let bits = u16_at(bytes, body + 14);
                format = Some((tag, channels, sample_rate, bits));
            }
            b"data" => {
                let (tag, channels, sample_rate, bits) = format
                    .ok_or_else(|| WavError::Malformed("data chunk before fmt chunk".into()))?;
                let pcm = tag == 1 || tag == 0xFFFE;
                if !pcm || channels != 1 || bits != 16 || sample_rate != rate {
                    return Err(WavError::Unsupported {
                        expected: format!("16-bit PCM mono at {rate} Hz"),
                        found: format!(
                            "{} {bits}-bit, {channels} channel(s), {sample_rate} Hz",
                            if pcm { "PCM" } else { "non-PCM" }
                        ),
                    });
                }
                // Some writers leave the size field at 0 or too large when
                // streaming; take what is there.
                let end = if len == 0 || body + len > bytes.len() {
                    bytes.len()
                } else {
                    body + len
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
        at = body + len + (len & 1);
    }
    Err(WavError::Malformed("no data chunk".into()))
}

/// Reads and parses a file.
pub fn read(path: &Path, rate: u32) -> Result<Wav, WavError> {
    let bytes = std::fs::read(path).map_err(|e| WavError::Malformed(e.to_string()))?;
    parse(&bytes, rate)
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
            "expected 16-bit PCM mono at 16000 Hz, found PCM 16-bit, 1 channel(s), 22050 Hz"
        );
        let mut eight_bit = bytes.clone();
        eight_bit[34] = 8;
        assert!(matches!(
            parse(&eight_bit, 16000),
            Err(WavError::Unsupported { .. })
        ));
        assert!(matches!(
            parse(&bytes[..20], 16000),
            Err(WavError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"garbage", 16000),
            Err(WavError::Malformed(_))
        ));
    }
}
