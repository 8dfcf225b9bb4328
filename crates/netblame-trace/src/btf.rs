//! Enum names from the running kernel's BTF (`/sys/kernel/btf/vmlinux`): drop reasons
//! (`enum skb_drop_reason`) and reset reasons (`enum sk_rst_reason`) are read from the kernel
//! itself, never from a table that goes stale with the next release.
//!
//! Hand-rolled on purpose: aya-obj parses BTF but keeps enum variants crate-private, and btf-rs
//! is LGPL-2.1, which this MIT/Apache workspace does not pull into its binary. Only the layout
//! needed to walk the type section is decoded (kernel `include/uapi/linux/btf.h`).

use std::collections::HashMap;
use std::path::Path;

/// Where the kernel publishes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_ENUM: u32 = 6;
const KIND_ENUM64: u32 = 19;

/// The variants of one C enum: value to name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnumNames {
    names: HashMap<u64, String>,
}

impl EnumNames {
    /// The name of `value` with `prefix` removed (e.g. `SKB_DROP_REASON_`).
    pub fn name(&self, value: u64, prefix: &str) -> Option<String> {
        self.names
            .get(&value)
            .map(|n| n.strip_prefix(prefix).unwrap_or(n).to_string())
    }

    /// How many variants.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when the enum had no variants (or was not found).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Errors reading BTF.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not BTF: {1}")]
    Format(String, &'static str),
}

/// Reads the named enums (e.g. `skb_drop_reason`) from a BTF file; enums not found are absent
/// from the result.
pub fn read_enums(path: &Path, wanted: &[&str]) -> Result<HashMap<String, EnumNames>, BtfError> {
    let data = std::fs::read(path).map_err(|source| BtfError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_enums(&data, wanted).map_err(|e| BtfError::Format(path.display().to_string(), e))
}

fn u32_at(d: &[u8], off: usize) -> Result<u32, &'static str> {
    d.get(off..off + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or("truncated")
}

fn cstr_at(strings: &[u8], off: usize) -> Result<&str, &'static str> {
    let s = strings.get(off..).ok_or("string offset out of range")?;
    let end = s
        .iter()
        .position(|b| *b == 0)
        .ok_or("unterminated string")?;
    std::str::from_utf8(&s[..end]).map_err(|_| "string not UTF-8")
}

/// Parses little-endian BTF (`struct btf_header`, then the type and string sections).
pub fn parse_enums(d: &[u8], wanted: &[&str]) -> Result<HashMap<String, EnumNames>, &'static str> {
    if d.len() < 24 || u16::from_le_bytes([d[0], d[1]]) != BTF_MAGIC {
        return Err("bad magic (not little-endian BTF)");
    }
    let hdr_len = u32_at(d, 4)? as usize;
    let (type_off, type_len) = (u32_at(d, 8)? as usize, u32_at(d, 12)? as usize);
    let (str_off, str_len) = (u32_at(d, 16)? as usize, u32_at(d, 20)? as usize);
    let types = d
        .get(hdr_len + type_off..hdr_len + type_off + type_len)
        .ok_or("type section out of range")?;
    let strings = d
        .get(hdr_len + str_off..hdr_len + str_off + str_len)
        .ok_or("string section out of range")?;
    let mut out = HashMap::new();
    let mut p = 0;
    while p + 12 <= types.len() {
        let name_off = u32_at(types, p)? as usize;
        let info = u32_at(types, p + 4)?;
        let vlen = (info & 0xffff) as usize;
        let kind = (info >> 24) & 0x1f;
        let signed = info >> 31 == 1;
        p += 12;
        let extra = match kind {
            1 | 14 | 17 => 4,          // INT, VAR, DECL_TAG
            3 => 12,                   // ARRAY
            4 | 5 => vlen * 12,        // STRUCT, UNION
            6 | 13 => vlen * 8,        // ENUM, FUNC_PROTO
            15 => vlen * 12,           // DATASEC
            19 => vlen * 12,           // ENUM64
            2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, qualifiers, FUNC, FLOAT, TYPE_TAG
            _ => return Err("unknown BTF kind"),
        };
        if kind == KIND_ENUM || kind == KIND_ENUM64 {
            let name = cstr_at(strings, name_off)?;
            if wanted.contains(&name) {
                let step = if kind == KIND_ENUM { 8 } else { 12 };
                let mut names = EnumNames::default();
                for i in 0..vlen {
                    let q = p + i * step;
                    let vname = cstr_at(strings, u32_at(types, q)? as usize)?;
                    let lo = u32_at(types, q + 4)?;
                    let value = if kind == KIND_ENUM {
                        if signed {
                            lo as i32 as i64 as u64
                        } else {
                            lo as u64
                        }
                    } else {
                        (u32_at(types, q + 8)? as u64) << 32 | lo as u64
                    };
                    names.names.insert(value, vname.to_string());
                }
                out.insert(name.to_string(), names);
            }
        }
        p += extra;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_enums(b"", &["x"]).is_err());
        assert!(parse_enums(&[0u8; 64], &["x"]).is_err());
        let mut d = vec![0x9f, 0xeb, 1, 0, 24, 0, 0, 0];
        d.extend_from_slice(&[0, 0, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(parse_enums(&d, &["x"]).is_err());
    }
}
