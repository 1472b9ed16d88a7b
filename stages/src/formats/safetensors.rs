//! Reads the header of a `.safetensors` file (an 8-byte little-endian
//! length, then JSON naming each tensor's dtype, shape and byte range)
//! without libtorch, so runner-side stages can check tensor names.

use std::io::Read;
use std::path::Path;

/// One tensor's entry in the header.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct TensorInfo {
    /// `F32`, `I64`...
    pub dtype: String,
    /// Dimensions.
    pub shape: Vec<u64>,
    /// Byte range within the data section.
    pub data_offsets: [u64; 2],
}

/// The tensors in `path`, sorted by name (`__metadata__` left out); each
/// tensor's byte range must lie inside the file.
pub fn read_header(path: &Path) -> Result<Vec<(String, TensorInfo)>, String> {
    let bad = |why: &str| format!("`{}` is not a safetensors file: {why}", path.display());
    let mut f = std::fs::File::open(path)
        .map_err(|e| format!("failed to open `{}`: {e}", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad("shorter than 8 bytes"))?;
    let len = u64::from_le_bytes(len);
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > size.saturating_sub(8) || len > 100 << 20 {
        return Err(bad(&format!("header length {len} exceeds the file")));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header)
        .map_err(|_| bad("truncated header"))?;
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(&format!("bad header JSON: {e}")))?;
    let mut out = Vec::with_capacity(map.len());
    for (name, v) in map {
        if name == "__metadata__" {
            continue;
        }
        let info: TensorInfo =
            serde_json::from_value(v).map_err(|e| bad(&format!("bad entry for `{name}`: {e}")))?;
        let [start, end] = info.data_offsets;
        if start > end || 8 + len + end > size {
            return Err(bad(&format!("the bytes of `{name}` lie outside the file")));
        }
        out.push((name, info));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Every tensor in `path` with its raw little-endian bytes, sorted by name.
pub fn read_tensors(path: &Path) -> Result<Vec<(String, TensorInfo, Vec<u8>)>, String> {
    let header = read_header(path)?;
    let bytes =
        std::fs::read(path).map_err(|e| format!("failed to read `{}`: {e}", path.display()))?;
    let start = 8 + u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    header
        .into_iter()
        .map(|(name, info)| {
            let [a, b] = info.data_offsets.map(|o| start + o as usize);
            let data = bytes
                .get(a..b)
                .ok_or_else(|| format!("`{}`: `{name}` lies past the end", path.display()))?
                .to_vec();
            Ok((name, info, data))
        })
        .collect()
}

/// A tensor to write: name, dtype (`F32`, `I64`), shape, little-endian bytes.
pub type NamedTensor<'a> = (&'a str, &'a str, Vec<u64>, &'a [u8]);

/// Writes a `.safetensors` file: the tensors (in the order given), plus
/// string `metadata`.
pub fn write(
    path: &Path,
    tensors: &[NamedTensor<'_>],
    metadata: &std::collections::BTreeMap<String, String>,
) -> std::io::Result<()> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::json!(metadata));
    }
    let mut offset = 0u64;
    for (name, dtype, shape, bytes) in tensors {
        let end = offset + bytes.len() as u64;
        header.insert(
            (*name).to_owned(),
            serde_json::json!({ "dtype": dtype, "shape": shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut text = serde_json::to_vec(&header).expect("json");
    while text.len() & 7 != 0 {
        text.push(b' ');
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    use std::io::Write;
    out.write_all(&(text.len() as u64).to_le_bytes())?;
    out.write_all(&text)?;
    for (_, _, _, bytes) in tensors {
        out.write_all(bytes)?;
    }
    out.into_inner()?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_shapes_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let header = br#"{"b.w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"x":"y"},"a":{"dtype":"I64","shape":[],"data_offsets":[8,16]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0; 16]);
        let p = dir.path().join("m.safetensors");
        std::fs::write(&p, &bytes).unwrap();
        let t = read_header(&p).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].0, "a");
        assert_eq!(t[1].1.shape, [2]);
        let meta = std::collections::BTreeMap::from([("k".to_owned(), "v".to_owned())]);
        let w = dir.path().join("w.safetensors");
        write(&w, &[("x", "F32", vec![2], &[0u8; 8][..])], &meta).unwrap();
        let back = read_tensors(&w).unwrap();
        assert_eq!(
            (back[0].0.as_str(), back[0].1.shape.as_slice()),
            ("x", &[2u64][..])
        );
        std::fs::write(&p, b"\xff\xff\xff\xff\xff\xff\xff\x7fjunk").unwrap();
        assert!(read_header(&p).unwrap_err().contains("exceeds the file"));
    }
}
